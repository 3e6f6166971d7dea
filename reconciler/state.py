"""The record of applied secrets (SPEC §5): per connector id, the SecretDigest kcr last sent. Kibana
never returns secrets, so this record is the only way to tell "the source rotated" from "unchanged".
It holds HMACs and Vault versions only, never a value.

A record belongs to one Kibana. Derived connector ids are the same in every environment, so a record
shared by two Kibanas would let one's plan claim "unchanged" for secrets only the other received. The
record therefore stores the Kibana URL it was made for (normalised: no trailing slash, lowercase scheme
and host, no default port), and a backend given `kibana_url`:
- loads another Kibana's record as empty, with a warning (secrets show as unknown, never as unchanged);
- refuses to lock or overwrite another Kibana's non-empty record (an apply stops before touching Kibana);
- by default keeps a local record per Kibana: `.kcr/record-<host>[-<port>].json` under the repository
  (host lowercased, characters other than letters, digits, '.', '-' replaced by '_'; the port only when
  the URL names a non-default one). Without `kibana_url` the default stays `.kcr/record.json`.
A record without a URL (written by an older kcr) is taken as this Kibana's and gets the URL on its next
save: nothing in it says otherwise.

The HMACs mean something only under the KCR_FINGERPRINT_KEY that made them, so a record also stores
`key_check`, HMAC-SHA256(key, "kcr-key-check-v1") in hex (never the key; absent when no key was
set). A record whose check differs from this run's key loads with its HMACs unknown and says so in
`key_warning`, rather than showing every secret as changed; a record without a check loads as it is.

Two backends behind one Protocol:
- a local JSON file `{"format": 1, "kibana_url": ..., "key_check": ..., "connectors": {...}}` (default above, or
  KCR_RECORD), written atomically and locked with an exclusive lock file beside it;
- Terraform's HTTP backend protocol (GET/POST the state, LOCK/UNLOCK with Terraform's lock info), so
  GitLab-managed Terraform state shares the record between pipelines and its lock serializes applies.
  GitLab wants a Terraform-state-shaped document, so the record (the same object, URL included) rides
  inside one as `kcr_record`.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import hashlib
import hmac
import json
import logging
import os
import re
import socket
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import httpx

from reconciler import __version__, jsondepth
from reconciler.deadline import DeadlineClient, deadline
from reconciler.errors import ConfigError, StateError
from reconciler.files import write_atomic
from reconciler.kibana import parse_go_bool, redact_url
from reconciler.model import SecretDigest

log = logging.getLogger("kcr.state")

FORMAT = 1
DEFAULT_RECORD = Path(".kcr") / "record.json"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_NAME_RE = re.compile(r"[^a-z0-9.-]")
HTTP_TIMEOUT = 30.0

LockInfoArg = str | Mapping[str, Any] | None


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
    operation, text = "kcr apply", ""
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


def _lock_id_of(holder: Any) -> str:
    if isinstance(holder, Mapping):
        return str(holder.get("ID") or holder.get("id") or "<LOCK_ID>")
    return "<LOCK_ID>"


def _describe_holder(holder: Any) -> str:
    if not isinstance(holder, Mapping):
        return "another run (no lock information available)"
    who = holder.get("Who") or holder.get("who") or "someone"
    parts = [str(who)]
    pid, host = holder.get("pid"), holder.get("host")
    if pid or host:
        parts.append(f"(pid {pid} on {host})")
    created = holder.get("Created") or holder.get("time")
    if created:
        parts.append(f"since {created}")
    operation = holder.get("Operation") or holder.get("operation")
    if operation:
        parts.append(f"for {operation}")
    info = holder.get("Info") or holder.get("info")
    if info:
        parts.append(f"[{info}]")
    lock_id = holder.get("ID") or holder.get("id")
    if lock_id:
        parts.append(f"lock id {lock_id}")
    return " ".join(parts)


def _digests(connectors: Any, where: str) -> dict[str, SecretDigest]:
    if not isinstance(connectors, Mapping):
        raise StateError(f"{where}: `connectors` is not an object")
    record: dict[str, SecretDigest] = {}
    for cid, body in connectors.items():
        if not isinstance(body, Mapping):
            raise StateError(f"{where}: the entry for connector {cid!r} is not an object")
        try:
            record[str(cid)] = SecretDigest.from_json(body)
        except (TypeError, ValueError, AttributeError):
            raise StateError(f"{where}: the entry for connector {cid!r} is malformed") from None
    return record


_KEY_CHECK_MESSAGE = b"kcr-key-check-v1"
_KEY_CHECK_RE = re.compile(r"[0-9a-f]{64}")
KEY_MISMATCH = (
    "{where}: the record was written with another key: secrets unknown; KCR_FINGERPRINT_KEY is not the key whose "
    "fingerprints this record of applied secrets holds, so they cannot be compared. To fix: restore the key, or run "
    "`kcr apply --sync-secrets` to re-record every secret with this one"
)


def fingerprint_key(env: Mapping[str, str]) -> bytes | None:
    """KCR_FINGERPRINT_KEY as the HMAC key (the cli's reading of it), None when unset or empty."""
    key = env.get("KCR_FINGERPRINT_KEY")
    return key.encode() if key else None


def key_check(key: bytes | None) -> str | None:
    """Which key wrote a record, told without revealing it: HMAC-SHA256(key, "kcr-key-check-v1"), hex.
    None without a key (a keyless record holds no fingerprint to check)."""
    return hmac.new(key, _KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest() if key else None


class _Stored(NamedTuple):
    record: dict[str, SecretDigest]
    owner: str | None  # the normalised Kibana URL the record was made for
    key_check: str | None  # of the key that wrote its fingerprints; None in records older than the check


def _record_json(record: Mapping[str, SecretDigest], kibana_url: str | None, check: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"format": FORMAT}
    if kibana_url:
        doc["kibana_url"] = kibana_url
    if check:
        doc["key_check"] = check
    doc["connectors"] = {cid: record[cid].to_json() for cid in sorted(record)}
    return doc


def _with_key(stored: _Stored, key: bytes | None, where: str) -> tuple[dict[str, SecretDigest], str | None]:
    """The record as this run may use it, and the warning when another key wrote it. Its HMACs are then
    unknown, not different: compared, every secret would show as changed and `kcr drift` alarm on each
    run. Vault versions are not keyed and stay; an entry left with nothing comparable is dropped, so
    the plan says "unknown" rather than "unchanged". Records without a check (older kcr) load as they are."""
    ours = key_check(key)
    if ours is None or stored.key_check is None or hmac.compare_digest(ours, stored.key_check):
        return stored.record, None
    kept = {cid: SecretDigest(vault_versions=digest.vault_versions) for cid, digest in stored.record.items()
            if digest.vault_versions or not digest.hmacs}
    return kept, KEY_MISMATCH.format(where=where)


def _check_to_write(key: bytes | None, stored: str | None) -> str | None:
    """This run's key check; without a key, the stored one: the fingerprints kept from the stored
    record are still that key's, and a new entry made without a key holds none."""
    return key_check(key) or stored


def _parse_record(doc: Any, where: str, advice: str) -> _Stored:
    """The digests, the (normalised) Kibana URL the record was made for (None when it names none) and
    the check of the key that wrote it (None when it carries none)."""
    if not isinstance(doc, Mapping):
        raise StateError(f"{where}: the record of applied secrets is not a JSON object; {advice}")
    if doc.get("format") != FORMAT:
        raise StateError(
            f"{where}: record format {doc.get('format')!r} is not the one this kcr reads ({FORMAT}); "
            "upgrade kcr, or " + advice
        )
    url = doc.get("kibana_url")
    if url is not None and (not isinstance(url, str) or not url.strip()):
        raise StateError(f"{where}: `kibana_url` is not a URL; {advice}")
    try:
        owner = normalize_kibana_url(url) if url else None
    except ConfigError:
        raise StateError(f"{where}: `kibana_url` {redact_url(str(url))!r} is not an http(s) URL; {advice}") from None
    check = doc.get("key_check")
    if check is not None and (not isinstance(check, str) or not _KEY_CHECK_RE.fullmatch(check)):
        raise StateError(f"{where}: `key_check` is not a key check value (64 hex digits); {advice}")
    return _Stored(_digests(doc.get("connectors", {}), where), owner, check)


def normalize_kibana_url(url: str) -> str:
    """One spelling per Kibana, so `HTTPS://Kibana:443/` and `https://kibana` own the same record. User
    info, query and fragment are dropped: they never reach a record or a message."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        raise ConfigError(f"Kibana URL {redact_url(url)!r} is not an http(s) URL")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"Kibana URL {redact_url(url)!r} has a port that is not a number") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def default_record_path(kibana_url: str | None) -> Path:
    """`.kcr/record-<host>[-<port>].json` (relative to the repository) for a known Kibana, else
    `.kcr/record.json`. Two Kibanas on one host and port (different basePaths) share a file name; the
    URL stored inside still keeps their records apart."""
    if not kibana_url:
        return DEFAULT_RECORD
    parts = urllib.parse.urlsplit(normalize_kibana_url(kibana_url))
    name = _UNSAFE_NAME_RE.sub("_", parts.hostname or "")
    if parts.port is not None:
        name = f"{name}-{parts.port}"
    return DEFAULT_RECORD.with_name(f"record-{name}.json")


def _foreign(owner: str | None, kibana_url: str | None) -> bool:
    return bool(owner and kibana_url and owner != kibana_url)


def _foreign_warning(where: str, owner: str, advice: str) -> None:
    log.warning(
        "the record at %s was made for %s; treating secrets as unknown — %s", where, owner, advice
    )


def _foreign_error(where: str, owner: str, kibana_url: str, doing: str, advice: str) -> StateError:
    return StateError(
        f"{where}: the record there holds the applied secrets of {owner}, not of {kibana_url}; kcr will not "
        f"{doing} another Kibana's record. To fix: {advice}; or delete that record if {owner} no longer exists"
    )


# --------------------------------------------------------------------------------------------
# Local file


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
            return f"another run whose lock file has no lock ID ({_describe_holder(self.holder)})"
        return _describe_holder(self.holder)


_CORRUPT_ADVICE = (
    "restore it from a backup, or delete it: kcr then reports secrets as unknown until the next apply "
    "(`kcr apply --sync-secrets` pushes every secret and rebuilds the record)"
)


_FILE_ADVICE = "set KCR_RECORD per Kibana, or leave it unset: the default file (.kcr/record-<host>.json) is per Kibana"


@dataclass
class FileBackend:
    """`kibana_url`: the Kibana this run talks to (see the module docstring); None keeps no tie.
    `legacy`: the pre-per-Kibana default file, only mentioned in a warning when this one is missing."""

    path: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    kibana_url: str | None = None
    legacy: Path | None = field(default=None, repr=False)
    fingerprint_key: bytes | None = field(default=None, repr=False)  # KCR_FINGERPRINT_KEY, for the key check
    key_warning: str | None = field(default=None, init=False, repr=False)  # see RecordBackend
    _lock_id: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kibana_url is not None:
            self.kibana_url = normalize_kibana_url(self.kibana_url)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _read(self) -> _Stored | None:
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
        return _parse_record(doc, str(self.path), _CORRUPT_ADVICE)

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
        if _foreign(stored.owner, self.kibana_url):
            if stored.record:
                _foreign_warning(str(self.path), str(stored.owner), _FILE_ADVICE)
            return {}
        record, self.key_warning = _with_key(stored, self.fingerprint_key, str(self.path))
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
            raise _foreign_error(str(self.path), owner, self.kibana_url, doing, _FILE_ADVICE)
        return self.kibana_url or owner, check

    def save(self, record: Mapping[str, SecretDigest]) -> None:
        """Write to a temporary file in the same directory, fsync, then rename over the record: a
        crash at any point leaves either the old record or the new one, never half of one."""
        owner, stored_check = self._check_owner("overwrite")
        doc = _record_json(record, owner, _check_to_write(self.fingerprint_key, stored_check))
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot write the record of applied secrets ({exc.strerror or exc}); "
                "the previous record is unchanged"
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


# --------------------------------------------------------------------------------------------
# Terraform HTTP backend (GitLab-managed Terraform state)


_HTTP_ADVICE = "set KCR_RECORD_GITLAB_STATE (or KCR_RECORD_HTTP_ADDRESS) per Kibana, e.g. kcr-<environment>"


HTTP_RETRIES = 3
_LOCK_OUTCOME_UNKNOWN = frozenset({500, 502, 504})


def _holder_in(response: httpx.Response) -> Any:
    """The lock info of a 409/423, None when the body is not JSON."""
    try:
        return jsondepth.loads(response.content)
    except ValueError:
        return None


@dataclass
class HttpBackend:
    """Terraform's HTTP backend protocol. The record is wrapped in a Terraform-state-shaped document
    whose serial grows with each save (GitLab versions states by serial)."""

    address: str
    lock_address: str | None = None
    unlock_address: str | None = None
    lock_method: str = "LOCK"
    unlock_method: str = "UNLOCK"
    update_method: str = "POST"
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    verify: bool = True
    kibana_url: str | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    fingerprint_key: bytes | None = field(default=None, repr=False)  # KCR_FINGERPRINT_KEY, for the key check
    timeout: float = HTTP_TIMEOUT  # bounds each whole request, however slowly the server answers
    key_warning: str | None = field(default=None, init=False, repr=False)  # see RecordBackend
    _serial: int | None = field(default=None, init=False, repr=False)
    _owner: str | None = field(default=None, init=False, repr=False)
    _key_check: str | None = field(default=None, init=False, repr=False)  # of the state read or written last
    _stored_any: bool = field(default=False, init=False, repr=False)
    _lineage: str | None = field(default=None, init=False, repr=False)
    _held: dict[str, str] | None = field(default=None, init=False, repr=False)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kibana_url is not None:
            self.kibana_url = normalize_kibana_url(self.kibana_url)

    def __repr__(self) -> str:
        return f"HttpBackend(address={redact_url(self.address)!r}, locking={self.lock_address is not None})"

    def _http(self) -> httpx.Client:
        if self._client is None:
            auth = (self.username, self.password or "") if self.username else None
            self._client = DeadlineClient(
                auth=auth,
                transport=self.transport,
                timeout=self.timeout,
                verify=self.verify,
                headers={"User-Agent": f"kcr/{__version__}"},
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _send(
        self, method: str, url: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Retries a passing failure (transport, 429, 502-504) for every call but LOCK, whose outcome an
        ambiguous failure would hide (lock() reads the holder back instead). Reads and the whole-state
        POST are idempotent: the same document at the same serial."""
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        retries = 0 if (method, url) == (self.lock_method, self.lock_address) else HTTP_RETRIES
        for attempt in range(retries + 1):
            try:
                with deadline(self.timeout, f"the state backend's {self.timeout:g}s limit"):
                    response = self._http().request(method, url, content=content, headers=headers, params=params)
            except httpx.HTTPError as exc:
                if attempt < retries:
                    self.sleep(0.5 * 2**attempt)
                    continue
                raise StateError(
                    f"{method} {redact_url(url)}: the state backend could not be reached ({type(exc).__name__})"
                ) from None
            if response.status_code in (429, 502, 503, 504) and attempt < retries:
                self.sleep(0.5 * 2**attempt)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, method: str, url: str, response: httpx.Response, doing: str) -> StateError:
        hint = ""
        if response.status_code in (401, 403):
            hint = (
                "; check KCR_RECORD_HTTP_USERNAME/KCR_RECORD_HTTP_PASSWORD"
                " (in GitLab CI: CI_JOB_TOKEN, role Maintainer)"
            )
        return StateError(
            f"{method} {redact_url(url)}: the state backend answered {response.status_code} while {doing}{hint}"
        )

    def load(self) -> dict[str, SecretDigest]:
        self.key_warning = None
        record = self._read()
        if _foreign(self._owner, self.kibana_url):
            if record:
                _foreign_warning(redact_url(self.address), str(self._owner), _HTTP_ADVICE)
            return {}
        usable, self.key_warning = _with_key(_Stored(record, self._owner, self._key_check), self.fingerprint_key,
                                             redact_url(self.address))
        return usable

    def _check_owner(self, doing: str) -> None:
        if self.kibana_url is not None and _foreign(self._owner, self.kibana_url) and self._stored_any:
            raise _foreign_error(redact_url(self.address), str(self._owner), self.kibana_url, doing, _HTTP_ADVICE)

    def _read(self) -> dict[str, SecretDigest]:
        """The stored record whoever it belongs to; learns serial, lineage, owner and key check for the
        next save."""
        self._owner, self._stored_any, self._key_check = None, False, None
        response = self._send("GET", self.address)
        if response.status_code in (204, 404) or (response.is_success and not response.content.strip()):
            self._serial, self._lineage = 0, self._lineage or str(uuid.uuid4())
            return {}
        if not response.is_success:
            raise self._fail("GET", self.address, response, "reading the record")
        where = redact_url(self.address)
        try:
            doc = jsondepth.loads(response.content)
        except jsondepth.TooDeep as exc:
            raise StateError(f"{where}: the stored state is {exc}; delete that state to start a new record") from None
        except ValueError:
            raise StateError(
                f"{where}: the stored state is not JSON; delete that state to start a new record"
            ) from None
        if not isinstance(doc, Mapping):
            raise StateError(f"{where}: the stored state is not a JSON object")
        serial = doc.get("serial", 0)
        self._serial = serial if isinstance(serial, int) else 0
        lineage = doc.get("lineage")
        self._lineage = lineage if isinstance(lineage, str) and lineage else str(uuid.uuid4())
        if "kcr_record" not in doc:
            if doc.get("resources"):
                raise StateError(
                    f"{where}: this state holds Terraform resources, not a kcr record; give kcr a state of its own "
                    "(KCR_RECORD_GITLAB_STATE=kcr-<environment>)"
                )
            return {}
        record, self._owner, self._key_check = _parse_record(
            doc["kcr_record"], where, "delete that state to start a new record")
        self._stored_any = bool(record)
        return record

    def save(self, record: Mapping[str, SecretDigest]) -> None:
        """Follows the serial and lineage of the state read last; under the lock that is the stored one."""
        if self._serial is None:
            self._read()
        self._check_owner("overwrite")
        owner = self.kibana_url or self._owner
        check = _check_to_write(self.fingerprint_key, self._key_check)
        serial = (self._serial or 0) + 1
        doc = {
            "version": 4,
            "terraform_version": f"kcr-{__version__}",
            "serial": serial,
            "lineage": self._lineage or str(uuid.uuid4()),
            "outputs": {},
            "resources": [],
            "kcr_record": _record_json(record, owner, check),
        }
        params = {"ID": self._held["ID"]} if self._held else None
        response = self._send(self.update_method, self.address, body=doc, params=params)
        if not response.is_success:
            raise self._fail(self.update_method, self.address, response, "saving the record")
        self._serial, self._lineage = serial, str(doc["lineage"])
        self._owner, self._stored_any, self._key_check = owner, bool(record), check

    def lock(self, info: LockInfoArg = None) -> None:
        """A LOCK whose answer was lost may have been taken. The protocol has no "read the lock", but a
        LOCK answers 409/423 with the holder's lock info, so the same LOCK (same lock ID) is sent again:
        a holder with this run's ID proves the first one landed, and the run holds that lock and goes
        on, releasing it at the end like any other. Releasing it and locking anew would add a request
        that can fail too, and open a window in which another run takes the record."""
        if not self.lock_address:
            return  # locking disabled, as in Terraform when lock_address is unset
        holder = lock_info(self.env, info, "")
        response = self._send_lock(self.lock_address, holder)
        if response.status_code in (409, 423):
            current = _holder_in(response)
            if _lock_id_of(current) != holder["ID"]:
                raise StateError(
                    f"{redact_url(self.address)}: the record is locked by {_describe_holder(current)}; wait for "
                    f"that run to finish, or, if it died, run `kcr force-unlock {_lock_id_of(current)}` (GitLab also "
                    "offers Operate > Terraform states > Unlock)"
                )
            log.info("%s: the answer to LOCK was lost, but the lock is this run's (lock id %s)",
                     redact_url(self.address), holder["ID"])
        elif not response.is_success:
            raise self._fail(self.lock_method, self.lock_address, response, "locking the record")
        self._held = holder
        if self.kibana_url is not None:
            try:  # refuse before the apply touches Kibana, not at its first save
                self._read()
                self._check_owner("apply with")
            except StateError:
                with contextlib.suppress(StateError):  # the refusal is the news, not a failed release
                    self.unlock()
                raise

    def _send_lock(self, address: str, holder: Mapping[str, str]) -> httpx.Response:
        """The LOCK, sent again while its outcome is unknown: a broken connection, or a 500/502/504
        (a gateway may answer so after the backend took the lock). Repeating it is safe because it
        carries the same lock ID: it takes a free lock, or is refused with the holder, maybe us."""
        content = json.dumps(holder).encode()
        failure = ""
        for attempt in range(HTTP_RETRIES + 1):
            try:
                response = self._http().request(
                    self.lock_method, address, content=content, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
            else:
                if response.status_code not in _LOCK_OUTCOME_UNKNOWN:
                    return response
                failure = f"answered {response.status_code}"
            if attempt < HTTP_RETRIES:
                self.sleep(0.5 * 2**attempt)
        raise StateError(
            f"{self.lock_method} {redact_url(address)}: the state backend could not be reached ({failure}), so kcr "
            f"cannot tell whether it took the lock; nothing was applied. Re-run when it is reachable; if that run "
            f"reports the record locked by lock id {holder['ID']}, it is this run's: `kcr force-unlock {holder['ID']}`"
        )

    def unlock(self) -> None:
        if not self.unlock_address or self._held is None:
            return
        response = self._send(self.unlock_method, self.unlock_address, body=self._held, params={"ID": self._held["ID"]})
        if not response.is_success and response.status_code != 404:
            raise self._fail(self.unlock_method, self.unlock_address, response, "unlocking the record")
        self._held = None

    def force_unlock(self, lock_id: str) -> None:
        """Terraform's force-unlock: releases the lock with this ID, whoever took it."""
        if not self.unlock_address:
            raise StateError(f"{redact_url(self.address)}: locking is not configured, so there is no lock to remove")
        self._held = {"ID": lock_id}
        self.unlock()


# --------------------------------------------------------------------------------------------
# Configuration


def backend_from_env(
    env: Mapping[str, str],
    root: Path,
    path: str | None = None,
    transport: httpx.BaseTransport | None = None,
    kibana_url: str | None = None,
) -> RecordBackend:
    """`path` (a --record flag) wins, then KCR_RECORD_HTTP_ADDRESS, then KCR_RECORD_GITLAB_STATE, then
    KCR_RECORD, then the default file (per Kibana when `kibana_url` is given, see the module docstring).
    Relative paths are taken from the repository root. `kibana_url` ties the record to that Kibana."""
    if kibana_url is not None:
        kibana_url = normalize_kibana_url(kibana_url)
    if path:
        return FileBackend(_under(root, path), env, kibana_url, fingerprint_key=fingerprint_key(env))
    address = env.get("KCR_RECORD_HTTP_ADDRESS", "")
    gitlab_state = env.get("KCR_RECORD_GITLAB_STATE", "")
    if address or gitlab_state:
        lock_address = env.get("KCR_RECORD_HTTP_LOCK_ADDRESS") or None
        unlock_address = env.get("KCR_RECORD_HTTP_UNLOCK_ADDRESS") or None
        lock_method = env.get("KCR_RECORD_HTTP_LOCK_METHOD") or "LOCK"
        unlock_method = env.get("KCR_RECORD_HTTP_UNLOCK_METHOD") or "UNLOCK"
        username = env.get("KCR_RECORD_HTTP_USERNAME") or None
        password = env.get("KCR_RECORD_HTTP_PASSWORD") or None
        if not address:
            address = _gitlab_address(env, gitlab_state)
            lock_address = lock_address or f"{address}/lock"
            unlock_address = unlock_address or f"{address}/lock"
            lock_method = env.get("KCR_RECORD_HTTP_LOCK_METHOD") or "POST"
            unlock_method = env.get("KCR_RECORD_HTTP_UNLOCK_METHOD") or "DELETE"
            if not username:
                username, password = "gitlab-ci-token", env.get("CI_JOB_TOKEN") or None
                if not password:
                    raise ConfigError(
                        "KCR_RECORD_GITLAB_STATE is set but CI_JOB_TOKEN is not; run in GitLab CI or set "
                        "KCR_RECORD_HTTP_USERNAME/KCR_RECORD_HTTP_PASSWORD (a token with the api scope)"
                    )
        for name, url in (("KCR_RECORD_HTTP_ADDRESS", address), ("KCR_RECORD_HTTP_LOCK_ADDRESS", lock_address),
                          ("KCR_RECORD_HTTP_UNLOCK_ADDRESS", unlock_address)):
            if url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"{name}={redact_url(url)!r} is not an http(s) URL")
        return HttpBackend(
            address=address,
            lock_address=lock_address,
            unlock_address=unlock_address,
            lock_method=lock_method.upper(),
            unlock_method=unlock_method.upper(),
            update_method=(env.get("KCR_RECORD_HTTP_UPDATE_METHOD") or "POST").upper(),
            username=username,
            password=password,
            env=env,
            transport=transport,
            verify=not _skip_verification(env),
            kibana_url=kibana_url,
            fingerprint_key=fingerprint_key(env),
        )
    record = env.get("KCR_RECORD", "")
    if record:
        return FileBackend(_under(root, record), env, kibana_url, fingerprint_key=fingerprint_key(env))
    return FileBackend(root / default_record_path(kibana_url), env, kibana_url, legacy=root / DEFAULT_RECORD,
                       fingerprint_key=fingerprint_key(env))


def _skip_verification(env: Mapping[str, str]) -> bool:
    name = "KCR_RECORD_HTTP_SKIP_CERT_VERIFICATION"
    raw = env.get(name, "")
    return parse_go_bool(name, raw) if raw else False


def _under(root: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def _gitlab_address(env: Mapping[str, str], name: str) -> str:
    missing = [v for v in ("CI_API_V4_URL", "CI_PROJECT_ID") if not env.get(v)]
    if missing:
        raise ConfigError(
            f"KCR_RECORD_GITLAB_STATE is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not; "
            "it works inside GitLab CI, elsewhere set KCR_RECORD_HTTP_ADDRESS"
        )
    if "/" in name or name in (".", ".."):
        raise ConfigError(f"KCR_RECORD_GITLAB_STATE={name!r}: a state name cannot contain '/'")
    api = env["CI_API_V4_URL"].rstrip("/")
    project = urllib.parse.quote(env["CI_PROJECT_ID"], safe="")
    return f"{api}/projects/{project}/terraform/state/{urllib.parse.quote(name, safe='')}"


__all__ = [
    "FileBackend",
    "HttpBackend",
    "RecordBackend",
    "backend_from_env",
    "default_record_path",
    "lock_info",
    "locked",
    "normalize_kibana_url",
]
