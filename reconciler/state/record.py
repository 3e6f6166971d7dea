"""The record of applied secrets as a document (SPEC §5): per connector id, the SecretDigest kcr last
sent. Kibana never returns secrets, so this record is the only way to tell "the source rotated" from
"unchanged". It holds HMACs and Vault versions only, never a value. Kept apart from the backends so
both read and write one format, `{"format": 1, "kibana_url": ..., "key_check": ..., "connectors": {...}}`,
and both answer a foreign or re-keyed record the same way.

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
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from reconciler.connection import redact_url
from reconciler.errors import ConfigError, StateError
from reconciler.model import SecretDigest

log = logging.getLogger("kcr.state")

FORMAT = 1
DEFAULT_RECORD = Path(".kcr") / "record.json"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_NAME_RE = re.compile(r"[^a-z0-9.-]")


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


class Stored(NamedTuple):
    """A record as read, before `usable_record` decides what of it this run may trust."""

    record: dict[str, SecretDigest]
    owner: str | None  # the normalised Kibana URL the record was made for
    key_check: str | None  # of the key that wrote its fingerprints; None in records older than the check


def record_json(record: Mapping[str, SecretDigest], kibana_url: str | None, check: str | None) -> dict[str, Any]:
    """The document both backends store (the HTTP one inside a Terraform state); connectors sorted, so
    two saves of the same record are the same bytes."""
    doc: dict[str, Any] = {"format": FORMAT}
    if kibana_url:
        doc["kibana_url"] = kibana_url
    if check:
        doc["key_check"] = check
    doc["connectors"] = {cid: record[cid].to_json() for cid in sorted(record)}
    return doc


def _with_key(stored: Stored, key: bytes | None, where: str) -> tuple[dict[str, SecretDigest], str | None]:
    """The record as this run may use it, and the warning when another key wrote it. Its HMACs are then
    unknown, not different: compared, every secret would show as changed and `kcr drift` alarm on each
    run. Vault versions are not keyed and stay; an entry left with nothing comparable is dropped, so
    the plan says "unknown" rather than "unchanged". Records without a check (older kcr) load as they are."""
    ours = key_check(key)
    if ours is None or stored.key_check is None or hmac.compare_digest(ours, stored.key_check):
        return stored.record, None
    return unkeyed(stored.record), KEY_MISMATCH.format(where=where)


def unkeyed(record: Mapping[str, SecretDigest]) -> dict[str, SecretDigest]:
    """The entries without their HMACs, for fingerprints made with another key: their Vault versions
    stay, and an entry left with nothing comparable is dropped."""
    return {cid: SecretDigest(vault_versions=digest.vault_versions) for cid, digest in record.items()
            if digest.vault_versions or not digest.hmacs}


def check_to_write(key: bytes | None, stored: str | None) -> str | None:
    """This run's key check; without a key, the stored one: the fingerprints kept from the stored
    record are still that key's, and a new entry made without a key holds none."""
    return key_check(key) or stored


def parse_record(doc: Any, where: str, advice: str) -> Stored:
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
    return Stored(_digests(doc.get("connectors", {}), where), owner, check)


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


def is_foreign(owner: str | None, kibana_url: str | None) -> bool:
    """Only a record that names another Kibana is foreign: one without a URL (an older kcr's) or a run
    without one keeps no tie to check."""
    return bool(owner and kibana_url and owner != kibana_url)


def _warn_foreign(where: str, owner: str, advice: str) -> None:
    """Said when loading: the plan still runs, with secrets unknown rather than claimed unchanged."""
    log.warning(
        "the record at %s was made for %s; treating secrets as unknown — %s", where, owner, advice
    )


def usable_record(
    stored: Stored, kibana_url: str | None, key: bytes | None, where: str, advice: str
) -> tuple[dict[str, SecretDigest], str | None]:
    """What a backend's load() returns, and its key warning: another Kibana's record loads as empty
    (with a warning when it holds anything), one written with another key without its HMACs."""
    if is_foreign(stored.owner, kibana_url):
        if stored.record:
            _warn_foreign(where, str(stored.owner), advice)
        return {}, None
    return _with_key(stored, key, where)


def foreign_error(where: str, owner: str, kibana_url: str, doing: str, advice: str) -> StateError:
    """The refusal to lock or overwrite another Kibana's record, with both ways out."""
    return StateError(
        f"{where}: the record there holds the applied secrets of {owner}, not of {kibana_url}; kcr will not "
        f"{doing} another Kibana's record. To fix: {advice}; or delete that record if {owner} no longer exists"
    )

