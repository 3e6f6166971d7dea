"""`${file:PATH}`: a file's content, one trailing newline stripped. PATH is relative to the repository
unless absolute, and confined to the repository and the `file_roots` of kcr.yaml (after resolving
symlinks), never inside .git or .kcr."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.secret_backends.base import Context, Read, Unresolved

if TYPE_CHECKING:
    from reconciler.references import Reference

MAX_FILE_BYTES = 1024 * 1024
PRIVATE_DIRS = frozenset({".git", ".kcr"})


class FileBackend:
    scheme = "file"
    form = "${file:PATH}"
    once_per_run = False

    def problem(self, target: str, column: int) -> str | None:
        if not target.strip() or "\x00" in target:
            return f"${{file:...}} at column {column} needs a path"
        return None

    def read(self, refs: Sequence[Reference], context: Context) -> Mapping[str, Read | Unresolved]:
        out: dict[str, Read | Unresolved] = {}
        for ref in refs:
            try:
                out[ref.text] = Read(_read(ref.target, context))
            except Unresolved as exc:
                out[ref.text] = exc
        return out


def _read(target: str, context: Context) -> str:
    root = context.root.resolve()
    candidate = Path(target)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise Unresolved(f"file {target!r} does not exist") from None
    roots = [root, *((root / r).resolve() for r in context.settings.file_roots)]
    if not any(real == r or real.is_relative_to(r) for r in roots):
        raise Unresolved(f"file {target!r} is outside the repository and the file_roots of kcr.yaml "
                         "(symlinks resolved); add its directory to file_roots to allow it")
    if real.is_relative_to(root) and set(real.relative_to(root).parts) & PRIVATE_DIRS:
        # .git/config can hold a clone URL with the job's token; .kcr holds kcr's own record
        raise Unresolved(f"file {target!r} is inside {'/'.join(sorted(PRIVATE_DIRS))}, which kcr never "
                         "reads secrets from (the clone's credentials live there)")
    if not real.is_file():
        raise Unresolved(f"{target!r} is not a regular file")
    try:
        with real.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise Unresolved(f"cannot read file {target!r}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_FILE_BYTES:
        raise Unresolved(f"file {target!r} is over {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unresolved(f"file {target!r} is not UTF-8 text") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text
