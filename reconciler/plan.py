"""The Plan: plain data that the planner produces and that rendering and applying consume.

A saved plan (`kcr plan --out plan.json`) is this structure as JSON (schemas/plan.schema.json):
the Kibana URL, the spaces, each action with the fingerprint of the live connector it was computed
from, and the desired name/config/type plus the secret *references* (never values) that apply
resolves again. `reason` is for people and never steers apply.

A literal secret (allowed only by `allow_plaintext_secrets`, for local experiments) is never
written: the planner puts PLAINTEXT_MARKER, `{"$plaintext": true}`, in its place in
`Desired.secret_refs`, so such a change can be applied only by a one-run `kcr apply`, which takes
the value from the repository again.

Loading a saved plan checks it against the schema and the id and space rules before anything
trusts it: a plan is an input like any other, and may have been edited by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import jsonschema.exceptions

from reconciler.errors import PlanFileError
from reconciler.model import KEY_PATTERN, SPACE_ID_PATTERN, UUID_PATTERN, LiveConnector, RuleRef, SecretDigest
from reconciler.secrets import is_plaintext

FORMAT_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "plan.schema.json"
PLAINTEXT_KEY = "$plaintext"
# Stands for one literal secret value in `Desired.secret_refs` (the value itself is never saved).
PLAINTEXT_MARKER: Mapping[str, bool] = MappingProxyType({PLAINTEXT_KEY: True})
_SPACE = re.compile(SPACE_ID_PATTERN)
_IDS = (re.compile(UUID_PATTERN), re.compile(KEY_PATTERN))


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


@dataclass(frozen=True)
class FieldDiff:
    path: str  # "name", "config.apiUrl", "connector_type_id"
    before: Any
    after: Any
    kind: str = "changed"  # "added" | "removed" | "changed"


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
    referenced_by_count: int = 0
    guard: Guard = Guard()
    live_fingerprint: str | None = None  # None: the connector did not exist
    desired: Desired | None = None
    secret_digest: SecretDigest | None = None  # what the record holds after this change applies

    @property
    def address(self) -> str:
        return f"{self.space}/{self.id}"


@dataclass(frozen=True)
class Problem:
    """A finding that is not a change: licence, disabled type, allowed hosts, truncated list."""

    space: str
    id: str | None
    severity: str  # "error" | "warning"
    message: str


@dataclass(frozen=True)
class Plan:
    kibana_url: str
    spaces: tuple[str, ...]
    changes: tuple[Change, ...]
    problems: tuple[Problem, ...] = ()
    format_version: str = FORMAT_VERSION
    created_at: str | None = None  # set by the CLI; the planner has no clock
    ignored: tuple[str, ...] = field(default_factory=tuple)  # addresses matched by `ignore`

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
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


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
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


# --- JSON ------------------------------------------------------------------------------------


def _change_to_json(c: Change) -> dict[str, Any]:
    return {
        "address": c.address,
        "space": c.space,
        "id": c.id,
        "action": c.action.value,
        "reason": c.reason,
        "name": c.name,
        "type": c.type,
        "live_type": c.live_type,
        "diffs": [{"path": d.path, "kind": d.kind, "before": d.before, "after": d.after} for d in c.diffs],
        "secrets": c.secrets.value,
        "secret_keys_changed": list(c.secret_keys_changed),
        "referenced_by_count": c.referenced_by_count,
        "guard": {
            "blocked": c.guard.blocked,
            "reasons": list(c.guard.reasons),
            "rules": [{"id": r.id, "name": r.name, "space": r.space} for r in c.guard.rules],
        },
        "live_fingerprint": c.live_fingerprint,
        "desired": None
        if c.desired is None
        else {
            "key": c.desired.key,
            "name": c.desired.name,
            "type": c.desired.type,
            "config": c.desired.config,
            "secret_refs": c.desired.secret_refs,
            "protect": c.desired.protect,
            "file": c.desired.file,
        },
        "secret_digest": None if c.secret_digest is None else c.secret_digest.to_json(),
    }


def to_json(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": plan.format_version,
        "kibana_url": plan.kibana_url,
        "created_at": plan.created_at,
        "spaces": list(plan.spaces),
        "summary": plan.summary(),
        "changes": [_change_to_json(c) for c in plan.changes],
        "problems": [
            {"space": p.space, "id": p.id, "severity": p.severity, "message": p.message} for p in plan.problems
        ],
        "ignored": list(plan.ignored),
    }


def dumps(plan: Plan) -> str:
    return json.dumps(to_json(plan), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def _change_from_json(d: Mapping[str, Any]) -> Change:
    desired = d.get("desired")
    digest = d.get("secret_digest")
    guard = d.get("guard") or {}
    return Change(
        space=d["space"],
        id=d["id"],
        action=Action(d["action"]),
        reason=d.get("reason", ""),
        name=d.get("name", ""),
        type=d.get("type", ""),
        live_type=d.get("live_type"),
        diffs=tuple(
            FieldDiff(path=x["path"], before=x.get("before"), after=x.get("after"), kind=x.get("kind", "changed"))
            for x in d.get("diffs", ())
        ),
        secrets=SecretsStatus(d.get("secrets", "none")),
        secret_keys_changed=tuple(d.get("secret_keys_changed", ())),
        referenced_by_count=int(d.get("referenced_by_count", 0)),
        guard=Guard(
            blocked=bool(guard.get("blocked", False)),
            reasons=tuple(guard.get("reasons", ())),
            rules=tuple(
                RuleRef(id=r["id"], name=r.get("name", ""), space=r.get("space")) for r in guard.get("rules", ())
            ),
        ),
        live_fingerprint=d.get("live_fingerprint"),
        desired=None
        if desired is None
        else Desired(
            key=desired["key"],
            name=desired["name"],
            type=desired["type"],
            config=desired.get("config") or {},
            secret_refs=desired.get("secret_refs") or {},
            protect=bool(desired.get("protect", False)),
            file=desired.get("file"),
        ),
        secret_digest=None if digest is None else SecretDigest.from_json(digest),
    )


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _json_path(parts: Sequence[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _what(error: jsonschema.exceptions.ValidationError) -> str:
    """jsonschema's own messages quote the offending value, which in a hand-edited plan could be a
    secret: describe the rule instead (property names are fine to repeat)."""
    rule, expected = error.validator, error.validator_value
    if rule in ("required", "additionalProperties"):
        return str(error.message)
    if rule == "type":
        return f"must be of type {' or '.join(expected) if isinstance(expected, list) else expected}"
    if rule == "enum" and isinstance(expected, list):
        return f"must be one of {', '.join(json.dumps(x) for x in expected)}"
    if rule == "const":
        return f"must be {json.dumps(expected)}"
    if rule == "pattern":
        return f"must match {expected}"
    if rule in ("minimum", "minLength", "minItems"):
        return f"{rule} is {expected}"
    return f"does not match the schema ({rule})"


def _where(body: Mapping[str, Any], parts: Sequence[str | int]) -> str:
    """The change's address when the problem is inside one (`changes[3].desired` -> default/x: desired)."""
    if len(parts) >= 2 and parts[0] == "changes" and isinstance(parts[1], int):
        change = body["changes"][parts[1]]
        if isinstance(change, Mapping):
            address = change.get("address") or f"{change.get('space')}/{change.get('id')}"
            rest = _json_path(parts[2:]) if parts[2:] else "the change"
            return f"change {address}: {rest}"
    return _json_path(parts)


