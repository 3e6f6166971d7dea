"""`${file:PATH}`: a file's content, one trailing newline stripped. PATH is relative to the repository
unless absolute, and confined to the repository and the `file_roots` of kcr.yaml (after resolving
symlinks), never inside .git or .kcr.

`${file:${env:NAME}}` reads the file whose path the variable NAME holds: GitLab writes a CI variable of
type File to a temporary file (in `${CI_PROJECT_DIR}.tmp/`) and puts the file's path in the variable
(gitlab-org/gitlab-ce!27112, "CI variables of type file"), so the path is known only from the
variable. The exfiltration guard applies to NAME as to `${env:NAME}`, and the path is confined as any
other. Its messages never show that path: a variable of type Variable holding the secret itself would
otherwise put the secret in the message. Since that directory holds every file variable of the job,
a file that a guarded variable names (a credential of the run kept as a File) is refused however it
is reached, `${file:/its/path}` included.

`file_roots` entries may hold `${env:NAME}` (`${env:CI_PROJECT_DIR}.tmp`): `expand_root` expands them
when kcr.yaml is read; an entry that cannot be expanded is refused there, never kept literally."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.model import Settings
from reconciler.secret_backends.base import Context, Read, Unresolved
from reconciler.secret_backends.guard import guard_refusal, jwt_var

if TYPE_CHECKING:
    from reconciler.references import Reference

MAX_FILE_BYTES = 1024 * 1024
PRIVATE_DIRS = frozenset({".git", ".kcr"})
ENV_IN_FILE = "${env:"  # `${file:${env:NAME}}`: the one reference that may stand inside another
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # as `${env:NAME}` (env.py); used with fullmatch
_IN_ROOT = re.compile(r"\$\$\{|\$\{([^}]*)\}?")  # an escape, or a `${...}` (closed or not)


def env_target(target: str) -> str | None:
    """NAME, when `target` (what follows `file:`) is `${env:NAME}`; None for a plain path."""
    if target.startswith(ENV_IN_FILE) and target.endswith("}"):
        return target[len(ENV_IN_FILE):-1]
    return None


class FileBackend:
    scheme = "file"
    form = "${file:PATH}"
    once_per_run = False

    def problem(self, target: str, column: int) -> str | None:
        if not target.strip() or "\x00" in target:
            return f"${{file:...}} at column {column} needs a path"
        name = env_target(target)
        if name is not None and not _ENV_NAME.fullmatch(name):
            return (f"${{file:${{env:...}}}} at column {column} needs a variable name of letters, digits and '_' "
                    "(not starting with a digit)")
        if name is None and "${" in target:
            return (f"${{file:...}} at column {column} holds '${{': only ${{file:${{env:NAME}}}} may nest a "
                    "reference")
        return None

    def read(self, refs: Sequence[Reference], context: Context) -> Mapping[str, Read | Unresolved]:
        out: dict[str, Read | Unresolved] = {}
        for ref in refs:
            try:
                name = env_target(ref.target)
                if name is None:
                    out[ref.text] = Read(_read(ref.target, f"file {ref.target!r}", context))
                else:
                    out[ref.text] = Read(_read(_path_in(name, context), f"the file ${name} names", context,
                                               hint=_NOT_A_PATH.format(name=name)))
            except Unresolved as exc:
                out[ref.text] = exc
        return out


_NOT_A_PATH = ("; ${name} must hold a file's path (in GitLab a variable of type File); if it holds the secret "
               "itself, write ${{env:{name}}} instead")


def _path_in(name: str, context: Context) -> str:
    """The path variable NAME holds, behind the same guard as `${env:NAME}`."""
    refusal = guard_refusal(name, context.settings, jwt_var(context.env))
    if refusal:
        raise Unresolved(refusal)
    path = context.env.get(name)
    if path is None:
        raise Unresolved(f"environment variable {name} is not set (it should hold the path of a file, as a "
                         "GitLab variable of type File does)")
    if not path.strip() or "\x00" in path:
        raise Unresolved(f"environment variable {name} holds no file path" + _NOT_A_PATH.format(name=name))
    return path


def _read(target: str, label: str, context: Context, hint: str = "") -> str:
    """`label` names the file in messages (`target` itself may be a misplaced secret when it came from a
    variable); `hint` is added where a wrong kind of variable is the likely cause."""
    root = context.root.resolve()
    candidate = Path(target)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise Unresolved(f"{label} does not exist{hint}") from None
    roots = [root, *((root / r).resolve() for r in context.settings.file_roots)]
    if not any(real == r or real.is_relative_to(r) for r in roots):
        raise Unresolved(f"{label} is outside the repository and the file_roots of kcr.yaml "
                         "(symlinks resolved); add its directory to file_roots to allow it")
    if real.is_relative_to(root) and set(real.relative_to(root).parts) & PRIVATE_DIRS:
        # .git/config can hold a clone URL with the job's token; .kcr holds kcr's own record
        raise Unresolved(f"{label} is inside {'/'.join(sorted(PRIVATE_DIRS))}, which kcr never "
                         "reads secrets from (the clone's credentials live there)")
    refusal = _guarded_file(real, context)
    if refusal:
        raise Unresolved(f"{label} is refused: {refusal}")
    if not real.is_file():
        raise Unresolved(f"{label} is not a regular file")
    try:
        with real.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise Unresolved(f"cannot read {label}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_FILE_BYTES:
        raise Unresolved(f"{label} is over {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unresolved(f"{label} is not UTF-8 text") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _guarded_file(real: Path, context: Context) -> str | None:
    """Why `real` may not be read when a variable the exfiltration guard refuses holds its path (a
    credential of the run kept as a GitLab File variable), else None."""
    jwt = jwt_var(context.env)
    for name, value in context.env.items():
        if not value or "\x00" in value or "/" not in value:
            continue
        refusal = guard_refusal(name, context.settings, jwt)
        if not refusal:
            continue
        try:
            if Path(value).resolve(strict=True) == real:
                return f"it is the file ${name} names; {refusal}"
        except (OSError, RuntimeError, ValueError):
            continue
    return None


# --- file_roots ----------------------------------------------------------------------------------------


class RootError(ValueError):
    """A `file_roots` entry that cannot be expanded. `unset` when the only fault is a variable this run
    does not have (offline validation may not see it: a warning there); the message never holds a
    variable's value."""

    def __init__(self, message: str, *, unset: bool = False) -> None:
        super().__init__(message)
        self.unset = unset


