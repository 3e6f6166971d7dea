"""Files are never skipped silently (issue #11, fail closed): every entry of connectors/ and of a space
directory that kcr would not read is a validation error naming it, so `kcr validate` and `kcr plan` exit 1
and plan sends nothing to Kibana; a space that prunes can then never delete what a misnamed file declares.
Symbolic links leading out of the repository (or into .git) are refused without being read, so the file
behind them never reaches a message; links inside the repository are read as usual."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import httpx
import pytest
from helpers.cli import run_main, write_repo
from helpers.transports import Recorder

from reconciler.model import derive_connector_id
from reconciler.sandbox import Sandbox

KIBANA = "http://kibana.test"
GOOD = """\
connectors:
  - id: log-main
    name: Log main
    type: .server-log
"""
OTHER = """\
connectors:
  - id: log-other
    name: Log other
    type: .server-log
"""
CANARY = f"CANARY-{uuid.uuid4()}"


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"KIBANA_URL": KIBANA, "KIBANA_API_KEY": "k", "NO_COLOR": "1", "KCR_RECORD": str(tmp_path / "record.json")}


def sandbox(*connectors: dict[str, object]) -> Sandbox:
    return Sandbox.from_seed({"license": "platinum", "spaces": ["default", "ops"], "connectors": list(connectors)})


def run(argv: list[str], repo: Path, env: dict[str, str], transport: httpx.BaseTransport,
        capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run_main(capsys, [*argv, "--dir", str(repo)], env=env, transport=transport)
    assert "internal error" not in out + err, out + err
    return code, out + err


def assert_refused(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, says: str) -> str:
    """validate (text and json), plan and plan --detailed-exitcode all exit 1 naming `where`, and no
    request reaches Kibana. Returns everything printed."""
    sb = sandbox()
    recording = Recorder(sb.transport().handle_request)
    printed = []
    for argv in (["validate"], ["validate", "--format", "json"], ["plan"],
                 ["plan", "--format", "json", "--detailed-exitcode"]):
        code, text = run(argv, repo, env_for(tmp_path), recording.transport(), capsys)
        assert code == 1, (argv, text)
        assert where in text, (argv, where, text)
        assert says.lower() in text.lower(), (argv, says, text)
        printed.append(text)
    assert recording.requests == [] and sb.counters["total"] == 0, recording.requests
    return "".join(printed)


# (name, files beside a good connectors/default/chat.yaml, the path the message names, a fragment of it)
UNREAD = [
    ("upper-case-yaml", {"connectors/default/paging.YAML": OTHER}, "connectors/default/paging.YAML",
     "rename it to paging.yaml"),
    ("mixed-case-yml", {"connectors/default/paging.Yml": OTHER}, "connectors/default/paging.Yml",
     "rename it to paging.yml"),
    ("yml-txt", {"connectors/default/paging.yml.txt": OTHER}, "connectors/default/paging.yml.txt", "reads only"),
    ("json", {"connectors/default/paging.json": "{}"}, "connectors/default/paging.json", "reads only"),
    ("notes-md", {"connectors/default/notes.md": "# notes\n"}, "connectors/default/notes.md", "reads only"),
    ("readme", {"connectors/default/README": "hello\n"}, "connectors/default/README", "reads only"),
    ("subdirectory", {"connectors/default/more/paging.yaml": OTHER}, "connectors/default/more",
     "never looks into subdirectories"),
    ("vim-swap", {"connectors/default/.chat.yaml.swp": "\x00binary"}, "connectors/default/.chat.yaml.swp",
     "reads only"),
    ("emacs-backup", {"connectors/default/chat.yaml~": GOOD}, "connectors/default/chat.yaml~", "reads only"),
    ("emacs-autosave", {"connectors/default/#chat.yaml#": GOOD}, "connectors/default/#chat.yaml#", "reads only"),
    ("hidden-yaml", {"connectors/default/.paging.yaml": OTHER}, "connectors/default/.paging.yaml", "hidden"),
    ("underscore-yaml", {"connectors/default/_paging.yaml": OTHER}, "connectors/default/_paging.yaml",
     "only _space.yaml"),
    ("two-space-settings", {"connectors/default/_space.yaml": "prune: false\n",
                            "connectors/default/_space.yml": "prune: true\n"},
     "connectors/default/_space.yml", "second space settings file"),
    ("yaml-beside-spaces", {"connectors/slack.yaml": OTHER}, "connectors/slack.yaml", "move it there"),
    ("readme-beside-spaces", {"connectors/README.md": "hello\n"}, "connectors/README.md",
     "reads only space directories"),
    ("invalid-space-id", {"connectors/Ops/paging.yaml": OTHER}, "connectors/Ops", "rename it to the space id"),
    ("hidden-space-dir", {"connectors/.ops/paging.yaml": OTHER}, "connectors/.ops", "not a Kibana space id"),
    ("settings-yml", {"kcr.yml": "id_mode: verbatim\n"}, "kcr.yml", "only from kcr.yaml"),
]


@pytest.mark.parametrize(("files", "where", "says"), [c[1:] for c in UNREAD], ids=[c[0] for c in UNREAD])
def test_unread_entry_is_an_error_and_plan_sends_nothing(files: dict[str, str], where: str, says: str,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD, **files})
    assert_refused(repo, tmp_path, capsys, where, says)


def test_placeholders_are_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """.gitkeep/.keep keep an empty directory in git: kcr neither reads nor refuses them."""
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/.gitkeep": "", "connectors/default/chat.yaml": GOOD, "connectors/default/.keep": "",
                 "connectors/ops/.gitkeep": ""})
    code, text = run(["validate"], repo, env_for(tmp_path), sandbox().transport(), capsys)
    assert code == 0, text
    assert "1 connector in 1 file, 2 spaces: valid" in text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_without_being_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Opening a pipe would block forever; it is neither read nor skipped."""
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD})
    os.mkfifo(repo / "connectors/default/pipe.yaml")
    assert_refused(repo, tmp_path, capsys, "connectors/default/pipe.yaml", "not a regular file")