def _bad(source: str, detail: str) -> PlanFileError:
    return PlanFileError(f"{source}: not a kcr plan, or edited by hand: {detail}; re-run `kcr plan --out`")


def _literal_secret_paths(value: Any, path: str) -> list[str]:
    if is_plaintext_marker(value):
        return []
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _literal_secret_paths(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _literal_secret_paths(v, f"{path}[{i}]")]
    return [path] if is_plaintext(value) else []


def _check(body: Mapping[str, Any], source: str) -> None:
    """What the schema cannot say: ids (UUIDs, or verbatim keys), address consistency, and that
    secret_refs hold references, never literal values."""
    for space in body["spaces"]:
        if not _SPACE.fullmatch(space):
            raise _bad(source, f"spaces: {space!r} is not a Kibana space id ({SPACE_ID_PATTERN})")
    for c in body["changes"]:
        address = f"{c['space']}/{c['id']}"
        if not _SPACE.fullmatch(c["space"]):
            raise _bad(source, f"change {address}: space is not a Kibana space id ({SPACE_ID_PATTERN})")
        if not any(p.fullmatch(c["id"]) for p in _IDS):
            raise _bad(source, f"change {address}: id is neither a UUID nor a key ({KEY_PATTERN})")
        if c["address"] != address:
            raise _bad(source, f"change {address}: address {c['address']!r} does not match its space and id")
        desired = c["desired"]
        if desired is not None:
            literal = _literal_secret_paths(desired["secret_refs"], "desired.secret_refs")
            if literal:
                raise _bad(source, f"change {address}: {', '.join(literal)} holds a literal value, not a "
                                   "reference such as ${env:NAME}")


def from_json(body: Mapping[str, Any], source: str = "plan") -> Plan:
    version = str(body.get("format_version", ""))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise PlanFileError(
            f"{source}: plan format {version or '(none)'} is not supported (this kcr reads {FORMAT_VERSION}); "
            "re-run `kcr plan --out` with this version"
        )
    error = jsonschema.exceptions.best_match(_validator().iter_errors(body))
    if error is not None:
        raise _bad(source, f"{_where(body, list(error.absolute_path))}: {_what(error)}")
    _check(body, source)
    try:
        return Plan(
            kibana_url=body["kibana_url"],
            spaces=tuple(body.get("spaces", ())),
            changes=tuple(_change_from_json(c) for c in body.get("changes", ())),
            problems=tuple(
                Problem(space=p["space"], id=p.get("id"), severity=p["severity"], message=p["message"])
                for p in body.get("problems", ())
            ),
            format_version=version,
            created_at=body.get("created_at"),
            ignored=tuple(body.get("ignored", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:  # the schema should have caught it: a backstop
        raise _bad(source, f"{type(exc).__name__}") from None


def loads(text: str, source: str = "plan") -> Plan:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{source}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(body, dict):
        raise PlanFileError(f"{source}: not a kcr plan (expected a JSON object)")
    return from_json(body, source)
