"""The Plan: plain data that the planner produces and that rendering and applying consume.

A saved plan (`kcr plan --out plan.json`) is this structure as JSON (schemas/plan.schema.json):
the Kibana URL, the spaces, each action with the fingerprint of the live connector it was computed
from, and the desired name/config/type plus the secret *references* (never values) that apply
resolves again. `reason` is for people and never steers apply.

A literal secret (allowed only by `allow_plaintext_secrets`, for local experiments) is never
written: the planner puts PLAINTEXT_MARKER, `{"$plaintext": true}`, in its place in
`Desired.secret_refs`, so such a change can be applied only by a one-run `kcr apply`, which takes
the value from the repository again.

Loading a saved plan checks it against the schema, the id and space rules, and its own consistency
(every field of a change agrees with its action and with the others, the summary counts the changes)
before anything trusts it: a plan is an input like any other, and may have been edited by hand. With
KCR_FINGERPRINT_KEY, `kcr plan --out` adds a MAC over the canonical JSON (`canonical`) and `kcr apply`
refuses a plan whose MAC is missing or does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import jsonschema.exceptions

from reconciler import jsondepth
from reconciler.errors import PlanFileError
from reconciler.model import (
    KEY_PATTERN,
    SPACE_ID_PATTERN,
    UUID_PATTERN,
    LiveConnector,
    RuleRef,
    SecretDigest,
    derive_connector_id,
    id_segment_problem,
)
from reconciler.secrets import is_plaintext

FORMAT_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "plan.schema.json"
PLAINTEXT_KEY = "$plaintext"
MAC_FIELD = "mac"
MAC_PREFIX = "hmac-sha256:"
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
    referenced_by_count: int | None = 0  # None: Kibana's answer did not carry it (unknown, never read as 0)
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


def to_json(plan: Plan, key: bytes | None = None) -> dict[str, Any]:
    """The saved-plan body; with `key` (KCR_FINGERPRINT_KEY) it carries a MAC over everything else,
    so `kcr apply` can tell the plan it is given from one edited after review."""
    body: dict[str, Any] = {
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
    if key is not None:
        body["mac"] = sign(body, key)
    return body


def dumps(plan: Plan, key: bytes | None = None) -> str:
    return json.dumps(to_json(plan, key), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


# --- authenticity ------------------------------------------------------------------------------


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes the MAC covers: the body without its `mac`, as compact sorted JSON. It is taken of
    the body as JSON reads it back (a YAML config may hold non-string keys, which JSON turns into
    strings), so signing at `kcr plan` and verifying at `kcr apply` see the same bytes."""
    unsigned = json.loads(json.dumps({k: v for k, v in body.items() if k != MAC_FIELD}, ensure_ascii=False))
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def sign(body: Mapping[str, Any], key: bytes) -> str:
    return MAC_PREFIX + hmac.new(key, canonical(body), hashlib.sha256).hexdigest()


def verify(body: Mapping[str, Any], key: bytes, source: str = "plan") -> None:
    """Refuses a plan whose MAC is missing or wrong before any of its content is read: with a key
    configured, an unsigned plan is as untrusted as a forged one."""
    mac = body.get(MAC_FIELD)
    if mac is None:
        raise PlanFileError(
            f"{source}: the plan carries no MAC although KCR_FINGERPRINT_KEY is set: it was made without the "
            "key, or its MAC was removed by an edit; re-run `kcr plan --out` with KCR_FINGERPRINT_KEY set"
        )
    given = mac.encode("utf-8", "surrogatepass") if isinstance(mac, str) else b""
    if not hmac.compare_digest(given, sign(body, key).encode("ascii")):
        raise PlanFileError(
            f"{source}: the plan's MAC does not verify: the plan was edited after `kcr plan --out`, or made "
            "with another KCR_FINGERPRINT_KEY; re-run `kcr plan --out`"
        )


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
        referenced_by_count=None if d.get("referenced_by_count") is None else int(d["referenced_by_count"]),
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
    if rule == "type" and expected == "null":
        return "must be null"
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


