"""The saved-plan file: a Plan as versioned JSON (`kcr plan --out plan.json`,
schemas/plan.schema.json) and back.

The file holds the Kibana URL, the spaces, each action with the fingerprint of the live connector
it was computed from, and the secret *references* (never values) that apply resolves again.

Loading checks a plan against the schema, then against what the schema cannot say
(`reconciler.plancheck`: ids, spaces, and that every field of a change agrees with its action and
the others), before anything trusts it: a plan is an input like any other, and may have been
edited by hand. With KCR_FINGERPRINT_KEY, `kcr plan --out` adds a MAC over the canonical JSON
(`canonical`) and `kcr apply` refuses a plan whose MAC is missing or does not verify.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import jsondepth
from reconciler.errors import PlanFileError, Problem
from reconciler.model import RuleRef, SecretDigest
from reconciler.plan import (
    FORMAT_VERSION,
    Action,
    Change,
    Desired,
    FieldDiff,
    Guard,
    Plan,
    SecretsStatus,
)
from reconciler.plancheck import check, not_a_plan
from reconciler.selection import Selection
from reconciler.yamlload import join_path

if TYPE_CHECKING:
    import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "plan.schema.json"
MAC_FIELD = "mac"
MAC_PREFIX = "hmac-sha256:"
# A plan carries values read from Kibana (bounded at jsondepth.MAX_DEPTH there) a few levels down
# (`changes[i].diffs[j].before`), so the plans kcr writes always load again.
PLAN_MAX_DEPTH = jsondepth.MAX_DEPTH + 8


# --- writing ---------------------------------------------------------------------------------------


def _change_to_json(c: Change) -> dict[str, Any]:
    body: dict[str, Any] = {
        "address": c.address,
        "space": c.space,
        "id": c.id,
        "action": c.action.value,
        "reason": c.reason,
        "name": c.name,
        "type": c.type,
        "live_type": c.live_type,
        "diffs": [d.to_json() for d in c.diffs],
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
    if c.removed_from_files:  # only then: every other change reads as it always did
        body["removed_from_files"] = True
    return body


def to_json(plan: Plan, key: bytes | None = None) -> dict[str, Any]:
    """The saved-plan body; with `key` (KCR_FINGERPRINT_KEY) it carries a MAC over everything else,
    so `kcr apply` can tell the plan it is given from one edited after review."""
    body: dict[str, Any] = {
        "format_version": plan.format_version,
        "kibana_url": plan.kibana_url,
        "created_at": plan.created_at,
        "spaces": list(plan.spaces),
        "secrets_checked": plan.secrets_checked,
        "summary": plan.summary(),
        "changes": [_change_to_json(c) for c in plan.changes],
        "problems": [p.to_json() for p in plan.problems],
        "ignored": list(plan.ignored),
        "selection": None if plan.selection is None else plan.selection.to_json(),
    }
    if plan.environment is not None:  # a repository without environments writes the plans it always wrote
        body["environment"] = plan.environment
    if key is not None:
        body["mac"] = sign(body, key)
    return body


_ONE_PER_LINE = frozenset({"changes", "problems"})


def dumps(plan: Plan, key: bytes | None = None) -> str:
    """One top-level field a line, and one change (or problem) a line: diffs of two plans and grep show
    whole changes, and each line is json's C encoder's (its indented output is pure Python: 0.85 s of a
    10,000-create `kcr plan --out`, a quarter of the run)."""
    lines = []
    for name, value in to_json(plan, key).items():
        field = json.dumps(name)
        if name in _ONE_PER_LINE and isinstance(value, list) and value:
            items = ",\n".join(f"    {json.dumps(item, ensure_ascii=False)}" for item in value)
            lines.append(f"  {field}: [\n{items}\n  ]")
        else:
            lines.append(f"  {field}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


# --- authenticity ----------------------------------------------------------------------------------


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes the MAC covers: the body without its `mac`, as compact sorted JSON. It is taken of
    the body as JSON reads it back (a YAML config may hold non-string keys, which JSON turns into
    strings), so signing at `kcr plan` and verifying at `kcr apply` see the same bytes."""
    unsigned: Any = {k: v for k, v in body.items() if k != MAC_FIELD}
    if not _keys_are_strings(unsigned):  # else reading it back changes nothing: 0.45 s saved at 10k changes
        unsigned = json.loads(json.dumps(unsigned, ensure_ascii=False))
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def _keys_are_strings(value: Any) -> bool:
    """Whether every mapping inside `value` has only string keys, as a plan read from JSON has."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if any(type(k) is not str for k in item):
                return False
            pending.extend(v for v in item.values() if isinstance(v, dict | list | tuple))
        elif isinstance(item, list | tuple):
            pending.extend(v for v in item if isinstance(v, dict | list | tuple))
    return True


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


# --- reading ---------------------------------------------------------------------------------------


def loads(text: str, source: str = "plan", *, key: bytes | None = None) -> Plan:
    """With `key`, the MAC is verified before anything else in the plan is looked at."""
    try:
        body = jsondepth.loads(text, max_depth=PLAN_MAX_DEPTH)
    except jsondepth.TooDeep as exc:
        raise PlanFileError(f"{source}: not a kcr plan: {exc}; make a new plan with `kcr plan --out`") from None
    except jsondepth.NotUnicode as exc:  # kcr never writes one (it refuses such ids at read): an edit
        raise not_a_plan(source, str(exc)) from None
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{source}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(body, dict):
        raise PlanFileError(f"{source}: not a kcr plan (expected a JSON object)")
    if key is not None:
        verify(body, key, source)
    return from_json(body, source)


def _minor(version: str) -> int:
    _, _, minor = version.partition(".")
    return int(minor) if minor.isdigit() else 0


def from_json(body: Mapping[str, Any], source: str = "plan") -> Plan:
    version = str(body.get("format_version", ""))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0] or _minor(version) > _minor(FORMAT_VERSION):
        # a newer minor carries fields this kcr would not understand (an environment, drift): never guess
        raise PlanFileError(
            f"{source}: plan format {version or '(none)'} is not supported (this kcr reads {FORMAT_VERSION} and "
            "earlier 1.x); re-run `kcr plan --out` with this version, or apply with the kcr that made the plan"
        )
    from jsonschema.exceptions import best_match  # reading a plan file: making and writing one never needs it

    error = best_match(_validator().iter_errors(body))
    if error is not None:
        raise not_a_plan(source, f"{_where(body, list(error.absolute_path))}: {_what(error)}{_for_action(body, error)}")
    check(body, source)
    try:
        return Plan(
            kibana_url=body["kibana_url"],
            spaces=tuple(body.get("spaces", ())),
            changes=tuple(_change_from_json(c) for c in body.get("changes", ())),
            problems=tuple(
                Problem.in_kibana(p["space"], p.get("id"), p["severity"], p["message"])
                for p in body.get("problems", ())
            ),
            format_version=version,
            created_at=body.get("created_at"),
            ignored=tuple(body.get("ignored", ())),
            secrets_checked=bool(body["secrets_checked"]),
            selection=Selection.from_json(body.get("selection")),
            environment=body.get("environment"),
        )
    except (KeyError, TypeError, ValueError) as exc:  # the schema should have caught it: a backstop
        raise not_a_plan(source, f"{type(exc).__name__}") from None


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
        diffs=tuple(FieldDiff.from_json(x) for x in d.get("diffs", ())),
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
        removed_from_files=bool(d.get("removed_from_files", False)),
    )


# --- schema errors, told without echoing values -----------------------------------------------------


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _json_path(parts: Sequence[str | int]) -> str:
    return functools.reduce(join_path, parts, "") or "(top level)"


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
