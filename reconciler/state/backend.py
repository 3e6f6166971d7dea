"""What every record backend offers, and what its lock says.

`RecordBackend` is the interface the cli drives (load, save, lock, unlock, force-unlock) and `locked`
holds a backend's lock for one apply. `lock_info` is the one place that writes a lock's content:
Terraform's lock info, which the file backend stores in its lock file and the HTTP backend sends
with LOCK. Callers name only the operation and a note (the applier: its plan's Kibana and spaces);
`describe_holder` and `lock_id_of` read a lock back for the "locked by" message. Kept apart from the
backends because both, and the applier's caller, share it.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import socket
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from reconciler import __version__
from reconciler.model import SecretDigest

LockInfoArg = str | Mapping[str, Any] | None
"""What a caller tells a lock: a note (str), or `Operation`/`Info` strings; None for the defaults."""

DEFAULT_OPERATION = "kcr apply"


class RecordBackend(Protocol):
    @property
    def key_warning(self) -> str | None:
        """Set by load() when the record was written with another KCR_FINGERPRINT_KEY: what to say, once."""

    def load(self) -> dict[str, SecretDigest]: ...

    def save(self, record: Mapping[str, SecretDigest]) -> None: ...

    def lock(self, info: LockInfoArg = None) -> None: ...

    def unlock(self) -> None: ...

    def force_unlock(self, lock_id: str) -> None: ...


@contextlib.contextmanager
def locked(backend: RecordBackend, info: LockInfoArg = None) -> Iterator[RecordBackend]:
    """Holds the backend's lock for the duration of an apply, releasing it whatever happens."""
    backend.lock(info)
    try:
        yield backend
    finally:
        backend.unlock()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _who(env: Mapping[str, str]) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = env.get("USER", "unknown")
    return f"{user}@{socket.gethostname()}"


def lock_info(env: Mapping[str, str], info: LockInfoArg, path: str) -> dict[str, str]:
    """Terraform's lock info (ID, Operation, Info, Who, Version, Created, Path): GitLab requires every
    field, and people reading a "locked by" message want to find the pipeline that holds it."""
    operation, text = DEFAULT_OPERATION, ""
    if isinstance(info, str):
        text = info
    elif isinstance(info, Mapping):
        operation = str(info.get("Operation", info.get("operation", operation)))
        text = str(info.get("Info", info.get("info", "")))
    job = env.get("CI_JOB_URL")
    if job and job not in text:
        text = f"{text} {job}".strip()
    return {
        "ID": str(uuid.uuid4()),
        "Operation": operation,
        "Info": text,
        "Who": _who(env),
        "Version": f"kcr {__version__}",
        "Created": _now(),
        "Path": path,
    }


def lock_id_of(holder: Any) -> str:
    """The id `kcr force-unlock` takes; a placeholder when the holder gave none, so the advice still reads."""
    if isinstance(holder, Mapping):
        return str(holder.get("ID") or holder.get("id") or "<LOCK_ID>")
    return "<LOCK_ID>"


# A holder's fields in the order a "locked by" message names them: Terraform's spelling, the other
# spelling a lock may carry instead (the file backend's lock also has "time"), and the wording.
_HOLDER_PARTS = (
    ("Created", "time", "since {}"),
    ("Operation", "operation", "for {}"),
    ("Info", "info", "[{}]"),
    ("ID", "id", "lock id {}"),
)


def describe_holder(holder: Any) -> str:
    """Who holds a lock, from whatever lock info they left: enough to find that run or pipeline."""
    if not isinstance(holder, Mapping):
        return "another run (no lock information available)"
    who = holder.get("Who") or holder.get("who") or "someone"
    parts = [str(who)]
    pid, host = holder.get("pid"), holder.get("host")
    if pid or host:
        parts.append(f"(pid {pid} on {host})")
    for key, alias, wording in _HOLDER_PARTS:
        value = holder.get(key) or holder.get(alias)
        if value:
            parts.append(wording.format(value))
    return " ".join(parts)
