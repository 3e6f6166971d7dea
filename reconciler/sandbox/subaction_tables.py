"""The tables of `subaction_schemas`' language: each sub-action type's registered sub actions and their
params schemas, and the typed params of the classic (pre-framework) types.

Schemas follow elastic/kibana x-pack/platform/plugins/shared/stack_connectors/{common,server/
connector_types}/<type>/schema.ts and src/platform/packages/shared/kbn-connector-schemas/<type>/, cited
per table; the AI and security families are in `subaction_tables_ai` and `subaction_tables_security`.
Every registered sub action has its schema: None where Kibana registers `schema: null` (no check, as
xsoar's XSOARPlaybooksActionParamsSchema and tines' TinesStoriesActionParamsSchema are), `AnyValue`
where it registers `z.any()`.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.sandbox.subaction_schemas import (
    AnyValue,
    Arr,
    Bool,
    Enum,
    F,
    Lit,
    Node,
    Num,
    Obj,
    OneOf,
    Rec,
    Spec,
    Str,
    opt,
)
from reconciler.sandbox.subaction_tables_ai import AI
from reconciler.sandbox.subaction_tables_security import SECURITY

_RESPONDER = Enum(("team", "user", "escalation", "schedule"))
_STR_ITEMS = Arr(Str(max=50), max=10)

# server/connector_types/opsgenie/schema.ts (CreateAlertParamsSchema, CloseAlertParamsSchema); the
# message's 130-character cap is left out: newer connectors truncate instead (opsgenie/connector.ts).
_CLOSE_ALERT = Obj((F("alias", Str()), opt("user", Str(max=100)), opt("source", Str(max=100)),
                    opt("note", Str(max=25000))), strict=True)
_ALERT_TAIL = (
    opt("actions", _STR_ITEMS), opt("tags", Arr(Str(max=50), max=20)), opt("details", Rec(Str())),
    opt("entity", Str(max=512)), opt("source", Str(max=100)), opt("priority", Enum(("P1", "P2", "P3", "P4", "P5"))),
    opt("user", Str(max=100)), opt("note", Str(max=25000)),
)
_OPSGENIE_CREATE = Obj((
    F("message", Str(min=1)), opt("alias", Str()), opt("description", Str(max=15000)),
    opt("responders", Arr(OneOf((
        Obj((F("name", Str()), F("type", _RESPONDER)), strict=True),
        Obj((F("id", Str()), F("type", _RESPONDER)), strict=True),
        Obj((F("username", Str()), F("type", Lit("user"))), strict=True),
    )), max=50)),
    opt("visibleTo", Arr(OneOf((
        Obj((F("name", Str()), F("type", Lit("team"))), strict=True),
        Obj((F("id", Str()), F("type", Lit("team"))), strict=True),
        Obj((F("id", Str()), F("type", Lit("user"))), strict=True),
        Obj((F("username", Str()), F("type", Lit("user"))), strict=True),
    )), max=50)),
    *_ALERT_TAIL,
), strict=True)
# server/connector_types/jira-service-management/schema.ts: responders by id only, visibleTo by id.
_JSM_CREATE = Obj((
    F("message", Str(min=1)), opt("alias", Str()), opt("description", Str(max=15000)),
    opt("responders", Arr(Obj((F("id", Str()), F("type", _RESPONDER)), strict=True), max=50)),
    opt("visibleTo", Arr(OneOf((
        Obj((F("id", Str()), F("type", Lit("team"))), strict=True),
        Obj((F("id", Str()), F("type", Lit("user"))), strict=True),
    )), max=50)),
    *_ALERT_TAIL,
), strict=True)

_COMMENTS = opt("comments", Arr(Obj((F("comment", Str()), F("commentId", Str())))), nullable=True)
# common/thehive/schema.ts (ExecutorSubActionPushParamsSchema, ...CreateAlertParamsSchema; `isRuleSeverity`
# as connector_types/thehive.ts sends it).
_THEHIVE_PUSH = Obj((F("incident", Obj((
    F("title", Str()), F("description", Str()), opt("externalId", Str(), True), opt("severity", Num(), True),
    opt("tlp", Num(), True), opt("tags", Arr(Str()), True)))), _COMMENTS))
_THEHIVE_ALERT = Obj((
    F("title", Str()), F("description", Str()), F("type", Str()), F("source", Str()), F("sourceRef", Str()),
    opt("severity", Num(), True), opt("isRuleSeverity", Bool(), True), opt("tlp", Num(), True),
    opt("tags", Arr(Str()), True), opt("body", Str(), True)))
# common/xsoar/schema.ts (XSOARRunActionParamsSchema; getPlaybooks takes none).
_XSOAR_RUN = Obj((F("name", Str()), opt("playbookId", Str(), True), F("createInvestigation", Bool()),
                  F("severity", Num()), opt("isRuleSeverity", Bool(), True), opt("body", Str(), True)))
# common/d3security/schema.ts (D3SecurityRunActionParamsSchema, for run and test).
_D3_RUN = Obj((opt("body", Str()), opt("severity", Str()), opt("eventType", Str())))
# common/tines/schema.ts (TinesWebhooksActionParamsSchema, TinesRunActionParamsSchema for run and test).
_TINES_RUN = Obj((opt("webhook", Obj((F("id", Num()), F("name", Str()), F("storyId", Num())), unknowns="ignore")),
                  opt("webhookUrl", Str()), F("body", Str())))
# sub_action_framework/case.ts pushToService: `incident` (the type's fields, then externalId) and
# `comments`, each config-schema `nullable` (a oneOf with literal null, hence the nested failure list).
_RESILIENT_PUSH = Obj((
    F("incident", Obj((F("name", Str()), opt("description", Str(), True), opt("externalId", Str(), True),
                       opt("incidentTypes", Arr(Num()), True), opt("severityCode", Num(), True),
                       opt("additional_fields", Rec(AnyValue()), True)))),
    opt("comments", OneOf((Arr(Obj((F("comment", Str()), F("commentId", Str())))), Lit(None)))),
))

# `.http` is not on the framework (http/http_connector.ts: a plain executor whose ParamsSchema,
# kbn-connector-schemas/http/schemas/v1.ts, the action executor checks); its params are not modelled.
FRAMEWORK: Mapping[str, Spec] = {
    ".opsgenie": Spec({"createAlert": _OPSGENIE_CREATE, "closeAlert": _CLOSE_ALERT}),
    ".jira-service-management": Spec({"createAlert": _JSM_CREATE, "closeAlert": _CLOSE_ALERT}),
    # CaseConnector (sub_action_framework/case.ts) registers pushToService; TheHive adds createAlert.
    ".thehive": Spec({"pushToService": _THEHIVE_PUSH, "createAlert": _THEHIVE_ALERT}),
    ".xsoar": Spec({"getPlaybooks": None, "run": _XSOAR_RUN}),  # playbooks: schema null
    ".d3security": Spec({"run": _D3_RUN, "test": _D3_RUN}),
    ".tines": Spec({"stories": None, "webhooks": Obj((F("storyId", Num()),)), "run": _TINES_RUN,
                    "test": _TINES_RUN}),
    **AI,  # .gen-ai, .bedrock, .gemini, .inference (subaction_tables_ai)
    **SECURITY,  # .sentinelone, .crowdstrike, .microsoft_defender_endpoint (subaction_tables_security)
    # kbn-connector-schemas/mcp/constants.ts SUB_ACTION and mcp/schemas/v1.ts (TestConnectorRequestSchema,
    # ListToolsRequestSchema, CallToolRequestSchema), registered in stack_connectors .../mcp/mcp.ts.
    ".mcp": Spec({"test": Obj(strict=True), "listTools": Obj((opt("forceRefresh", Bool()),)),
                  "callTool": Obj((F("name", Str()), opt("arguments", Rec(AnyValue()))))}),
    # IBM Resilient is a CaseConnector on the framework (resilient/index.ts, resilient.ts, constants.ts)
    # with config-schema sub-action schemas (resilient/schema.ts); words from connector_types/resilient.ts
    # of x-pack/platform/test/alerting_api_integration/security_and_spaces/group2/tests/actions/.
    ".resilient": Spec({"pushToService": _RESILIENT_PUSH, "getFields": Obj(), "severity": Obj(),
                        "incidentTypes": Obj()}, dialect="cs"),
}


def _typed(*branches: tuple[str, Node]) -> OneOf:
    """A classic type's params: `oneOf` of `{subAction: literal, subActionParams}` objects."""
    return OneOf(tuple(Obj((F("subAction", Lit(name)), F("subActionParams", node))) for name, node in branches))


