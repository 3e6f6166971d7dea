"""Execute-params schemas of the sub-action types (and the classic typed-params types), a small schema
language, and its two failure dialects:

- config-schema (`@kbn/config-schema`, what 8.x and the sub-action schemas of its era use): the first
  failure, `[path]: reason`; `oneOf` lists each branch's first failure under `types that failed
  validation:` (connector_types/opsgenie.ts shows the nested form); objects refuse unknown keys;
- zod v4 issues (9.x `schema.parse`): every failure as an issue object; objects strip unknown keys
  unless strict.

Schemas follow elastic/kibana x-pack/platform/plugins/shared/stack_connectors/{common,server/
connector_types}/<type>/schema.ts, cited per table. A sub-action with no modelled schema (None) is
checked by name only; a type whose sub-action list is None accepts any name (not modelled yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MISSING: Any = object()


def js_type(value: Any) -> str:
    if value is MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class Node:
    """A schema node."""


@dataclass(frozen=True)
class Str(Node):
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class Num(Node):
    pass


@dataclass(frozen=True)
class Bool(Node):
    pass


@dataclass(frozen=True)
class AnyValue(Node):
    pass


@dataclass(frozen=True)
class Lit(Node):
    value: str


@dataclass(frozen=True)
class Enum(Node):
    values: tuple[str, ...]


@dataclass(frozen=True)
class Arr(Node):
    item: Node
    max: int | None = None


@dataclass(frozen=True)
class Rec(Node):
    value: Node


@dataclass(frozen=True)
class F:
    name: str
    node: Node
    required: bool = True
    nullable: bool = False


@dataclass(frozen=True)
class Obj(Node):
    fields: tuple[F, ...] = ()
    unknowns: str = "forbid"  # config-schema: forbid | allow | ignore
    strict: bool = False  # zod: .strict() refuses unknown keys


@dataclass(frozen=True)
class OneOf(Node):
    options: tuple[Node, ...]


def opt(name: str, node: Node, nullable: bool = False) -> F:
    return F(name, node, required=False, nullable=nullable)


# ---- config-schema dialect -------------------------------------------------------------------------

Failure = tuple[list[str], str]


def _type_fail(path: list[str], kind: str, value: Any) -> Failure:
    return path, f"expected value of type [{kind}] but got [{js_type(value)}]"


def _cs(node: Node, value: Any, path: list[str]) -> Failure | None:
    if isinstance(node, AnyValue):
        return None
    if isinstance(node, Str):
        if not isinstance(value, str):
            return _type_fail(path, "string", value)
        if node.min is not None and len(value) < node.min:
            return path, f"value has length [{len(value)}] but it must have a minimum length of [{node.min}]."
        if node.max is not None and len(value) > node.max:
            return path, f"value has length [{len(value)}] but it must have a maximum length of [{node.max}]."
        return None
    if isinstance(node, Num):  # config-schema's number accepts numeric strings
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok and isinstance(value, str):
            try:
                float(value)
                ok = bool(value.strip())
            except ValueError:
                ok = False
        return None if ok else _type_fail(path, "number", value)
    if isinstance(node, Bool):
        return None if isinstance(value, bool) or value in ("true", "false") else _type_fail(path, "boolean", value)
    if isinstance(node, Lit):
        return None if value == node.value else (path, f"expected value to equal [{node.value}]")
    if isinstance(node, Enum):
        if value in node.values:
            return None
        prefix = ".".join(path) + "." if path else ""
        lines = [f"- [{prefix}{i}]: expected value to equal [{v}]" for i, v in enumerate(node.values)]
        return path, "types that failed validation:\n" + "\n".join(lines)
    if isinstance(node, Arr):
        if not isinstance(value, list):
            return _type_fail(path, "array", value)
        if node.max is not None and len(value) > node.max:
            return path, f"array size is [{len(value)}], but cannot be greater than [{node.max}]"
        for i, item in enumerate(value):
            found = _cs(node.item, item, [*path, str(i)])
            if found:
                return found
        return None
    if isinstance(node, Rec):
        if not isinstance(value, dict):
            return _type_fail(path, "object", value)
        for key, item in value.items():
            found = _cs(node.value, item, [*path, str(key)])
            if found:
                return found
        return None
    if isinstance(node, Obj):
        if value is MISSING:
            value = {}  # config-schema objects default to {} and then check their keys
        if not isinstance(value, dict):
            return _type_fail(path, "object", value)
        for f in node.fields:
            item = value.get(f.name, MISSING)
            if (item is MISSING and not f.required) or (item is None and f.nullable):
                continue
            found = _cs(f.node, item, [*path, f.name])
            if found:
                return found
        if node.unknowns == "forbid":
            known = {f.name for f in node.fields}
            for key in value:
                if key not in known:
                    return [*path, key], "definition for this key is missing"
        return None
    if isinstance(node, OneOf):
        lines = []
        for i, option in enumerate(node.options):
            found = _cs(option, value, path)
            if found is None:
                return None
            where, why = found
            label = ".".join([*path, str(i), *where[len(path):]])
            lines.append(f"- [{label}]: " + why.replace("\n", "\n "))
        return path, "types that failed validation:\n" + "\n".join(lines)
    raise TypeError(f"unknown schema node {node!r}")


def check_cs(node: Node, value: Any, path: list[str]) -> str | None:
    """config-schema's message for the first failure, or None."""
    found = _cs(node, value, path)
    if found is None:
        return None
    where, why = found
    return f"[{'.'.join(where)}]: {why}" if where else why


