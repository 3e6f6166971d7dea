"""The route handlers. Each runs under the Sandbox's lock with routing, authentication, payload parsing
and kbn-xsrf already done, and follows the per-route check order of api-behaviour.md §1-7 (connectors)
plus a minimal slice of the alerting rules API (enough for rules to reference connectors)."""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from reconciler import catalog
from reconciler.model import UUID_PATTERN
from reconciler.sandbox import validation as v
from reconciler.sandbox.http import HttpError, SandboxResponse, empty_response, json_response
from reconciler.sandbox.params import execute_result
from reconciler.sandbox.store import SYSTEM_CONNECTOR_ID, Preconfigured, Settings, Store, connector_record, rule_record

MAX_ACTIONS_RETURNED = 10_000
_UUID = re.compile(UUID_PATTERN)
_READABLE_ID = re.compile(r"^[a-z0-9-]+$")
READABLE_ID_MAX_LENGTH = 64  # CONNECTOR_ID_MAX_LENGTH was not found in Kibana's source; a guess
_HIDDEN_FROM_FEATURE_LISTS = frozenset({".sentinelone", ".crowdstrike"})


@dataclass
class Ctx:
    settings: Settings
    store: Store
    space: str
    query: Mapping[str, list[str]]
    body: Any
    changed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def mark_changed(self) -> None:
        self.changed = True


Handler = Callable[[Ctx, dict[str, str]], SandboxResponse]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ICU root collation's order for ASCII punctuation and symbols (the "variable" characters, then
# symbols, then currency), all before digits and letters.
_ICU_PUNCTUATION = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"
_PUNCT_WEIGHT = {ch: i for i, ch in enumerate(_ICU_PUNCTUATION)}
_OTHER_SYMBOL = len(_ICU_PUNCTUATION) - 1  # unlisted symbols: after `~`, before `$`


@lru_cache(maxsize=65536)
def collation_key(name: str) -> tuple[tuple[tuple[int, int | str], ...], tuple[str, ...], tuple[int, ...]]:
    """An approximation of JS `localeCompare` (ICU root collation) as a three-level key, compared level
    by level like ICU: primary = base characters (whitespace < punctuation < symbols < digits < letters,
    letters without case or accents), secondary = accents (resume < résumé), tertiary = case
    (lowercase first: resume < Resume). Approximations: accents rank by code point (ICU puts acute
    before grave), non-ASCII symbols after `~`, and scripts other than Latin by code point."""
    primary: list[tuple[int, int | str]] = []
    secondary: list[str] = []
    tertiary: list[int] = []
    for ch in unicodedata.normalize("NFD", name):
        if unicodedata.combining(ch):
            if secondary:
                secondary[-1] += ch  # the accent belongs to the base character before it
            continue
        weight: tuple[int, int | str]
        if ch.isspace():
            weight = (0, ord(ch))
        elif ch.isdigit():
            weight = (3, unicodedata.digit(ch, 0))
        elif ch.isalpha():
            weight = (4, ch.casefold())
        else:
            weight = (1, _PUNCT_WEIGHT.get(ch, _OTHER_SYMBOL) * 0x110000 + ord(ch))
            if ch == "$":
                weight = (2, ord(ch))
        primary.append(weight)
        secondary.append("")
        tertiary.append(1 if ch.isupper() else 0)
    return tuple(primary), tuple(secondary), tuple(tertiary)


# ---- connector shapes -------------------------------------------------------------------------


def _is_deprecated(type_id: str, config: Mapping[str, Any]) -> bool:
    return type_id in (".servicenow", ".servicenow-sir") and config.get("usesTableApi") is True


