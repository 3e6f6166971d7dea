"""Which entries of a repository kcr reads, and a problem for every other one.

Layout: `connectors/<space>/*.yaml|*.yml` (each `{connectors: [...]}`), optional
`connectors/<space>/_space.yaml` (SpaceSettings) and `kcr.yaml` at the root (Settings). Any other entry
of connectors/ or of a space directory (bar .gitkeep/.keep) is an error, never skipped: a file kcr did
not read is a connector silently left out, and in a pruning space a delete. Symbolic links are followed
only while they stay inside the repository (and out of .git/.kcr); others are refused unread.

Separate from what the files say (`desired`, `connector_checks`): this is the file system's part,
the one that must fail closed on links, odd names and entries appearing or vanishing mid-read."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.errors import Problem
from reconciler.file_problems import short
from reconciler.model import SPACE_ID_PATTERN
from reconciler.secret_backends.file import PRIVATE_DIRS
from reconciler.yamlload import Document, YamlError, load_file

SETTINGS_FILE = "kcr.yaml"
SPACE_FILES = ("_space.yaml", "_space.yml")
CONNECTOR_SUFFIXES = (".yaml", ".yml")
PLACEHOLDERS = frozenset({".gitkeep", ".keep"})  # empty files git users add to keep a directory: never read
OTHER_SETTINGS_FILES = ("kcr.yml",)  # a name kcr would not read, so its settings would silently not apply
READS_ONLY = "kcr reads only *.yaml and *.yml files directly in the space directory"
_SPACE = re.compile(SPACE_ID_PATTERN)


class Walker:
    """Walks one repository, collecting a problem for each entry it will not read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = root.resolve()
        self._inside = root.as_posix().rstrip("/") + "/"  # how the paths kcr builds under the root begin
        self.problems: list[Problem] = []

    def rel(self, path: Path) -> str:
        text = path.as_posix()
        if text.startswith(self._inside):  # what relative_to says, without its walk over both paths' parts
            text = text[len(self._inside):]
        elif path.is_relative_to(self.root):
            text = path.relative_to(self.root).as_posix()
        # A name that is not UTF-8 (undecodable bytes) is shown escaped rather than breaking the output.
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    def refuse(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.rel(path), message))

    def real(self, path: Path) -> Path | None:
        """Where `path` really is, or None (with a problem) when kcr must not read it. Links are followed
        only while they stay inside the repository and out of .git/.kcr: a link out of it would carry
        /etc/passwd or a secret file into an error message, and .git/config can hold the clone's token.
        A refused target is never opened; the caller reads the returned path, not the link."""
        link = path.is_symlink()
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            if link:
                self.refuse(path, f"is a symbolic link to {_link_target(path)}, which does not exist (a dangling "
                            "link); fix the link or remove it")
            else:
                self.refuse(path, "disappeared while kcr was reading the repository; run again")
            return None
        except (OSError, RuntimeError) as exc:  # a link loop: RuntimeError before Python 3.13, OSError after
            self.refuse(path, f"cannot be followed ({_reason(exc)}); fix the symbolic link or remove it")
            return None
        if real != self.real_root and not real.is_relative_to(self.real_root):
            self.refuse(path, f"is a symbolic link whose target is outside the repository ({_link_target(path)}); "
                        "kcr refuses to read it: copy the file into the repository or remove the link")
            return None
        try:
            lexical = self.real_root / path.relative_to(self.root)
        except ValueError:
            lexical = real
        if real != lexical and set(real.relative_to(self.real_root).parts) & PRIVATE_DIRS:
            self.refuse(path, f"is a symbolic link into {'/'.join(sorted(PRIVATE_DIRS))} "
                        f"({_link_target(path)}), which kcr never reads (the clone's credentials live there); "
                        "remove the link")
            return None
        return real

    @staticmethod
    def placeholder(path: Path) -> bool:
        """A .gitkeep/.keep regular file: git users add one to keep an empty directory, kcr never reads it."""
        return path.name in PLACEHOLDERS and not path.is_symlink() and path.is_file()

    def entries(self, directory: Path) -> Iterator[tuple[Path, Path]]:
        """Each entry of `directory` in name order with its real path, bar placeholders and the links
        `real()` refuses (with their problem). In a directory no link leads to (nearly every one), an
        entry that is no link is where it appears, which is what `real()` would find resolving it."""
        unlinked = self.unlinked(directory)
        for entry in sorted(directory.iterdir()):
            if self.placeholder(entry):
                continue
            real = unlinked / entry.name if unlinked is not None and _not_a_link(entry) else self.real(entry)
            if real is not None:
                yield entry, real

    def unlinked(self, directory: Path) -> Path | None:
        """`directory`'s real path when it is where it appears in the repository (no link leads to it),
        else None: then each entry is resolved and checked on its own."""
        try:
            lexical = self.real_root / directory.relative_to(self.root)
            return lexical if directory.resolve(strict=True) == lexical else None
        except (ValueError, OSError, RuntimeError):  # outside the root, gone, or a link loop
            return None

    def document(self, path: Path, real: Path) -> Document | None:
        """`real` is read (what `real()` approved), `path` names it in problems."""
        try:
            return load_file(real, self.rel(path))
        except YamlError as exc:
            self.problems.extend(exc.problems)
            return None

    def fixed(self, path: Path, kind: Callable[[Path], bool], wrong_kind: str,
              missing: str | None = None) -> Path | None:
        """The real path of an entry kcr reads by its fixed name (kcr.yaml, connectors/), when it may read
        it and it is of the expected kind; else None, with a problem unless it is absent and optional."""
        if not os.path.lexists(path):
            if missing is not None:
                self.refuse(path, missing)
            return None
        real = self.real(path)
        if real is None:
            return None
        if not kind(real):
            self.refuse(path, wrong_kind)
            return None
        return real

    def settings_file(self) -> tuple[Path, Path] | None:
        """kcr.yaml as (path, real path) when there is one to read; a settings file kcr would not read, or
        one it may not, is a problem, since its settings (id_mode, allow_env) would silently not apply."""
        for name in OTHER_SETTINGS_FILES:
            if os.path.lexists(self.root / name):
                self.refuse(self.root / name, f"kcr reads its settings only from {SETTINGS_FILE}; rename it to "
                            f"{SETTINGS_FILE} (or remove it)")
        path = self.root / SETTINGS_FILE
        real = self.fixed(path, Path.is_file, "is not a regular file; kcr reads its settings from this name: "
                          "make it a file")
        return None if real is None else (path, real)

    def space_directories(self) -> dict[str, Path] | None:
        """connectors/<space>/ by space id, or None when there is no connectors/ to read. Any other entry
        of connectors/ is a problem: kcr would not read it, and silently leaving files out is how a plan
        comes to delete what they declare."""
        connectors_dir = self.root / "connectors"
        if self.fixed(connectors_dir, Path.is_dir, "is not a directory; put each space's files in connectors/<space>/",
                      missing=f"no connectors/ directory in {self.root}; put each space's files in "
                      "connectors/<space>/") is None:
            return None
        space_dirs: dict[str, Path] = {}
        for entry, real in self.entries(connectors_dir):
            if real.is_dir() and _SPACE.fullmatch(entry.name):
                space_dirs[entry.name] = entry
            elif real.is_dir():
                self.refuse(entry, f"space directory {short(entry.name)} is not a Kibana space id (lowercase "
                            "letters, digits, '-' and '_'); rename it to the space id or move it out of connectors/")
            elif real.is_file() and entry.suffix in CONNECTOR_SUFFIXES:
                self.refuse(entry, "connector files belong in a space directory: connectors/<space>/<file>.yaml; "
                            "move it there")
            else:
                self.refuse(entry, "kcr reads only space directories (connectors/<space>/, named by the Kibana "
                            "space id) directly in connectors/, so this would not be read; move it out of "
                            "connectors/")
        return space_dirs

    def space_entries(self, directory: Path) -> tuple[tuple[Path, Path] | None, list[tuple[Path, Path]]]:
        """The space's settings file and connector files, each as (path, real path). Every other entry
        is a problem: a skipped file is a connector silently left out of the plan, and with `prune: true`
        a delete of it."""
        settings: tuple[Path, Path] | None = None
        files: list[tuple[Path, Path]] = []
        for entry, real in self.entries(directory):
            unread = _unread_reason(entry, real)
            if unread is not None:
                self.refuse(entry, unread)
            elif entry.name not in SPACE_FILES:
                files.append((entry, real))
            elif settings is not None:
                self.refuse(entry, f"a second space settings file beside {settings[0].name}; kcr reads one: "
                            "merge them into _space.yaml and remove the other")
            else:
                settings = (entry, real)
        return settings, files