# ---- zod v4 dialect --------------------------------------------------------------------------------


def _zpath(path: list[str]) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path]


def _ztype(path: list[str], kind: str, value: Any) -> dict[str, Any]:
    return {"expected": kind, "code": "invalid_type", "path": _zpath(path),
            "message": f"Invalid input: expected {kind}, received {js_type(value)}"}


def check_zod(node: Node, value: Any, path: list[str]) -> list[dict[str, Any]]:
    """zod v4's issues (en locale), every one, in its key order."""
    if isinstance(node, AnyValue):
        return []
    if isinstance(node, Str):
        if not isinstance(value, str):
            return [_ztype(path, "string", value)]
        if node.min is not None and len(value) < node.min:
            return [{"origin": "string", "code": "too_small", "minimum": node.min, "inclusive": True,
                     "path": _zpath(path), "message": f"Too small: expected string to have >={node.min} characters"}]
        if node.max is not None and len(value) > node.max:
            return [{"origin": "string", "code": "too_big", "maximum": node.max, "inclusive": True,
                     "path": _zpath(path), "message": f"Too big: expected string to have <={node.max} characters"}]
        return []
    if isinstance(node, Num):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [_ztype(path, "number", value)]
    if isinstance(node, Bool):
        return [] if isinstance(value, bool) else [_ztype(path, "boolean", value)]
    if isinstance(node, Lit | Enum):
        values = (node.value,) if isinstance(node, Lit) else node.values
        if value in values:
            return []
        quoted = "|".join(f'"{v}"' for v in values)
        message = (f"Invalid input: expected {quoted}" if len(values) == 1
                   else f"Invalid option: expected one of {quoted}")
        return [{"code": "invalid_value", "values": list(values), "path": _zpath(path), "message": message}]
    if isinstance(node, Arr):
        if not isinstance(value, list):
            return [_ztype(path, "array", value)]
        issues = [i for n, item in enumerate(value) for i in check_zod(node.item, item, [*path, str(n)])]
        if node.max is not None and len(value) > node.max:
            issues.append({"origin": "array", "code": "too_big", "maximum": node.max, "inclusive": True,
                           "path": _zpath(path), "message": f"Too big: expected array to have <={node.max} items"})
        return issues
    if isinstance(node, Rec):
        if not isinstance(value, dict):
            return [_ztype(path, "record", value)]
        return [i for key, item in value.items() for i in check_zod(node.value, item, [*path, str(key)])]
    if isinstance(node, Obj):
        if not isinstance(value, dict):
            return [_ztype(path, "object", value)]
        issues = []
        for f in node.fields:
            item = value.get(f.name, MISSING)
            if (item is MISSING and not f.required) or (item is None and f.nullable):
                continue
            issues.extend(check_zod(f.node, item, [*path, f.name]))
        extra = [k for k in value if k not in {f.name for f in node.fields}]
        if node.strict and extra:
            keys = ", ".join(f'"{k}"' for k in extra)
            issues.append({"code": "unrecognized_keys", "keys": extra, "path": _zpath(path),
                           "message": f"Unrecognized key{'s' if len(extra) > 1 else ''}: {keys}"})
        return issues
    if isinstance(node, OneOf):
        errors = []
        for option in node.options:
            found = check_zod(option, value, [])
            if not found:
                return []
            errors.append(found)
        return [{"code": "invalid_union", "errors": errors, "path": _zpath(path), "message": "Invalid input"}]
    raise TypeError(f"unknown schema node {node!r}")