def expand_root(entry: str, env: Mapping[str, str], settings: Settings) -> str:
    """`entry` with each `${env:NAME}` replaced by the variable's value (`$${` is a literal `${`). Any
    other `${`, an unclosed one, a guarded or an unset variable raises RootError: a root kept as
    written would be a directory named `${env:...}`, and one expanded from nothing would be the
    repository's parent (`.tmp` alone), a root nobody meant."""
    guard_jwt = jwt_var(env)
    unset: list[str] = []

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        inner = match.group(1)
        column = match.start() + 1
        if not match.group(0).endswith("}"):
            raise RootError(f"'${{' at column {column} is never closed by '}}'; write ${{env:NAME}} "
                            "(a literal '${' is written '$${')")
        scheme, colon, name = inner.partition(":")
        if not colon or scheme != "env":
            raise RootError(f"'${{' at column {column}: a file_roots entry may only read ${{env:NAME}} (a literal "
                            "'${' is written '$${')")
        if not _ENV_NAME.fullmatch(name):
            raise RootError(f"${{env:...}} at column {column} needs a variable name of letters, digits and '_' "
                            "(not starting with a digit)")
        refusal = guard_refusal(name, settings, guard_jwt)
        if refusal:
            raise RootError(refusal)
        if name not in env:
            unset.append(name)
            return ""
        return env[name]

    expanded = _IN_ROOT.sub(one, entry)
    if unset:
        names = list(dict.fromkeys(unset))
        refs = ", ".join(f"${{env:{n}}}" for n in names)
        raise RootError(f"file_roots entry reads {refs}, which {'is' if len(names) == 1 else 'are'} not set in "
                        "this run; set it (GitLab sets CI_PROJECT_DIR in every job) or remove the entry", unset=True)
    if not expanded.strip() or "\x00" in expanded:
        raise RootError("file_roots entry expands to an empty path; check the variables it reads")
    return expanded
