"""The record of applied secrets in a local JSON file (the default, or KCR_RECORD), and its lock.

The record is written atomically (temporary file, fsync, rename), so a crash leaves the old record or
the new one. During an apply, what changed is appended to a journal beside it (`save_changes`, see
`reconciler.state.journal`), so a save costs what changed, not the whole record; reading folds the
journal in, and the final whole save removes it.

The lock is a file beside it (`<record>.lock`) holding the holder's lock info, created
exclusively and never half-written. A lock left by a process that died on this host is taken over with
a warning; a lock file kcr cannot read gets a stable `unreadable-<hash>` id that `kcr force-unlock`
accepts. Separate from the HTTP backend: the two share the record format and the lock info, not how
they store or lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import jsondepth
from reconciler.errors import StateError
from reconciler.files import write_atomic
from reconciler.model import SecretDigest
from reconciler.state import journal
from reconciler.state.backend import LockInfoArg, describe_holder, lock_info
from reconciler.state.record import (
    Stored,
    check_to_write,
    foreign_error,
    normalize_kibana_url,
    parse_record,
    record_json,
    usable_record,
)

log = logging.getLogger("kcr.state")

_LOCK_ATTEMPTS = 5


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def _holder_is_dead(holder: Any) -> bool:
    """Only a holder on this host whose pid no longer runs is known dead; a lock from another host
    (a shared directory) or without a pid is never broken, since its holder may still be working."""
    if not isinstance(holder, Mapping) or holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(str(holder.get("pid")))
    except ValueError:
        return False
    return pid > 0 and pid != os.getpid() and not _pid_alive(pid)


_UNREADABLE_LOCK = "unreadable-"


@dataclass(frozen=True)
class _LockFile:
    """A lock file as found. `holder` is its JSON object (None when it is not one: empty, truncated by
    a crash, not JSON). `lock_id` is what `kcr force-unlock` takes: the holder's ID, or, for a lock
    without one, `unreadable-<sha256 prefix of its bytes>` (stable while the file is unchanged); None
    only when the file cannot be read at all (`problem` says why)."""

    holder: Mapping[str, Any] | None
    lock_id: str | None
    problem: str = ""

    @classmethod
    def parse(cls, raw: bytes) -> _LockFile:
        try:
            doc = jsondepth.loads(raw)
        except ValueError:  # not JSON, not UTF-8, or nested absurdly deep
            doc = None
        holder = doc if isinstance(doc, Mapping) else None
        lock_id = holder.get("ID") if holder is not None else None
        if isinstance(lock_id, str) and lock_id.strip() and lock_id.isprintable():
            return cls(holder, lock_id)
        return cls(holder, _UNREADABLE_LOCK + hashlib.sha256(raw).hexdigest()[:16], "no lock ID in it")

    def describe(self) -> str:
        if self.holder is None:
            return (
                "another run whose lock file is unreadable (empty, truncated or not JSON: that run may have "
                "died while writing it)"
            )
        if self.problem:
            return f"another run whose lock file has no lock ID ({describe_holder(self.holder)})"
        return describe_holder(self.holder)


_CORRUPT_ADVICE = (
    "restore it from a backup, or delete it: kcr then reports secrets as unknown until the next apply "
    "(`kcr apply --sync-secrets` pushes every secret and rebuilds the record)"
)


_JOURNAL_ADVICE = (
    "delete {journal} (the record beside it stays): the connectors it recorded then show secrets unknown until "
    "the next apply (`kcr apply --sync-secrets` pushes every secret and rebuilds the record)"
)


_FILE_ADVICE = "set KCR_RECORD per Kibana, or leave it unset: the default file (.kcr/record-<host>.json) is per Kibana"


@dataclass
class FileBackend:
    """`kibana_url`: the Kibana this run talks to (see `reconciler.state.record`); None keeps no tie.
    `legacy`: the pre-per-Kibana default file, only mentioned in a warning when this one is missing."""

    path: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    kibana_url: str | None = None
    legacy: Path | None = field(default=None, repr=False)
    fingerprint_key: bytes | None = field(default=None, repr=False)  # KCR_FINGERPRINT_KEY, for the key check
    key_warning: str | None = field(default=None, init=False, repr=False)  # see RecordBackend
    _lock_id: str | None = field(default=None, init=False, repr=False)
    _journal_check: str | None = field(default=None, init=False, repr=False)  # what journal lines say
    _journal_ready: bool = field(default=False, init=False, repr=False)  # the record beside it exists
    _written_owner: str | None = field(default=None, init=False, repr=False)  # the owner this run wrote or kept

    @property
    def journal_path(self) -> Path:
        return journal.journal_path(self.path)

    def __post_init__(self) -> None:
        if self.kibana_url is not None:
            self.kibana_url = normalize_kibana_url(self.kibana_url)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _read(self) -> Stored | None:
        """The stored digests, owner and key check; None when there is no record file."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the record of applied secrets ({exc.strerror})") from None
        try:
            doc = jsondepth.loads(text)
        except ValueError as exc:  # not JSON, or jsondepth.TooDeep
            raise StateError(
                f"{self.path}: the record of applied secrets is corrupt ({exc}); {_CORRUPT_ADVICE}"
            ) from None
        stored = parse_record(doc, str(self.path), _CORRUPT_ADVICE)
        lines = journal.read_lines(self.journal_path, _JOURNAL_ADVICE.format(journal=self.journal_path))
        if not lines:
            return stored
        return journal.fold(stored, lines, str(self.journal_path), _JOURNAL_ADVICE.format(journal=self.journal_path))

    def load(self) -> dict[str, SecretDigest]:
        self.key_warning = None
        stored = self._read()
        if stored is None:
            if self.legacy is not None and self.legacy != self.path and self.legacy.exists():
                log.warning(
                    "%s is missing but %s exists: records are now kept per Kibana; if that one holds the secrets "
                    "applied to %s, rename it to %s. Until then secrets show as unknown",
                    self.path, self.legacy, self.kibana_url, self.path,
                )
            return {}
        record, self.key_warning = usable_record(stored, self.kibana_url, self.fingerprint_key, str(self.path),
                                                 _FILE_ADVICE)
        return record

    def _check_owner(self, doing: str) -> tuple[str | None, str | None]:
        """Raises when the file holds another Kibana's non-empty record; returns the URL to write and
        the stored key check."""
        try:
            stored = self._read()
        except StateError:
            stored = None  # unreadable: load() has said so; an atomic save replaces it
        record, owner, check = stored if stored is not None else ({}, None, None)
        if self.kibana_url is not None and owner is not None and owner != self.kibana_url and record:
            raise foreign_error(str(self.path), owner, self.kibana_url, doing, _FILE_ADVICE)
        return self.kibana_url or owner, check

    def save(self, record: Mapping[str, SecretDigest]) -> None:
        """Write to a temporary file in the same directory, fsync, then rename over the record: a
        crash at any point leaves either the old record or the new one, never half of one. A journal
        beside it gets the whole record as its last line first, then goes: a crash between the two
        leaves a journal that replays to this same record."""
        if self._journal_ready and self._lock_id is not None:
            # Under our lock nobody else writes the record, and this run checked its owner at its first
            # save: re-reading it (and folding a journal of every change so far) would cost as much as
            # the whole record, at the end of every large apply.
            owner, stored_check = self._written_owner, self._journal_check
        else:
            owner, stored_check = self._check_owner("overwrite")
        doc = record_json(record, owner, check_to_write(self.fingerprint_key, stored_check))
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        try:
            if self.journal_path.exists():
                journal.append(self.journal_path, journal.reset_line(doc))
            write_atomic(self.path, data)
            journal.remove(self.journal_path)
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot write the record of applied secrets ({exc.strerror or exc}); "
                "the previous record is unchanged"
            ) from None
        self._journal_check, self._journal_ready, self._written_owner = doc.get("key_check"), True, owner

    def save_changes(self, changed: Mapping[str, SecretDigest], removed: Collection[str]) -> None:
        """What changed since the last save, appended to the journal: the cost of a save no longer
        grows with the record. The record's owner is checked (and the record written, when there is
        none yet) on the first call only: under the lock nobody else writes it."""
        if not self._journal_ready:
            owner, owner_check = self._check_owner("overwrite")
            if not self.path.exists():
                self.save({})
            else:
                self._journal_check = check_to_write(self.fingerprint_key, owner_check)
                self._journal_ready, self._written_owner = True, owner
        try:
            journal.append(self.journal_path, journal.changes_line(changed, removed, self._journal_check))
        except OSError as exc:
            raise StateError(
                f"{self.journal_path}: cannot append to the journal of the record of applied secrets "
                f"({exc.strerror or exc}); what it already holds is unchanged"
            ) from None

    def lock(self, info: LockInfoArg = None) -> None:
        """Exclusive, and never half-written: the holder's JSON is written to a temporary file and
        hard-linked into place, so a kill at any point leaves either no lock or a complete one. A lock
        left by a process that died on this host (kill -9, OOM, a cancelled CI job) is broken with a
        warning; one held by a live process, or by another host, is refused with its holder named."""
        holder = lock_info(self.env, info, str(self.path))
        holder.update({"pid": str(os.getpid()), "host": socket.gethostname(), "time": holder["Created"]})
        data = json.dumps(holder, indent=2) + "\n"
        for _ in range(_LOCK_ATTEMPTS):
            try:
                self._create_lock(data)
            except FileExistsError:
                found = self._read_lock()
                if found is None:
                    continue  # released in between: try again
                if not _holder_is_dead(found.holder):
                    raise StateError(self._locked_message(found)) from None
                self._break_stale(found)
                continue
            self._lock_id = holder["ID"]
            if self.kibana_url is not None:
                try:  # refuse before the apply touches Kibana, not at its first save
                    self._check_owner("apply with")
                except StateError:
                    self.unlock()
                    raise
            return
        raise StateError(
            f"{self.path}: could not take the lock ({self.lock_path}) after {_LOCK_ATTEMPTS} attempts: other runs "
            "keep taking it; wait for them to finish"
        )

    def _read_lock(self, path: Path | None = None) -> _LockFile | None:
        """The lock file at `path` (the lock by default); None when there is none."""
        where = path or self.lock_path
        try:
            raw = where.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return _LockFile(None, None, exc.strerror or type(exc).__name__)
        return _LockFile.parse(raw)

    def _locked_message(self, found: _LockFile) -> str:
        if found.lock_id is None:
            return (
                f"{self.path}: the record is locked, but its lock file {self.lock_path} cannot be read "
                f"({found.problem}); wait for the run that holds it to finish, or, if it died, remove that file"
            )
        return (
            f"{self.path}: the record is locked by {found.describe()}; wait for that run to finish, or, if it died, "
            f"run `kcr force-unlock {found.lock_id}` (it removes {self.lock_path})"
        )

    def _create_lock(self, data: str) -> None:
        """Raises FileExistsError when a lock is there."""
        directory = self.lock_path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.lock_path.name}.", suffix=".tmp")
        except OSError as exc:
            raise StateError(f"{self.lock_path}: cannot create the lock file ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, self.lock_path)  # atomic and exclusive: fails if the lock exists
            except FileExistsError:
                raise
            except OSError:  # a filesystem without hard links: exclusive create, then write
                self._create_lock_without_link(data)
        except FileExistsError:
            raise
        except OSError as exc:
            raise StateError(f"{self.lock_path}: cannot create the lock file ({exc.strerror})") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _create_lock_without_link(self, data: str) -> None:
        fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)

    def _break_stale(self, stale: _LockFile) -> None:
        if self._remove_lock(stale, f"the lock of a run that died ({stale.describe()})"):
            log.warning(
                "%s: removed the lock of a run that died without releasing it (%s)", self.path, stale.describe()
            )

    def _remove_lock(self, expected: _LockFile, what: str) -> bool:
        """Moves the lock aside and removes it only if it is still `expected` (same lock id): when two
        runs break the same stale lock at once, or a force-unlock races a new lock, the loser must not
        remove the winner's lock. False when the lock was gone or had changed (then it is put back)."""
        aside = self.lock_path.with_name(f"{self.lock_path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.lock_path, aside)
        except FileNotFoundError:
            return False  # someone else removed it first
        except OSError as exc:
            raise StateError(
                f"{self.path}: {what} cannot be removed ({exc.strerror}); remove {self.lock_path}"
            ) from None
        moved = self._read_lock(aside)
        same = moved is not None and moved.lock_id is not None and moved.lock_id == expected.lock_id
        if not same:  # a lock taken in between: put it back
            with contextlib.suppress(OSError):
                os.link(aside, self.lock_path)
        with contextlib.suppress(OSError):
            os.unlink(aside)
        return same

    def unlock(self) -> None:
        """Removes the lock only if this backend holds it: never someone else's."""
        if self._lock_id is None:
            return
        current = self._read_lock()
        if current is not None and current.lock_id == self._lock_id:
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
        self._lock_id = None

    def force_unlock(self, lock_id: str) -> None:
        """Terraform's force-unlock: removes the lock with this ID (from a "locked by" message) only.
        A lock file kcr cannot parse (empty, truncated) has the id `unreadable-<hash>` that message
        printed; the hash pins its content, so a lock written since is never the one removed."""
        current = self._read_lock()
        if current is None:
            raise StateError(f"{self.path}: the record is not locked")
        if current.lock_id is None:
            raise StateError(self._locked_message(current))
        if current.lock_id != lock_id:
            held = current.describe()
            if current.lock_id not in held:
                held += f", lock id {current.lock_id}"
            raise StateError(f"{self.path}: the lock is {held}, not lock id {lock_id}; nothing was removed")
        if not self._remove_lock(current, f"the lock {lock_id}"):
            raise StateError(f"{self.path}: the lock changed while it was being removed; nothing was removed")
        log.warning("%s: removed the lock of %s", self.path, current.describe())

