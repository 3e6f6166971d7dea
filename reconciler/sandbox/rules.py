"""A slice of the alerting rules API: enough for rules to reference connectors, so that
`referenced_by_count`, `has_reference` searches and kcr's delete guards have something real to read.
Rules are stored as the seed or a request gives them; no rule ever runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from reconciler.sandbox import validation as v
from reconciler.sandbox.context import Ctx, not_found, now
from reconciler.sandbox.http import HttpError, SandboxResponse, empty_response, json_response
from reconciler.sandbox.store import SYSTEM_CONNECTOR_ID, rule_record


def rule_json(ctx: Ctx, rule: Mapping[str, Any]) -> dict[str, Any]:
    def type_of(cid: str) -> str | None:
        pre = ctx.settings.preconfigured.get(cid)
        if pre is not None:
            return pre.type
        if cid == SYSTEM_CONNECTOR_ID:
            return ".cases"
        rec = ctx.store.connectors.get(cid)
        return rec["connector_type_id"] if rec else None

    out = {k: val for k, val in rule.items() if k != "space"}
    out["actions"] = [{**a, "connector_type_id": type_of(a["id"])} for a in rule["actions"]]
    out.update(
        mute_all=False, muted_alert_ids=[], created_by="elastic", updated_by="elastic", api_key_owner="elastic",
        scheduled_task_id=rule["id"] if rule.get("enabled", True) else None, revision=rule.get("revision", 0),
        running=False,
        execution_status={"status": "pending", "last_execution_date": rule["created_at"]},
    )
    return out


_RULE_FIELDS = (
    v.Field("name", "string", True, True),
    v.Field("rule_type_id", "string", True, True),
    v.Field("enabled", "boolean"),
    v.Field("consumer", "string", True, True),
    v.Field("tags", "array", items="string"),
    v.Field("schedule", "object", True),
    v.Field("params", "object"),
    v.Field("actions", "array"),
)


def _check_rule_actions(ctx: Ctx, body: Mapping[str, Any]) -> None:
    if not isinstance(body["schedule"].get("interval"), str):
        raise HttpError(400, "[request body.schedule.interval]: expected value of type [string] but got "
                             f"[{v.js_type(body['schedule'].get('interval', v._MISSING))}]")
    for i, action in enumerate(body.get("actions") or []):
        if not isinstance(action, dict) or not isinstance(action.get("id"), str):
            raise HttpError(400, f"[request body.actions.{i}.id]: expected value of type [string] but got "
                                 f"[{v.js_type(action.get('id', v._MISSING) if isinstance(action, dict) else action)}]")
        for key, kind in (("group", "string"), ("params", "object")):
            if key in action and not v.kind_ok(kind, action[key]):
                raise HttpError(400, f"[request body.actions.{i}.{key}]: expected value of type [{kind}] but got "
                                     f"[{v.js_type(action[key])}]")
        cid = action["id"]
        known = cid in ctx.settings.preconfigured or cid == SYSTEM_CONNECTOR_ID
        rec = ctx.store.connectors.get(cid)
        if not known and (rec is None or rec["space"] != ctx.space):
            raise HttpError(400, f"Failed to load action {cid} (404): Saved object [action/{cid}] not found")


def create_rule(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    """A chosen id may be any string: the alerting plugin registers the rule saved object with
    `enforceRandomId: false` "to allow users creating rules with a predefined ID" (elastic/kibana
    x-pack/platform/plugins/shared/alerting/server/saved_objects/index.ts), unlike connectors."""
    body = v.check_body(ctx.body, _RULE_FIELDS, allow_unknown=True)
    _check_rule_actions(ctx, body)
    id = p.get("id") or str(uuid.uuid4())
    if id in ctx.store.rules:
        raise HttpError(409, f"Saved object [alert/{id}] conflict")
    rule = rule_record(id, ctx.space, body, now())
    ctx.store.rules[id] = rule
    ctx.mark_changed()
    return json_response(200, rule_json(ctx, rule))


def _rule_in_space(ctx: Ctx, id: str) -> dict[str, Any]:
    rule = ctx.store.rules.get(id)
    if rule is None or rule["space"] != ctx.space:
        raise not_found(id, "alert")
    return rule


def get_rule(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    return json_response(200, rule_json(ctx, _rule_in_space(ctx, p["id"])))


# The update body schema (alerting common/routes/rule/apis/update/schemas/v1.ts): no rule_type_id,
# consumer or enabled (unknown keys are refused); schedule required; tags, params, actions defaulted.
_RULE_UPDATE_FIELDS = (
    v.Field("name", "string", True, True),
    v.Field("tags", "array", items="string"),
    v.Field("schedule", "object", True),
    v.Field("throttle", "any"),
    v.Field("params", "object"),
    v.Field("actions", "array"),
    v.Field("notify_when", "any"),
    v.Field("alert_delay", "any"),
    v.Field("flapping", "any"),
)


def update_rule(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    """A full replacement of the updatable fields, as Kibana's PUT does; the rule keeps its id, type,
    consumer, enabled state and created_at. Actions are checked as on create."""
    body = v.check_body(ctx.body, _RULE_UPDATE_FIELDS)
    body.setdefault("tags", [])
    body.setdefault("actions", [])
    rule = _rule_in_space(ctx, p["id"])
    _check_rule_actions(ctx, body)
    kept = {k: rule[k] for k in ("rule_type_id", "consumer", "enabled", "created_at")}
    fresh = rule_record(rule["id"], rule["space"], {**body, **kept}, now())
    fresh["created_at"] = rule["created_at"]
    fresh["revision"] = int(rule.get("revision", 0)) + 1
    ctx.store.rules[rule["id"]] = fresh
    ctx.mark_changed()
    return json_response(200, rule_json(ctx, fresh))


def delete_rule(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    _rule_in_space(ctx, p["id"])
    del ctx.store.rules[p["id"]]
    ctx.mark_changed()
    return empty_response(204)


def _int_query(ctx: Ctx, key: str, default: int, minimum: int) -> int:
    raw = ctx.query.get(key, [None])[-1]
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"[request query.{key}]: expected value of type [number] but got [string]") from None
    if value < minimum:
        raise HttpError(400, f"[request query.{key}]: Value must be equal to or greater than [{minimum}].")
    return value


def find_rules(ctx: Ctx, _: dict[str, str]) -> SandboxResponse:
    per_page = _int_query(ctx, "per_page", 10, 0)
    page = _int_query(ctx, "page", 1, 1)
    ref: Any = None
    raw_ref = ctx.query.get("has_reference", [None])[-1]
    if raw_ref is not None:
        try:
            ref = json.loads(raw_ref)
        except ValueError:
            message = "[request query.has_reference]: could not parse object value from json input"
            raise HttpError(400, message) from None
        if not (isinstance(ref, dict) and isinstance(ref.get("type"), str) and isinstance(ref.get("id"), str)):
            raise HttpError(400, "[request query.has_reference]: expected an object with string type and id")
    rules = [r for r in ctx.store.rules.values() if r["space"] == ctx.space]
    if ref is not None:
        wanted = ref["id"] if ref["type"] == "action" and ref["id"] not in ctx.settings.preconfigured else None
        rules = [r for r in rules if any(a["id"] == wanted for a in r["actions"])]
    start = (page - 1) * per_page
    data = [rule_json(ctx, r) for r in rules[start:start + per_page]]
    return json_response(200, {"page": page, "per_page": per_page, "total": len(rules), "data": data})
