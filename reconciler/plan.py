"""The Plan: plain data that the planner produces and that rendering and applying consume.

Each change names its action (a closed enum), the fingerprint of the live connector it was computed
from, and the desired name/config/type plus the secret *references* (never values) that apply
resolves again. `reason` is for people and never steers apply.

A literal secret (allowed only by `allow_plaintext_secrets`, for local experiments) is never
written: the planner puts PLAINTEXT_MARKER, `{"$plaintext": true}`, in its place in
`Desired.secret_refs`, so such a change can be applied only by a one-run `kcr apply`, which takes
the value from the repository again.

The saved-plan file (`kcr plan --out`: JSON, its schema, consistency checks and MAC) is
`reconciler.planfile`; this module holds only the data, so every stage can share it without the file
format's dependencies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from reconciler.errors import Problem
from reconciler.model import FieldDiff as FieldDiff  # a Change's diffs: part of the plan's vocabulary
from reconciler.model import LiveConnector, RuleRef, SecretDigest
from reconciler.selection import Selection

FORMAT_VERSION = "1.1"  # 1.1: environment, removed_from_files, "drift" problems
PLAINTEXT_KEY = "$plaintext"
# Stands for one literal secret value in `Desired.secret_refs` (the value itself is never saved).
PLAINTEXT_MARKER: Mapping[str, bool] = MappingProxyType({PLAINTEXT_KEY: True})


def is_plaintext_marker(value: Any) -> bool:
    return isinstance(value, Mapping) and dict(value) == {PLAINTEXT_KEY: True}


def has_plaintext_marker(value: Any) -> bool:
    """True when a secret_refs value holds the marker anywhere (apply from a saved plan refuses it)."""
    if is_plaintext_marker(value):
        return True
    if isinstance(value, Mapping):
        return any(has_plaintext_marker(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_plaintext_marker(v) for v in value)
    return False


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    RECREATE = "recreate"  # delete then create with the same id: the type is immutable
    DELETE = "delete"
    NOOP = "no-op"
    UNMANAGED = "unmanaged"  # live, not declared, space does not prune: reported, left alone


MUTATING = frozenset({Action.CREATE, Action.UPDATE, Action.RECREATE, Action.DELETE})


class SecretsStatus(StrEnum):
    NONE = "none"  # the type takes no secrets
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    UNKNOWN = "unknown"  # no record and no key to compare with
    NOT_CHECKED = "not-checked"  # `kcr plan --no-secrets`: no reference was resolved, nothing compared


@dataclass(frozen=True)
class Guard:
    blocked: bool = False
    reasons: tuple[str, ...] = ()
    rules: tuple[RuleRef, ...] = ()  # the rules that use a blocked connector


@dataclass(frozen=True)
class Desired:
    """What apply sends (secrets as references, resolved again at apply time; a literal secret is
    PLAINTEXT_MARKER here, never its value)."""

    name: str
    type: str
    config: Mapping[str, Any]
    secret_refs: Mapping[str, Any]
    key: str
    protect: bool = False
    file: str | None = None


class _LiveFingerprint:
    """`Change.live_fingerprint`, hashed when first read. The planner hands in the live connector itself:
    `kcr plan` without `--out` never reads a no-op's fingerprint, and hashing one (JSON text, then sha256)
    was a third of what planning a no-op cost. Read, it is the same text whenever it is computed, so a saved
    plan is byte-identical; a loaded plan or a test hands in the text (or None: no live connector)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._key = f"_{name}"

    def __get__(self, change: Change | None, owner: type | None = None) -> str | None:
        if change is None:
            return None  # the dataclass field's default
        value: str | LiveConnector | None = change.__dict__[self._key]
        if isinstance(value, LiveConnector):
            value = change.__dict__[self._key] = live_fingerprint(value)
        return value

    def __set__(self, change: Change, value: str | LiveConnector | None) -> None:
        # Only the dataclass __init__ gets here: a frozen Change refuses every later assignment first.
        change.__dict__[self._key] = value


@dataclass(frozen=True)
class Change:
    space: str
    id: str
    action: Action
    reason: str
    name: str  # the desired name, else the live one
    type: str
    live_type: str | None = None
    diffs: tuple[FieldDiff, ...] = ()
    secrets: SecretsStatus = SecretsStatus.NONE
    secret_keys_changed: tuple[str, ...] = ()
    referenced_by_count: int | None = 0  # None: Kibana's answer did not carry it (unknown, never read as 0)
    guard: Guard = Guard()
    # None: the connector did not exist. The planner passes the LiveConnector: see _LiveFingerprint.
    live_fingerprint: _LiveFingerprint = _LiveFingerprint()
    desired: Desired | None = None
    secret_digest: SecretDigest | None = None  # what the record holds after this change applies
    # An unmanaged connector kcr's record says it applied, that no file declares any more: drift that
    # apply leaves alone (the space does not prune), reported as "removed from the files".
    removed_from_files: bool = False

    @property
    def address(self) -> str:
        return f"{self.space}/{self.id}"


@dataclass(frozen=True)
class Plan:
    kibana_url: str
    spaces: tuple[str, ...]
    changes: tuple[Change, ...]
    problems: tuple[Problem, ...] = ()  # findings about Kibana (Problem.in_kibana): licence, types, lists
    format_version: str = FORMAT_VERSION
    created_at: str | None = None  # set by the CLI; the planner has no clock
    ignored: tuple[str, ...] = field(default_factory=tuple)  # addresses matched by `ignore`
    # False for `kcr plan --no-secrets`: names, types and config compared, secrets never read, so such
    # a plan is for review only and `kcr apply` refuses it.
    secrets_checked: bool = True
    selection: Selection | None = None  # `--target`/`--exclude`: a partial plan, the rest left alone
    environment: str | None = None  # the kcr.yaml environment planned (None: the repository declares none)

    def summary(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for c in self.changes:
            counts[c.action.value] += 1
        counts["blocked"] = sum(1 for c in self.changes if c.guard.blocked and c.action in MUTATING)
        return counts

    @property
    def has_changes(self) -> bool:
        return any(c.action in MUTATING for c in self.changes)

    @property
    def has_drift(self) -> bool:
        """What `drift` and `plan --detailed-exitcode` report as exit 2: changes to apply, a connector
        removed from the files that Kibana still holds (which apply leaves alone), or a preconfigured
        connector Kibana lists otherwise than the files say (a "drift" problem: kcr never writes kibana.yml)."""
        return (self.has_changes or any(c.removed_from_files for c in self.changes)
                or any(p.severity == "drift" for p in self.problems))  # a preconfigured connector differs

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


# What `json.dumps(body, sort_keys=True, default=str)` builds on every call, built once: a plan
# fingerprints every live connector, and the text (so every saved fingerprint) is the same.
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, default=str)


def live_fingerprint(conn: LiveConnector) -> str:
    """What apply compares before each mutation: everything a human edit could change. The
    referenced_by_count is left out, since rules come and go and the guard re-reads it anyway."""
    body = {
        "id": conn.id,
        "name": conn.name,
        "type": conn.type,
        "config": conn.config,
        "is_missing_secrets": bool(conn.is_missing_secrets),
    }
    return hashlib.sha256(_FINGERPRINT_JSON.encode(body).encode()).hexdigest()
