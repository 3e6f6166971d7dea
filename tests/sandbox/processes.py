"""Helpers for tests that run the sandbox as a real process (a sibling module: pytest puts this
directory on sys.path, since it has no __init__.py)."""

from __future__ import annotations

import subprocess
import threading


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One stdout line, bounded: a reader thread and a join with a timeout."""
    assert proc.stdout is not None
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""