def _for_action(body: Mapping[str, Any], error: jsonschema.exceptions.ValidationError) -> str:
    """The schema's per-action rules (a delete carries no desired state, a create no fingerprint) fail
    as a field's type: say which action the field contradicts."""
    parts = list(error.absolute_path)
    if "then" not in error.absolute_schema_path or len(parts) < 2 or parts[0] != "changes":
        return ""
    change = body["changes"][parts[1]]
    action = change.get("action") if isinstance(change, Mapping) else None
    return f" for a change whose action is {json.dumps(action)}" if isinstance(action, str) else ""


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
    """What the schema cannot say: where the plan points, ids (kcr's own rule for the ids it chose,
    the client's for live ones), and that every change agrees with itself and with the plan. A plan
    is applied exactly as written, so a field that contradicts another means it was edited, and no
    field of it can be trusted to be the one the reviewer read."""
    _check_target(body["kibana_url"], source)
    spaces = _check_spaces(body["spaces"], source)
    addresses: set[str] = set()
    for c in body["changes"]:
        address = _shown(f"{c['space']}/{c['id']}")
        if address in addresses:
            raise _bad(source, f"change {address}: appears twice in changes (a plan holds one action per connector)")
        addresses.add(address)
        problem = next((p for check in _CHANGE_CHECKS if (p := check(c, spaces)) is not None), None)
        if problem is not None:
            raise _bad(source, f"change {address}: {problem}")
    _check_summary(body["summary"], body["changes"], source)
    _check_ignored(body["ignored"], spaces, addresses, source)


def _shown(text: str) -> str:
    """An address as a message may print it (a live id may hold characters a terminal would act on)."""
    return text if text.isprintable() else ascii(text)


def _check_target(url: str, source: str) -> None:
    """Apply compares this URL with the Kibana it is pointed at, so it must be one (never echoed:
    a hand-edited URL could carry credentials)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - validates: urlsplit parses the port lazily
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad(source, "kibana_url: is not an http(s) URL, so the Kibana the plan was made against is unknown")
    if parts.username is not None or parts.password is not None:
        raise _bad(source, "kibana_url: carries credentials (kcr never writes them into a plan)")


def _check_spaces(spaces: Sequence[str], source: str) -> frozenset[str]:
    seen: set[str] = set()
    for space in spaces:
        if not _SPACE.fullmatch(space):
            raise _bad(source, f"spaces: {space!r} is not a Kibana space id ({SPACE_ID_PATTERN})")
        if space in seen:
            raise _bad(source, f"spaces: {space} is listed twice")
        seen.add(space)
    return frozenset(seen)


def _identity_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """Ids kcr chose (a change with a desired state) follow kcr's rule and come from desired.key; a
    live-only id is Kibana's, and needs only to be addressable."""
    space, cid, desired = c["space"], c["id"], c["desired"]
    if not _SPACE.fullmatch(space):
        return f"space is not a Kibana space id ({SPACE_ID_PATTERN})"
    if space not in spaces:
        return f"space {space} is not one of the plan's spaces ({', '.join(sorted(spaces)) or 'none'})"
    if c["address"] != f"{space}/{cid}":
        return f"address {_shown(c['address'])!r} does not match its space and id"
    if desired is None:
        problem = id_segment_problem(cid, "id")
        return None if problem is None else f"{problem}, so kcr cannot address it in Kibana"
    if not any(p.fullmatch(cid) for p in _IDS):
        return f"id is neither a UUID nor a key ({KEY_PATTERN})"
    if not _key_gives_id(space, desired["key"], cid):
        return (f"desired.key {desired['key']!r} does not give id {cid} in space {space} (kcr uses the key itself "
                "when it is a UUID or id_mode is verbatim, else a UUID v5 of space and key)")
    return None