def _not_a_link(path: Path) -> bool:
    """The entry exists and is no symbolic link (False when it cannot be told: `real()` then finds why)."""
    try:
        return not stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _link_target(path: Path) -> str:
    """What a link says it points to (a path, never the content behind it), for messages."""
    try:
        return repr(os.readlink(path)) if path.is_symlink() else "a linked directory above it"
    except OSError:
        return "an unreadable target"


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or "a symbolic link loop"


def _unread_reason(entry: Path, real: Path) -> str | None:
    """Why kcr would not read this entry of a space directory (None: it reads it). The link's own name
    counts, as that is what the user sees in the space directory."""
    name = entry.name
    if real.is_dir():
        return (f"is a directory: {READS_ONLY} and never looks into subdirectories; move its files up into the "
                "space directory or move it out of connectors/")
    if not real.is_file():
        return f"is not a regular file (a pipe, socket or device): {READS_ONLY}; remove it"
    if name in SPACE_FILES:
        return None
    if name.startswith("."):
        return (f"is a hidden file (an editor's temporary file?): {READS_ONLY}, never hidden ones; remove it or "
                "move it out of connectors/")
    if name.startswith("_"):
        return (f"starts with '_', which only _space.yaml may: {READS_ONLY}, so this would not be read; rename it "
                "or move it out of connectors/")
    if entry.suffix in CONNECTOR_SUFFIXES:
        return None
    lower = entry.suffix.lower()
    hint = f"rename it to {entry.stem + lower}" if lower in CONNECTOR_SUFFIXES else "rename it to end in .yaml"
    return f"{READS_ONLY} (lowercase extension), so this would not be read; {hint} or move it out of connectors/"