def test_an_undecodable_name_is_named_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD})
    try:
        fd = os.open(os.fsencode(repo / "connectors/default") + b"/notes\xff.txt", os.O_CREAT | os.O_WRONLY)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    os.close(fd)
    printed = assert_refused(repo, tmp_path, capsys, "connectors/default/notes", "xff.txt")  # json escapes '\\'
    assert r"connectors/default/notes\xff.txt: error: kcr reads only" in printed


def test_prune_space_with_a_stray_upper_case_file_plans_no_delete(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The live connector is declared in paging.YAML, which kcr would not read: skipping it would make
    a pruning space delete it. Instead plan stops before reading Kibana. Once renamed, it is a no-op."""
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/_space.yaml": "prune: true\n", "connectors/default/chat.yaml": GOOD,
                 "connectors/default/paging.YAML": OTHER})
    live = {"id": derive_connector_id("default", "log-other"), "space": "default", "name": "Log other",
            "connector_type_id": ".server-log", "config": {}, "secrets": {}}
    sb = sandbox(live)
    recording = Recorder(sb.transport().handle_request)
    code, text = run(["plan", "--format", "json", "--detailed-exitcode"], repo, env_for(tmp_path),
                     recording.transport(), capsys)
    assert code == 1, text
    assert "connectors/default/paging.YAML" in text and '"delete"' not in text
    assert recording.requests == [] and sb.counters["total"] == 0
    assert sb.connectors_in("default") != []

    (repo / "connectors/default/paging.YAML").rename(repo / "connectors/default/paging.yaml")
    code, text = run(["plan", "--format", "json", "--detailed-exitcode"], repo, env_for(tmp_path),
                     recording.transport(), capsys)
    plan = json.loads(text)
    assert code == 2 and plan["summary"]["delete"] == 0 and plan["summary"]["no-op"] == 1, plan["summary"]


def test_prune_space_deletes_what_no_file_declares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the test above: without the stray file the same live connector is planned for deletion,
    so a stray file that was skipped would have deleted it."""
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/_space.yaml": "prune: true\n", "connectors/default/chat.yaml": GOOD})
    live = {"id": derive_connector_id("default", "log-other"), "space": "default", "name": "Log other",
            "connector_type_id": ".server-log", "config": {}, "secrets": {}}
    code, text = run(["plan", "--format", "json", "--detailed-exitcode"], repo, env_for(tmp_path),
                     sandbox(live).transport(), capsys)
    assert code == 2 and json.loads(text)["summary"]["delete"] == 1


# Links out of the repository: (name, link path in the repository, what the canary file holds)
OUTSIDE = [
    ("connector-file", "connectors/default/x.yaml", f"connectors: {CANARY}\n"),
    ("space-settings", "connectors/default/_space.yaml", f"prune: {CANARY}\n"),
    ("settings", "kcr.yaml", f"id_mode: {CANARY}\n"),
    ("passwd-like", "connectors/default/passwd.yaml", f"root:x:0:0:{CANARY}:/root:/bin/bash\n"),
]


@pytest.mark.parametrize(("link", "content"), [c[1:] for c in OUTSIDE], ids=[c[0] for c in OUTSIDE])
def test_link_out_of_the_repository_is_refused_unread(link: str, content: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD})
    canary = tmp_path / "outside" / "canary.yaml"
    write_repo(tmp_path, {"outside/canary.yaml": content})
    (repo / link).symlink_to(canary)
    printed = assert_refused(repo, tmp_path, capsys, link, "outside the repository")
    assert CANARY not in printed


