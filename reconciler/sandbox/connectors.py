"""The connectors routes (api-behaviour.md §1-7): connector types, list, get, create, update, delete and
_execute, each following Kibana's per-route check order, plus the shapes Kibana answers them with.
Kibana's per-type rules are the product's (`reconciler.type_rules`); `validation` turns them into 400s."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from reconciler import catalog
from reconciler.model import UUID_PATTERN
from reconciler.sandbox import kibana9
from reconciler.sandbox import validation as v
from reconciler.sandbox.collation import collation_key
from reconciler.sandbox.context import Ctx, not_found, now
from reconciler.sandbox.http import HttpError, SandboxResponse, empty_response, json_response
from reconciler.sandbox.params import execute_result
from reconciler.sandbox.store import SYSTEM_CONNECTOR_ID, Preconfigured, Settings, connector_record

MAX_ACTIONS_RETURNED = 10_000
_UUID = re.compile(UUID_PATTERN)
_READABLE_ID = re.compile(r"^[a-z0-9-]+$")
READABLE_ID_MAX_LENGTH = 64  # CONNECTOR_ID_MAX_LENGTH was not found in Kibana's source; a guess
# 8.x: action_type_registry.ts list() dropped these two from any feature_id list; 9.x filters on
# supportedFeatureIds alone (x-pack/platform/plugins/shared/actions/server/action_type_registry.ts list()),
# which lists them under `endpointSecurity`.
_HIDDEN_FROM_FEATURE_LISTS = frozenset({".sentinelone", ".crowdstrike"})
# `subFeature: 'endpointSecurity'` in each type's registration (stack_connectors/server/connector_types/
# sentinelone, crowdstrike, microsoft_defender_endpoint); read from the catalogue once it carries it.
_SUB_FEATURES = {".sentinelone": "endpointSecurity", ".crowdstrike": "endpointSecurity",
                 ".microsoft_defender_endpoint": "endpointSecurity"}


def line(settings: Settings) -> str:
    """The behaviour line the seed's kibana_version selects (kibana9)."""
    return kibana9.line_of(settings.kibana_version)


def type_deprecated(type_id: str) -> bool:
    """action_type_registry.ts isDeprecated: the registered type's own `isDeprecated` (false for an
    unregistered type); the catalogue's `is_deprecated` when it carries one."""
    ct = catalog.get(type_id)
    return bool(getattr(ct, "is_deprecated", False)) if ct is not None else False


def sub_feature(ct: catalog.ConnectorType) -> str | None:
    return getattr(ct, "sub_feature", None) or _SUB_FEATURES.get(ct.id)


# ---- connector shapes -------------------------------------------------------------------------


def _is_deprecated(type_id: str, config: Mapping[str, Any]) -> bool:
    return type_id in (".servicenow", ".servicenow-sir") and config.get("usesTableApi") is True