def connector_json(rec: Mapping[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The create/get/update shape. Newer releases add `is_connector_type_deprecated` (false for every
    type the catalogue holds; the actions plugin's transform_connector_response v1)."""
    out = {
        "id": rec["id"],
        "name": rec["name"],
        "config": rec["config"],
        "connector_type_id": rec["connector_type_id"],
        "is_preconfigured": False,
        "is_deprecated": _is_deprecated(rec["connector_type_id"], rec["config"]),
        "is_missing_secrets": bool(rec.get("is_missing_secrets", False)),
        "is_system_action": False,
    }
    if settings is None or settings.current_fields:
        out["is_connector_type_deprecated"] = False
    return out


def preconfigured_json(p: Preconfigured, settings: Settings | None = None) -> dict[str, Any]:
    out = {
        "id": p.id,
        "connector_type_id": p.type,
        "name": p.name,
        "is_preconfigured": True,
        "is_system_action": False,
        "is_deprecated": _is_deprecated(p.type, p.config),
    }
    if settings is None or settings.current_fields:
        out["is_connector_type_deprecated"] = False
    return out


def _not_found(id: str, kind: str = "action") -> HttpError:
    return HttpError(404, f"Saved object [{kind}/{id}] not found")


def _record_in_space(ctx: Ctx, id: str) -> dict[str, Any]:
    rec = ctx.store.connectors.get(id)
    if rec is None or rec["space"] != ctx.space:
        raise _not_found(id)
    return rec


def _check_enabled(settings: Settings, type_id: str) -> None:
    """Kibana's ensureActionTypeEnabled: config first, then licence; both 403."""
    if not settings.type_enabled_in_config(type_id):
        raise HttpError(
            403, f'action type "{type_id}" is not enabled in the Kibana config xpack.actions.enabledActionTypes'
        )
    ct = catalog.get(type_id)
    if ct is not None and not catalog.license_allows(settings.license, ct.minimum_license):
        raise HttpError(
            403,
            f"Action type {type_id} is disabled because your {settings.license} license does not support it. "
            "Please upgrade your license.",
        )


def _registered(type_id: str) -> catalog.ConnectorType:
    ct = catalog.get(type_id)
    if ct is None:
        raise HttpError(400, f'Action type "{type_id}" is not registered.')
    return ct


def _validated(ctx: Ctx, type_id: str, config: Mapping[str, Any], secrets: Mapping[str, Any]) -> tuple[dict[str, Any],
                                                                                                     dict[str, Any]]:
    hosts = ctx.settings.allowed_hosts
    current = ctx.settings.current_fields
    v.check_config_values(type_id, config)
    valid_config = v.validate_part(type_id, "config", config, hosts, current=current)
    valid_secrets = v.validate_part(type_id, "secrets", secrets, hosts, current=current)
    v.validate_connector(type_id, config, valid_config, valid_secrets, secrets)
    return valid_config, valid_secrets


def _reject_unknown_query(ctx: Ctx, known: frozenset[str]) -> None:
    for key in ctx.query:
        if key not in known:
            raise HttpError(400, f"[request query.{key}]: definition for this key is missing")


# ---- connector routes -------------------------------------------------------------------------


# Kibana lists connector types in registration order (stack_connectors' registerConnectorTypes), the
# order of the catalogue's source (shared/kibana/connector-types.json); catalogue types not named here
# follow in id order.
TYPE_ORDER = (
    ".email", ".slack", ".slack_api", ".pagerduty", ".jira", ".servicenow", ".servicenow-sir", ".servicenow-itom",
    ".webhook", ".cases-webhook", ".index", ".server-log", ".opsgenie", ".teams", ".gen-ai", ".bedrock", ".gemini",
    ".inference", ".crowdstrike", ".sentinelone", ".microsoft_defender_endpoint", ".thehive", ".tines", ".torq",
    ".swimlane", ".resilient", ".d3security", ".xmatters", ".jira-service-management", ".xsoar", ".mcp", ".cases",
)


def _registration_order() -> list[catalog.ConnectorType]:
    rank = {t: i for i, t in enumerate(TYPE_ORDER)}
    return sorted(catalog.types().values(), key=lambda ct: (rank.get(ct.id, len(rank)), ct.id))


def list_types(ctx: Ctx, _: dict[str, str]) -> SandboxResponse:
    _reject_unknown_query(ctx, frozenset({"feature_id"}))
    feature = ctx.query.get("feature_id", [None])[-1]
    out = []
    for ct in _registration_order():
        if ct.is_system_action:
            continue
        if feature is not None and (feature not in ct.supported_feature_ids or ct.id in _HIDDEN_FROM_FEATURE_LISTS):
            continue
        in_config = ctx.settings.type_enabled_in_config(ct.id)
        in_license = catalog.license_allows(ctx.settings.license, ct.minimum_license)
        item: dict[str, Any] = {
            "id": ct.id,
            "name": ct.name,
            "enabled": in_config and in_license,
            "enabled_in_config": in_config,
            "enabled_in_license": in_license,
            "minimum_license_required": ct.minimum_license,
            "supported_feature_ids": list(ct.supported_feature_ids),
            "is_system_action_type": False,
        }
        if ctx.settings.current_fields:
            # action_type_registry.ts list(): `source: actionType.source || 'stack'`, `isDeprecated:
            # !!actionType.isDeprecated`; sub_feature, description, allow_multiple_system_actions and
            # is_experimental are undefined for these stack types, so the v1 transform omits them.
            item.update(source="stack", is_deprecated=False)
        out.append(item)
    return json_response(200, out)


def list_connectors(ctx: Ctx, _: dict[str, str]) -> SandboxResponse:
    """referenced_by_count counts referencing rules in every space (Kibana aggregates over all saved
    objects with no space filter, one document per connector however many actions use it); rules never
    store references to preconfigured connectors."""
    refs: Counter[str] = Counter()
    for rule in ctx.store.rules.values():
        refs.update({a["id"] for a in rule["actions"]} - set(ctx.settings.preconfigured))
    items: list[dict[str, Any]] = []
    for rec in ctx.store.connectors.values():
        if rec["space"] == ctx.space and len(items) < MAX_ACTIONS_RETURNED:
            items.append(connector_json(rec, ctx.settings))
    items.extend(preconfigured_json(p, ctx.settings) for p in ctx.settings.preconfigured.values())
    for item in items:
        item["referenced_by_count"] = refs.get(item["id"], 0)
    items.sort(key=lambda i: collation_key(i["name"]))
    return json_response(200, items)


def get_connector(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    id = p["id"]
    if id == SYSTEM_CONNECTOR_ID:
        raise HttpError(404, f"Connector {id} not found")
    pre = ctx.settings.preconfigured.get(id)
    if pre is not None:
        return json_response(200, preconfigured_json(pre, ctx.settings))
    return json_response(200, connector_json(_record_in_space(ctx, id), ctx.settings))


def _check_new_id(ctx: Ctx, id: str) -> None:
    if ctx.settings.human_readable_ids:
        return
    if not _UUID.fullmatch(id):
        raise HttpError(
            400, "Predefined IDs are not allowed for saved objects with encrypted attributes unless the ID is a UUID."
        )


def _check_readable_id(id: str) -> None:
    if "/" in id or ".." in id:
        raise HttpError(400, 'Connector ID must not contain path separators ("/") or traversal sequences ("..").')
    if not _READABLE_ID.fullmatch(id):
        raise HttpError(400, "Connector ID must contain only lowercase letters, numbers, and hyphens.")
    if len(id) > READABLE_ID_MAX_LENGTH:
        raise HttpError(400, f"Connector ID must be {READABLE_ID_MAX_LENGTH} characters or less.")


def create_connector(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    body = v.check_body(ctx.body, v.CREATE_CONNECTOR)
    id = p.get("id")
    if id is not None and ctx.settings.human_readable_ids:
        _check_readable_id(id)
    type_id = body["connector_type_id"]
    ct = catalog.get(type_id)
    if (ct is not None and ct.is_system_action) or id == SYSTEM_CONNECTOR_ID:
        raise HttpError(400, f"System action creation is forbidden. Action type: {type_id}.")
    if id is not None and id in ctx.settings.preconfigured:
        raise HttpError(400, f"This {id} already exists in a preconfigured action.")
    _registered(type_id)
    config, secrets = _validated(ctx, type_id, body["config"], body["secrets"])
    _check_enabled(ctx.settings, type_id)
    if id is None:
        id = str(uuid.uuid4())
    else:
        _check_new_id(ctx, id)
    if id in ctx.store.connectors:
        raise HttpError(409, f"Saved object [action/{id}] conflict")
    rec = connector_record(id, ctx.space, body["name"], type_id, config, secrets, False)
    ctx.store.connectors[id] = rec
    ctx.mark_changed()
    return json_response(200, connector_json(rec, ctx.settings))


def update_connector(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    body = v.check_body(ctx.body, v.UPDATE_CONNECTOR)
    id = p["id"]
    if id == SYSTEM_CONNECTOR_ID:
        raise HttpError(400, f"System action {id} can not be updated.")
    if id in ctx.settings.preconfigured:
        raise HttpError(400, f"Preconfigured action {id} can not be updated.")
    rec = _record_in_space(ctx, id)
    type_id = rec["connector_type_id"]
    _registered(type_id)
    config, secrets = _validated(ctx, type_id, body["config"], body["secrets"])
    _check_enabled(ctx.settings, type_id)
    rec.update(name=body["name"], config=config, secrets=secrets, is_missing_secrets=False)
    ctx.mark_changed()
    return json_response(200, connector_json(rec, ctx.settings))


def delete_connector(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    id = p["id"]
    if id == SYSTEM_CONNECTOR_ID:
        raise HttpError(400, f"System action {id} is not allowed to delete.")
    if id in ctx.settings.preconfigured:
        raise HttpError(400, f"Preconfigured action {id} is not allowed to delete.")
    _record_in_space(ctx, id)
    del ctx.store.connectors[id]
    ctx.mark_changed()
    return empty_response(204)


def execute_connector(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    """Records the call; never contacts the connector's target (the sandbox is offline)."""
    body = v.check_body(ctx.body, v.EXECUTE)
    id = p["id"]
    if id == SYSTEM_CONNECTOR_ID:
        raise HttpError(400, "Execution of system action is not allowed")
    pre = ctx.settings.preconfigured.get(id)
    rec = None if pre is not None else _record_in_space(ctx, id)
    type_id = pre.type if pre is not None else rec["connector_type_id"]  # type: ignore[index]
    config = pre.config if pre is not None else rec["config"]  # type: ignore[index]
    _registered(type_id)
    _check_enabled(ctx.settings, type_id)
    # The executor validates params after the enabled check; failures are a 200 with status "error".
    result = execute_result(id, type_id, config, body["params"])
    if result["status"] == "ok":
        ctx.store.executions.append({"connector_id": id, "space": ctx.space, "connector_type_id": type_id,
                                     "params": body["params"], "at": _now()})
        ctx.mark_changed()
    return json_response(200, result)


# ---- spaces -----------------------------------------------------------------------------------


def _space_json(id: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": id, "name": name, "disabledFeatures": []}
    if id == "default":
        out.update(description="This is your default space!", color="#00bfb3", _reserved=True)
    return out


def list_spaces(ctx: Ctx, _: dict[str, str]) -> SandboxResponse:
    return json_response(200, [_space_json(i, n) for i, n in ctx.settings.spaces])


def get_space(ctx: Ctx, p: dict[str, str]) -> SandboxResponse:
    for i, n in ctx.settings.spaces:
        if i == p["id"]:
            return json_response(200, _space_json(i, n))
    raise HttpError(404, "Not Found")


def status(ctx: Ctx, _: dict[str, str]) -> SandboxResponse:
    """Kibana's `GET /api/status`, the slice readiness probes read: a started Kibana is `available`."""
    return json_response(200, {
        "name": "kcr-sandbox",
        "version": {"number": ctx.settings.kibana_version, "build_flavor": "traditional"},
        "status": {"overall": {"level": "available", "summary": "All services and plugins are available"}},
    })


# ---- alerting rules (a slice) -----------------------------------------------------------------


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
    rule = rule_record(id, ctx.space, body, _now())
    ctx.store.rules[id] = rule
    ctx.mark_changed()
    return json_response(200, rule_json(ctx, rule))


def _rule_in_space(ctx: Ctx, id: str) -> dict[str, Any]:
    rule = ctx.store.rules.get(id)
    if rule is None or rule["space"] != ctx.space:
        raise _not_found(id, "alert")
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
    fresh = rule_record(rule["id"], rule["space"], {**body, **kept}, _now())
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


_ID = r"(?P<id>[^/]+)"
# (method, path regex over the raw path, counter name, handler, parses a body)
ROUTES: tuple[tuple[str, re.Pattern[str], str, Handler, bool], ...] = tuple(
    (m, re.compile(f"^{rx}$"), name, h, body)
    for m, rx, name, h, body in (
        ("GET", "/api/actions/connector_types", "connector_types", list_types, False),
        ("GET", "/api/actions/connectors", "connectors", list_connectors, False),
        ("POST", "/api/actions/connector", "create_connector", create_connector, True),
        ("POST", f"/api/actions/connector/{_ID}/_execute", "execute_connector", execute_connector, True),
        ("POST", f"/api/actions/connector/{_ID}", "create_connector", create_connector, True),
        ("GET", f"/api/actions/connector/{_ID}", "get_connector", get_connector, False),
        ("PUT", f"/api/actions/connector/{_ID}", "update_connector", update_connector, True),
        ("DELETE", f"/api/actions/connector/{_ID}", "delete_connector", delete_connector, False),
        ("GET", "/api/status", "status", status, False),
        ("GET", "/api/spaces/space", "spaces", list_spaces, False),
        ("GET", f"/api/spaces/space/{_ID}", "space", get_space, False),
        ("POST", "/api/alerting/rule", "create_rule", create_rule, True),
        ("POST", f"/api/alerting/rule/{_ID}", "create_rule", create_rule, True),
        ("GET", f"/api/alerting/rule/{_ID}", "get_rule", get_rule, False),
        ("PUT", f"/api/alerting/rule/{_ID}", "update_rule", update_rule, True),
        ("DELETE", f"/api/alerting/rule/{_ID}", "delete_rule", delete_rule, False),
        ("GET", "/api/alerting/rules/_find", "find_rules", find_rules, False),
    )
)
