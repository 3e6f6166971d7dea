"""`_execute` for the connector types built on Kibana's sub-action framework, and the typed params of
ServiceNow, Swimlane and cases-webhook: what Kibana answers before it would call out.

The framework (elastic/kibana x-pack/platform/plugins/shared/actions/server/sub_action_framework/) works
in three steps, each with its own answer shape:

1. `validators.ts` gives every framework type one params schema, `{subAction: string, subActionParams:
   object (unknowns allowed, may be absent)}`; the action executor checks it before running anything,
   so a failure is `error validating action params: <detail>`, `retry: false`, `errorSource: "user"`
   (lib/validate_with_schema.ts). The detail is config-schema's in 8.x and zod v4's `prettifyError` in
   9.x (connector_types/openai.ts vs gemini.ts of x-pack/platform/test/alerting_api_integration/
   security_and_spaces/group2/tests/actions/).
2. `executor.ts` looks the sub action up: an unknown name throws `Sub action "<name>" is not registered.
   Connector id: <id>. Connector name: <type name>. Connector type: <type id>`, which the action executor
   (lib/action_executor.ts) answers as `an error occurred while running the action` with that
   service_message, `retry: true`, `errorSource: "framework"` (connector_types/opsgenie.ts, thehive.ts,
   xsoar.ts, gemini.ts, openai.ts, jira_service_management.ts).
3. The sub action's own schema runs before the service method (so before any external call); a
   failure throws `Request validation failed (<error>)` marked as a user error: same executor answer,
   `retry: true`, `errorSource: "user"` (opsgenie.ts, jira_service_management.ts, xsoar.ts). The
   `<error>` is `Error: <config-schema detail>` in 8.x (`schema.validate`); 9.x (`schema.parse` on
   zod schemas) stringifies the ZodError, its issues as indented JSON (UNCONFIRMED: no API test of
   main asserts it).

The sandbox stops there: it never calls out, so a valid call answers the framework's success shape,
`status: "ok"` with `data: {}` (executor.ts returns `data ?? {}`). Sub-action schemas live in
`subaction_tables` (with the AI and security families in `subaction_tables_ai` and
`subaction_tables_security`), in `subaction_schemas`' language; a sub action registered with `schema:
null` accepts any params object, as executor.ts skips the check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from reconciler.sandbox import kibana9
from reconciler.sandbox.subaction_schemas import MISSING, Node, check_cs, check_zod, js_type
from reconciler.sandbox.subaction_tables import CLASSIC, FRAMEWORK

RUN_FAILED = "an error occurred while running the action"


def _nine(kibana_version: str) -> bool:
    """The 9.x wording from the release whose schemas answer in zod's words on (kibana9.line_of): one
    boundary for the whole sandbox, so a seed's version means one set of answers."""
    return kibana9.line_of(kibana_version) == kibana9.LINE_9


def handles(type_id: str) -> bool:
    return type_id in FRAMEWORK or type_id in CLASSIC


def _params_error(connector_id: str, detail: str) -> dict[str, Any]:
    """lib/action_executor.ts: a params-schema failure, before the executor runs."""
    return {"connector_id": connector_id, "status": "error", "message": f"error validating action params: {detail}",
            "retry": False, "errorSource": "user"}


def _run_error(connector_id: str, service_message: str, source: str) -> dict[str, Any]:
    """lib/action_executor.ts: an error thrown by the executor (retry true)."""
    return {"connector_id": connector_id, "status": "error", "message": RUN_FAILED,
            "service_message": service_message, "retry": True, "errorSource": source}


def _framework_params(params: Mapping[str, Any], nine: bool) -> str | None:
    """validators.ts' params schema. 8.x: config-schema `schema.object({subAction: schema.string(),
    subActionParams: schema.object({}, {unknowns: 'allow'})})`, first failure, unknown top-level keys
    refused. 9.x: zod v4 `z.object({subAction: z.string(), subActionParams: z.object({}).passthrough()
    .nullish()})`, every issue, unknown top-level keys stripped."""
    sub = params.get("subAction", MISSING)
    sub_params = params.get("subActionParams", MISSING)
    issues: list[tuple[str, str]] = []
    if not isinstance(sub, str):
        issues.append(("subAction", "string"))
    if nine:
        if sub_params is not MISSING and sub_params is not None and not isinstance(sub_params, dict):
            issues.append(("subActionParams", "object"))
        return "\n".join(
            f"✖ Invalid input: expected {kind}, received "
            f"{js_type(params.get(key, MISSING))}\n  → at {key}" for key, kind in issues
        ) or None
    if sub_params is not MISSING and not isinstance(sub_params, dict):
        issues.append(("subActionParams", "object"))
    for key, kind in issues:
        got = js_type(params.get(key, MISSING))
        return f"[{key}]: expected value of type [{kind}] but got [{got}]"
    for key in params:
        if key not in ("subAction", "subActionParams"):
            return f"[{key}]: definition for this key is missing"
    return None


def _sub_params_error(schema: Node, value: Any, nine: bool) -> str | None:
    """executor.ts: `Request validation failed (${reqValidationError})`."""
    if nine:
        issues = check_zod(schema, value, [])
        if not issues:
            return None
        return f"Request validation failed ({json.dumps(issues, indent=2, ensure_ascii=False)})"
    detail = check_cs(schema, value, [])
    return None if detail is None else f"Request validation failed (Error: {detail})"


def framework_result(connector_id: str, type_id: str, params: Mapping[str, Any], kibana_version: str,
                     type_name: str | None = None) -> dict[str, Any]:
    """The `_execute` body for a sub-action framework type (status ok, or the framework's error)."""
    nine = _nine(kibana_version)
    spec = FRAMEWORK[type_id]
    detail = _framework_params(params, nine)
    if detail is not None:
        return _params_error(connector_id, detail)
    sub_action = params["subAction"]
    if sub_action not in spec.sub_actions:
        # executor.ts getConnectorErrorMsg: the connector *type's* name, not the connector's.
        name = type_name or type_id
        return _run_error(connector_id, f'Sub action "{sub_action}" is not registered. Connector id: '
                                        f"{connector_id}. Connector name: {name}. Connector type: {type_id}",
                          "framework")
    schema = spec.sub_actions[sub_action]
    if schema is not None:
        # executor.ts validates `subActionParams` as sent (undefined when absent), in the schema's own
        # library: config-schema where the type pins it (`Spec.dialect`), else the line's.
        message = _sub_params_error(schema, params.get("subActionParams", MISSING),
                                    nine and spec.dialect != "cs")
        if message is not None:
            return _run_error(connector_id, message, "user")
    return {"connector_id": connector_id, "status": "ok", "data": {}}


def classic_result(connector_id: str, type_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """ServiceNow, Swimlane, cases-webhook: one config-schema `oneOf` over `{subAction: literal,
    subActionParams}` checked by the action executor (connector_types/servicenow_itsm.ts, swimlane.ts,
    cases_webhook.ts: `error validating action params: types that failed validation: ...`)."""
    detail = check_cs(CLASSIC[type_id], params, [])
    if detail is not None:
        return _params_error(connector_id, detail)
    return {"connector_id": connector_id, "status": "ok", "data": {}}


def execute_result(connector_id: str, type_id: str, params: Mapping[str, Any], kibana_version: str,
                   type_name: str | None = None) -> dict[str, Any]:
    if type_id in FRAMEWORK:
        return framework_result(connector_id, type_id, params, kibana_version, type_name)
    return classic_result(connector_id, type_id, params)