def connector_json(rec: Mapping[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The create/get/update shape. Newer releases add `is_connector_type_deprecated`, the type
    registry's isDeprecated (the actions plugin's transform_connector_response v1)."""
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
        out["is_connector_type_deprecated"] = type_deprecated(rec["connector_type_id"])
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
        out["is_connector_type_deprecated"] = type_deprecated(p.type)
    return out


def _record_in_space(ctx: Ctx, id: str) -> dict[str, Any]:
    rec = ctx.store.connectors.get(id)
    if rec is None or rec["space"] != ctx.space:
        raise not_found(id)
    return rec


def _check_enabled(settings: Settings, type_id: str) -> None:
    """Kibana's ensureActionTypeEnabled: config first, then licence; both 403."""
    if not settings.type_enabled_in_config(type_id):
        raise HttpError(
            403, f'action type "{type_id}" is not enabled in the Kibana config xpack.actions.enabledActionTypes'
        )
    ct = catalog.get(type_id) or settings.extra_types.get(type_id)
    if ct is not None and not catalog.license_allows(settings.license, ct.minimum_license):
        raise HttpError(
            403,
            f"Action type {type_id} is disabled because your {settings.license} license does not support it. "
            "Please upgrade your license.",
        )


def _registered(type_id: str, settings: Settings | None = None) -> catalog.ConnectorType:
    ct = catalog.get(type_id) or (settings.extra_types.get(type_id) if settings is not None else None)
    if ct is None:
        raise HttpError(400, f'Action type "{type_id}" is not registered.')
    return ct


def _validated(ctx: Ctx, type_id: str, config: Mapping[str, Any], secrets: Mapping[str, Any]) -> tuple[dict[str, Any],
                                                                                                     dict[str, Any]]:
    if type_id in ctx.settings.extra_types:  # a seed's extra type: no schema to validate against
        return dict(config), dict(secrets)
    hosts = ctx.settings.allowed_hosts
    current = ctx.settings.current_fields
    ln = line(ctx.settings)
    v.check_config_values(type_id, config, ln)
    valid_config = v.validate_part(type_id, "config", config, hosts, current=current, line=ln)
    valid_secrets = v.validate_part(type_id, "secrets", secrets, hosts, current=current, line=ln)
    v.validate_connector(type_id, config, valid_config, valid_secrets, secrets)
    return valid_config, valid_secrets


def _reject_unknown_query(ctx: Ctx, known: frozenset[str]) -> None:
    for key in ctx.query:
        if key not in known:
            raise HttpError(400, f"[request query.{key}]: definition for this key is missing")


# ---- routes -----------------------------------------------------------------------------------


# Kibana lists connector types in registration order (stack_connectors' registerConnectorTypes), the
# order of the catalogue's source (shared/kibana/connector-types.json); catalogue types not named here
# follow in id order. Spec connectors (`.slack2`, `.jira-cloud`) are virtual types the registry lists
# in the place of the one action type that serves them (action_type_registry.ts list()), put last here;
# the places of `.http` and of the system types (never listed) were not read from Kibana: a guess.
TYPE_ORDER = (
    ".email", ".slack", ".slack_api", ".pagerduty", ".jira", ".servicenow", ".servicenow-sir", ".servicenow-itom",
    ".webhook", ".http", ".cases-webhook", ".index", ".server-log", ".opsgenie", ".teams", ".gen-ai", ".bedrock",
    ".gemini", ".inference", ".crowdstrike", ".sentinelone", ".microsoft_defender_endpoint", ".thehive", ".tines",
    ".torq", ".swimlane", ".resilient", ".d3security", ".xmatters", ".jira-service-management", ".xsoar", ".mcp",
    ".cases", ".http-system", ".observability-ai-assistant", ".slack2", ".jira-cloud",
)


def _registration_order() -> list[catalog.ConnectorType]:
    rank = {t: i for i, t in enumerate(TYPE_ORDER)}
    return sorted(catalog.types().values(), key=lambda ct: (rank.get(ct.id, len(rank)), ct.id))


def list_types(ctx: Ctx, _: dict[str, str]) -> SandboxResponse:
    _reject_unknown_query(ctx, frozenset({"feature_id"}))
    feature = ctx.query.get("feature_id", [None])[-1]
    hidden = _HIDDEN_FROM_FEATURE_LISTS if line(ctx.settings) == kibana9.LINE_8 else frozenset()
    out = []
    for ct in [*_registration_order(), *ctx.settings.extra_types.values()]:
        if ct.is_system_action:
            continue
        if feature is not None and (feature not in ct.supported_feature_ids or ct.id in hidden):
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
            # !!actionType.isDeprecated`, `subFeature: actionType.subFeature`; description,
            # allow_multiple_system_actions and is_experimental are undefined for these stack types,
            # so the v1 transform omits them (as it omits an undefined sub_feature).
            item.update(source="stack", is_deprecated=type_deprecated(ct.id))
            if (sub := sub_feature(ct)) is not None:
                item["sub_feature"] = sub
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
    _registered(type_id, ctx.settings)
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
    _registered(type_id, ctx.settings)
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
    from reconciler.sandbox import subactions  # sub-action framework and typed-params types

    if subactions.handles(type_id):
        result = subactions.execute_result(id, type_id, body["params"], ctx.settings.kibana_version,
                                           _registered(type_id).name)
    else:
        result = execute_result(id, type_id, config, body["params"])
    if result["status"] == "ok":
        ctx.store.executions.append({"connector_id": id, "space": ctx.space, "connector_type_id": type_id,
                                     "params": body["params"], "at": now()})
        ctx.mark_changed()
    return json_response(200, result)