@pytest.mark.parametrize("which", ["space-directory", "connectors-directory"])
def test_linked_directory_out_of_the_repository_is_refused_unread(which: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    write_repo(repo, {"kcr.yaml": "id_mode: uuid5\n"})
    write_repo(tmp_path, {"outside/ops/x.yaml": f"connectors: {CANARY}\n"})
    if which == "space-directory":
        write_repo(repo, {"connectors/default/chat.yaml": GOOD})
        (repo / "connectors/ops").symlink_to(tmp_path / "outside/ops", target_is_directory=True)
        where = "connectors/ops"
    else:
        (repo / "connectors").symlink_to(tmp_path / "outside", target_is_directory=True)
        where = "connectors"
    printed = assert_refused(repo, tmp_path, capsys, where, "outside the repository")
    assert CANARY not in printed


def test_chain_of_links_ending_outside_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A link to an in-repository link that leads out: the end of the chain counts."""
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD})
    write_repo(tmp_path, {"outside/canary.yaml": f"connectors: {CANARY}\n"})
    (repo / "hop.yaml").symlink_to(tmp_path / "outside/canary.yaml")
    (repo / "connectors/default/x.yaml").symlink_to("../../hop.yaml")
    printed = assert_refused(repo, tmp_path, capsys, "connectors/default/x.yaml", "outside the repository")
    assert CANARY not in printed


def test_link_into_git_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """.git/config can hold the clone URL with the CI job's token: never read, even though it is inside."""
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD, ".git/config": f"connectors: {CANARY}\n"})
    (repo / "connectors/default/git.yaml").symlink_to("../../.git/config")
    printed = assert_refused(repo, tmp_path, capsys, "connectors/default/git.yaml", ".git")
    assert CANARY not in printed


def test_dangling_link_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Emacs leaves `.#name` lock links pointing nowhere; a link to a moved file is the same."""
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD})
    (repo / "connectors/default/gone.yaml").symlink_to("../../moved/gone.yaml")
    assert_refused(repo, tmp_path, capsys, "connectors/default/gone.yaml", "dangling")


def test_dangling_settings_link_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kcr.yaml that points nowhere would otherwise mean default settings (another id_mode: other ids)."""
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD})
    (repo / "kcr.yaml").symlink_to("shared/kcr.yaml")
    assert_refused(repo, tmp_path, capsys, "kcr.yaml", "dangling")


def test_link_loop_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    write_repo(repo, {"connectors/default/chat.yaml": GOOD})
    (repo / "connectors/default/a.yaml").symlink_to("b.yaml")
    (repo / "connectors/default/b.yaml").symlink_to("a.yaml")
    assert_refused(repo, tmp_path, capsys, "connectors/default/a.yaml", "cannot be followed")


def test_link_inside_the_repository_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A connector file and a space directory linked to places inside the repository are read as if they
    were there, and named by the link; a repository reached through a linked --dir works as well."""
    real_repo = tmp_path / "real-repo"
    write_repo(real_repo, {"shared/chat.yaml": GOOD, "teams/ops/index.yaml": OTHER})
    (real_repo / "connectors/default").mkdir(parents=True)
    (real_repo / "connectors/default/chat.yaml").symlink_to("../../shared/chat.yaml")
    (real_repo / "connectors/ops").symlink_to("../teams/ops", target_is_directory=True)
    repo = tmp_path / "repo"
    repo.symlink_to(real_repo, target_is_directory=True)
    code, text = run(["validate"], repo, env_for(tmp_path), sandbox().transport(), capsys)
    assert code == 0, text
    assert "2 connectors in 2 files, 2 spaces: valid" in text
    sb = sandbox()
    code, text = run(["plan", "--format", "json", "--detailed-exitcode"], repo, env_for(tmp_path), sb.transport(),
                     capsys)
    plan = json.loads(text)
    assert code == 2 and plan["summary"]["create"] == 2, plan["summary"]
    files = sorted(c["desired"]["file"] for c in plan["changes"])
    assert files == ["connectors/default/chat.yaml", "connectors/ops/index.yaml"]
    assert not any(re.search(r"shared|teams", f) for f in files)
