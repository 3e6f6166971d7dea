"""repo_layout's shortcuts: an unlinked directory's entries and `rel` find what resolving each path finds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.repo_layout import Walker


def _layout(repo: Path, outside: Path) -> list[Path]:
    """A repository with every kind of entry a space directory can hold, reached with and without links."""
    default = repo / "connectors" / "default"
    default.mkdir(parents=True)
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text("token\n")
    outside.write_text("x: 1\n")
    for name in ("a.yaml", "b.yml", "_space.yaml", ".hidden.yaml", "NOTES.TXT", ".gitkeep"):
        (default / name).write_text("connectors: []\n")
    (default / "sub").mkdir()
    (default / ".git").mkdir()  # a private name, only a link to it is refused as one
    links = {"inside.yaml": "a.yaml", "out.yaml": str(outside), "dangling.yaml": "nope.yaml", "loop.yaml": "loop.yaml",
             "git.yaml": "../../.git/config", "subdir": "sub"}
    for name, target in links.items():
        os.symlink(target, default / name)
    os.symlink("default", repo / "connectors" / "linked")  # a space directory reached through a link
    os.symlink("../.git", repo / "connectors" / "private")
    return [repo / "connectors", default, repo / "connectors" / "linked", default / "sub", default / "subdir"]


def _found(walker: Walker, directory: Path) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    found = list(walker.entries(directory))
    return found, [(p.file, p.message) for p in walker.problems]


@pytest.mark.parametrize("relative_root", [False, True])
def test_unlinked_directories_list_what_resolving_each_entry_finds(tmp_path: Path, relative_root: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    directories = _layout(tmp_path / "repo", tmp_path / "outside.yaml")
    root = tmp_path / "repo"
    if relative_root:
        monkeypatch.chdir(tmp_path)
        root, directories = Path("repo"), [Path("repo") / d.relative_to(root) for d in directories]
    for directory in directories:
        shortcut = _found(Walker(root), directory)
        slow = Walker(root)
        slow.unlinked = lambda _: None  # type: ignore[method-assign]  # resolve every entry on its own
        assert shortcut == _found(slow, directory), directory
    assert Walker(root).unlinked(directories[1]) is not None  # the shortcut is taken where it can be
    assert Walker(root).unlinked(directories[2]) is None


@pytest.mark.parametrize(("root", "path", "rel"), [
    ("/repo", "/repo/connectors/a.yaml", "connectors/a.yaml"),
    ("/repo/", "/repo/connectors", "connectors"),
    ("/repo", "/repo", "."),
    ("/repo", "/repository/x", "/repository/x"),
    ("/repo", "/other/x", "/other/x"),
    ("/", "/repo/x", "repo/x"),
    (".", "connectors/a.yaml", "connectors/a.yaml"),
    ("repo", "repo/connectors/a.yaml", "connectors/a.yaml"),
    ("repo", "/abs/a.yaml", "/abs/a.yaml"),
])
def test_rel_is_relative_to_the_root(root: str, path: str, rel: str) -> None:
    walker = Walker(Path(root))
    assert walker.rel(Path(path)) == rel
    try:
        expected = Path(path).relative_to(Path(root)).as_posix()
    except ValueError:
        expected = Path(path).as_posix()
    assert rel == expected