def _key_gives_id(space: str, key: str, cid: str) -> bool:
    if _IDS[0].fullmatch(key):
        return cid == key
    return bool(_IDS[1].fullmatch(key)) and cid in (key, derive_connector_id(space, key))


def _shape_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """What is sent must be what the change says it is: name and type agree with desired, a create
    starts from nothing, an update keeps the type and a recreate changes it."""
    action, desired, count = c["action"], c["desired"], c["referenced_by_count"]
    if desired is not None:
        if desired["type"] != c["type"]:
            return f"desired.type {desired['type']} contradicts type {c['type']}"
        if desired["name"] != c["name"]:
            return "desired.name contradicts name (the name shown is not the name apply would send)"
    if action == Action.CREATE.value:
        if count != 0:
            return f"a create has no live connector, yet referenced_by_count is {_count(count)}"
        return None
    if action == Action.RECREATE.value:
        if c["live_type"] == c["type"]:
            return (f"a recreate changes the type, yet live_type and type are both {c['type']} "
                    "(that is an update: a recreate would delete the connector for nothing)")
    elif c["live_type"] != c["type"]:
        return (f"live_type {c['live_type']} contradicts type {c['type']}: only a recreate changes a "
                f"connector's type, this is a {action}")
    return None


def _count(count: int | None) -> str:
    return "unknown (null)" if count is None else str(count)


def _guard_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """A guard must hold whenever its facts say so: apply re-reads the count, but the plan a reviewer
    approved must not claim a guarded action is free."""
    action, guard, desired, count = c["action"], c["guard"], c["desired"], c["referenced_by_count"]
    blocked = guard["blocked"]
    if blocked != bool(guard["reasons"]):
        return ("guard.blocked is true but guard.reasons is empty" if blocked
                else "guard.reasons gives reasons to block, yet guard.blocked is false")
    if guard["rules"] and not blocked:
        return "guard.rules names rules that use the connector, yet guard.blocked is false"
    if action in (Action.DELETE.value, Action.RECREATE.value):
        facts = [f"referenced_by_count is {_count(count)}"] if count is None or count > 0 else []
        if desired is not None and desired["protect"]:
            facts.append("desired.protect is true")
        if facts and not blocked:
            return f"{' and '.join(facts)}, yet guard.blocked is false for a {action}"
    elif blocked and action in (Action.NOOP.value, Action.UNMANAGED.value):
        return f"guard.blocked is true on a {action}, which sends nothing to guard"
    return None


def _secrets_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """The secrets summary, the keys named and the digest apply records must tell one story."""
    action, status, keys, desired, digest = (c["action"], c["secrets"], c["secret_keys_changed"], c["desired"],
                                             c["secret_digest"])
    if keys and status != SecretsStatus.CHANGED.value:
        return f"secret_keys_changed names {len(keys)} key(s), yet secrets is {status!r}"
    if action in (Action.DELETE.value, Action.UNMANAGED.value) and status != SecretsStatus.NONE.value:
        return f"a {action} sends no secrets, yet secrets is {status!r}"
    if action == Action.NOOP.value and status == SecretsStatus.CHANGED.value:
        return "secrets is 'changed', yet the action is no-op (changed secrets are an update)"
    if action == Action.CREATE.value and status not in (SecretsStatus.CHANGED.value, SecretsStatus.NONE.value):
        return f"a create sends every declared secret, yet secrets is {status!r}"
    if digest is not None and desired is not None:
        extra = sorted(set(digest["hmacs"]) - set(desired["secret_refs"]))
        if extra:
            return f"secret_digest.hmacs covers {', '.join(extra)}, which desired.secret_refs does not declare"
    if desired is not None:
        literal = _literal_secret_paths(desired["secret_refs"], "desired.secret_refs")
        if literal:
            return f"{', '.join(literal)} holds a literal value, not a reference such as ${{env:NAME}}"
    return None