_NULL_STR = Str()
# server/connector_types/lib/servicenow/schema.ts (ITSM and SecOps), in the order of
# connector_types/servicenow_itsm.ts' "without unsupported action" case; incident keys beyond the
# checked ones are allowed (their long optional list is not modelled).
_SN_INCIDENT = Obj((F("short_description", Str()), opt("description", _NULL_STR, True),
                    opt("externalId", _NULL_STR, True), opt("correlation_id", _NULL_STR, True)), unknowns="allow")
_SERVICENOW = _typed(
    ("getFields", Obj()), ("getIncident", Obj((F("externalId", Str()),))), ("handshake", Obj()),
    ("pushToService", Obj((F("incident", _SN_INCIDENT), _COMMENTS))),
    ("getChoices", Obj((F("fields", Arr(Str())),))),
)
# server/connector_types/servicenow_itom/schema.ts: addEvent (every field optional), getChoices.
_ITOM_EVENT = Obj(tuple(opt(k, _NULL_STR, True) for k in (
    "source", "event_class", "resource", "node", "metric_name", "type", "severity", "description",
    "additional_info", "message_key", "time_of_event")))
# server/connector_types/swimlane/schema.ts and cases_webhook/schema.ts: pushToService only.
_SWIMLANE_INCIDENT = Obj(tuple(opt(k, _NULL_STR, True) for k in (
    "alertId", "ruleName", "caseId", "caseName", "severity", "description")), unknowns="allow")
_CASES_WEBHOOK_INCIDENT = Obj((F("title", Str()), opt("description", _NULL_STR, True),
                               opt("externalId", _NULL_STR, True), opt("tags", Arr(Str()), True)), unknowns="allow")

CLASSIC: Mapping[str, Node] = {
    ".servicenow": _SERVICENOW,
    ".servicenow-sir": _SERVICENOW,
    ".servicenow-itom": _typed(("addEvent", _ITOM_EVENT), ("getChoices", Obj((F("fields", Arr(Str())),)))),
    ".swimlane": _typed(("pushToService", Obj((F("incident", _SWIMLANE_INCIDENT), _COMMENTS)))),
    ".cases-webhook": _typed(("pushToService", Obj((F("incident", _CASES_WEBHOOK_INCIDENT), _COMMENTS)))),
}
