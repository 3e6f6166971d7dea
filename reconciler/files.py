"""Atomic file writes, shared by every file kcr writes (plans, reports, exports, the record of applied
secrets, the sandbox's state): a reader or a kill at any point sees the old file or the new one,
never half of one. Raises OSError; callers turn it into their own error with what to do."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, *, durable: bool = True) -> None:
    """Written beside the target, flushed to disk (`durable`), then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:  # the rename itself survives a power cut only once the directory is synced
        sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """A file created or renamed in `directory` keeps its name through a power cut only once the
    directory itself is synced. Best effort: some filesystems refuse to open or sync a directory."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