def _diffs_problem(c: Mapping[str, Any], spaces: frozenset[str]) -> str | None:
    """The diffs are what the reviewer read: where they speak of the name or the type, they must say
    what apply sends."""
    action, desired, diffs = c["action"], c["desired"], c["diffs"]
    if action in (Action.DELETE.value, Action.NOOP.value, Action.UNMANAGED.value) and diffs:
        return f"a {action} changes no field, yet it lists {len(diffs)} diff(s)"
    type_diffs = [d for d in diffs if d["path"] == "connector_type_id"]
    if action == Action.RECREATE.value and not type_diffs:
        return "a recreate changes the type, yet no connector_type_id diff shows it"
    for d in diffs:
        if action == Action.CREATE.value and d["kind"] != "added":
            return f"diff {d['path']} is {d['kind']!r}, yet a create only adds fields"
        if d["path"] == "name" and desired is not None and d["after"] != desired["name"]:
            return "the name diff does not end at desired.name (the name apply would send)"
        if d["path"] == "connector_type_id" and action != Action.RECREATE.value:
            return f"a connector_type_id diff on a {action}: only a recreate changes the type"
        if d["path"] == "connector_type_id" and (d["before"] != c["live_type"] or desired is None
                                                 or d["after"] != desired["type"]):
            return "the connector_type_id diff does not go from live_type to desired.type"
    return None


_CHANGE_CHECKS = (_identity_problem, _shape_problem, _guard_problem, _secrets_problem, _diffs_problem)


def _check_summary(summary: Mapping[str, int], changes: Sequence[Mapping[str, Any]], source: str) -> None:
    """The summary line is what most reviewers read; it must count the changes apply will make."""
    counts = {a.value: 0 for a in Action}
    for c in changes:
        counts[c["action"]] += 1
    counts["blocked"] = sum(1 for c in changes if c["guard"]["blocked"] and Action(c["action"]) in MUTATING)
    wrong = [f"{k} {summary[k]} (the changes hold {v})" for k, v in counts.items() if summary.get(k) != v]
    if wrong:
        raise _bad(source, f"summary counts {', '.join(wrong)}")


def _check_ignored(ignored: Sequence[str], spaces: frozenset[str], addresses: set[str], source: str) -> None:
    """An ignored connector is one kcr never touches: it cannot also be a change."""
    for entry in ignored:
        space = entry.partition("/")[0]
        if space not in spaces:
            raise _bad(source, f"ignored: {_shown(entry)} is in space {_shown(space)}, not one of the plan's spaces")
        if _shown(entry) in addresses:
            raise _bad(source, f"ignored: {_shown(entry)} is also a change, but an ignored connector is never touched")


def from_json(body: Mapping[str, Any], source: str = "plan") -> Plan:
    version = str(body.get("format_version", ""))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise PlanFileError(
            f"{source}: plan format {version or '(none)'} is not supported (this kcr reads {FORMAT_VERSION}); "
            "re-run `kcr plan --out` with this version"
        )
    error = jsonschema.exceptions.best_match(_validator().iter_errors(body))
    if error is not None:
        raise _bad(source, f"{_where(body, list(error.absolute_path))}: {_what(error)}{_for_action(body, error)}")
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


# A plan carries values read from Kibana (bounded at jsondepth.MAX_DEPTH there) a few levels down
# (`changes[i].diffs[j].before`), so the plans kcr writes always load again.
PLAN_MAX_DEPTH = jsondepth.MAX_DEPTH + 8


def loads(text: str, source: str = "plan", *, key: bytes | None = None) -> Plan:
    """With `key`, the MAC is verified before anything else in the plan is looked at."""
    try:
        body = jsondepth.loads(text, max_depth=PLAN_MAX_DEPTH)
    except jsondepth.TooDeep as exc:
        raise PlanFileError(f"{source}: not a kcr plan: {exc}; make a new plan with `kcr plan --out`") from None
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{source}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(body, dict):
        raise PlanFileError(f"{source}: not a kcr plan (expected a JSON object)")
    if key is not None:
        verify(body, key, source)
    return from_json(body, source)