# ---- the tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    # None: any sub-action name is accepted (the list is not modelled); a None schema: name only.
    sub_actions: Mapping[str, Node | None] | None = field(default=None)


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
# common/openai|bedrock|gemini/schema.ts: RunActionParamsSchema (run and test); DashboardActionParamsSchema.
_SIGNAL = (opt("signal", AnyValue()), opt("timeout", Num()))
_OPENAI_RUN = Obj((F("body", Str()), *_SIGNAL))
_BEDROCK_RUN = Obj((F("body", Str()), opt("model", Str()), *_SIGNAL, opt("raw", Bool())))
_GEMINI_RUN = Obj((F("body", Str()), opt("model", Str()), *_SIGNAL, opt("temperature", Num()),
                   opt("stopSequences", Arr(Str())), opt("raw", Bool())))
_DASHBOARD = Obj((F("dashboardId", Str()),))

FRAMEWORK: Mapping[str, Spec] = {
    ".opsgenie": Spec({"createAlert": _OPSGENIE_CREATE, "closeAlert": _CLOSE_ALERT}),
    ".jira-service-management": Spec({"createAlert": _JSM_CREATE, "closeAlert": _CLOSE_ALERT}),
    # CaseConnector (sub_action_framework/case.ts) registers pushToService; TheHive adds createAlert.
    ".thehive": Spec({"pushToService": _THEHIVE_PUSH, "createAlert": _THEHIVE_ALERT}),
    ".xsoar": Spec({"getPlaybooks": None, "run": _XSOAR_RUN}),
    ".d3security": Spec({"run": _D3_RUN, "test": _D3_RUN}),
    ".tines": Spec({"stories": None, "webhooks": Obj((F("storyId", Num()),)), "run": _TINES_RUN,
                    "test": _TINES_RUN}),
    # common/openai/constants.ts SUB_ACTION; invokeAI and the streams are checked by name only.
    ".gen-ai": Spec({"run": _OPENAI_RUN, "test": _OPENAI_RUN, "invokeAI": None, "invokeStream": None,
                     "invokeAsyncIterator": None, "stream": None, "getDashboard": _DASHBOARD}),
    # common/bedrock/constants.ts SUB_ACTION.
    ".bedrock": Spec({"run": _BEDROCK_RUN, "test": _BEDROCK_RUN, "invokeAI": None, "invokeAIRaw": None,
                      "invokeStream": None, "converse": None, "converseStream": None, "bedrockClientSend": None,
                      "getDashboard": _DASHBOARD}),
    # common/gemini/constants.ts SUB_ACTION.
    ".gemini": Spec({"run": _GEMINI_RUN, "test": _GEMINI_RUN, "invokeAI": None, "invokeAIRaw": None,
                     "invokeStream": None, "getDashboard": _DASHBOARD}),
    # Framework types whose sub-action lists are not modelled: the framework's params check only.
    ".inference": Spec(), ".sentinelone": Spec(), ".crowdstrike": Spec(), ".microsoft_defender_endpoint": Spec(),
    ".mcp": Spec(),
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
