"""Execute-time params validation and results, for the types whose params Kibana's tests exercise.

Kibana's action executor validates params before it runs a connector; a failure is not an HTTP error
but a 200 whose body says `status: "error"`, `message: "error validating action params: <detail>"`,
`retry: false`, `errorSource: "user"` (elastic/kibana x-pack/platform/plugins/shared/actions/server/lib/
action_executor.ts, `validateParams` in lib/validate_with_schema.ts; the shape is asserted by
x-pack/platform/test/alerting_api_integration/security_and_spaces/group2/tests/actions/connector_types/
gemini.ts). The details below follow config-schema's wording: the first failing key in schema order.
Types not listed here accept any params object (their schemas are not modelled)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.sandbox.validation import js_type

_MISSING: Any = object()
_LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
_PD_ACTIONS = ("trigger", "resolve", "acknowledge")
_PD_SEVERITIES = ("critical", "error", "warning", "info")
_ALERT_HISTORY_PREFIX = "kibana-alert-history-"


class ParamsError(ValueError):
    """The detail after `error validating action params: `."""


def _expect(params: Mapping[str, Any], key: str, kind: str, *, required: bool = True) -> Any:
    value = params.get(key, _MISSING)
    if value is _MISSING or (value is None and not required):
        if required:
            raise ParamsError(f"[{key}]: expected value of type [{kind}] but got [undefined]")
        return None
    ok = {"string": isinstance(value, str), "array": isinstance(value, list),
          "object": isinstance(value, dict)}[kind]
    if not ok:
        raise ParamsError(f"[{key}]: expected value of type [{kind}] but got [{js_type(value)}]")
    return value


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    """config-schema's oneOf of literals: every branch is listed."""
    if value not in allowed:
        branches = "\n".join(f"- [{key}.{i}]: expected value to equal [{a}]" for i, a in enumerate(allowed))
        raise ParamsError(f"[{key}]: types that failed validation:\n{branches}")


def _no_unknown(params: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in params:
        if key not in known:
            raise ParamsError(f"[{key}]: definition for this key is missing")


def _server_log(params: Mapping[str, Any]) -> None:
    # stack_connectors/server/connector_types/server_log: {message: string, level: oneOf(..., default info)}
    _expect(params, "message", "string")
    if "level" in params:
        _one_of("level", params["level"], _LOG_LEVELS)
    _no_unknown(params, ("message", "level"))


def _index(params: Mapping[str, Any]) -> None:
    # es_index: {documents: arrayOf(recordOf(string, any)), indexOverride: nullable(string, validated)}
    documents = _expect(params, "documents", "array")
    for i, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise ParamsError(f"[documents.{i}]: expected value of type [object] but got [{js_type(doc)}]")
    override = params.get("indexOverride")
    if override is not None:
        if not isinstance(override, str):
            raise ParamsError(f"[indexOverride]: expected value of type [string] but got [{js_type(override)}]")
        if not override.startswith(_ALERT_HISTORY_PREFIX):
            raise ParamsError(f'[indexOverride]: index must start with "{_ALERT_HISTORY_PREFIX}"')
    _no_unknown(params, ("documents", "indexOverride"))


def _slack(params: Mapping[str, Any]) -> None:
    # slack (webhook): {message: string({minLength: 1})}
    message = _expect(params, "message", "string")
    if not message:
        raise ParamsError("[message]: value has length [0] but it must have a minimum length of [1].")
    _no_unknown(params, ("message",))


def _pagerduty(params: Mapping[str, Any]) -> None:
    # pagerduty: every key optional; eventAction and severity are literal unions; validateParams then
    # requires dedupKey for resolve/acknowledge ('DedupKey is required when eventAction is "<x>"').
    action = params.get("eventAction")
    if action is not None:
        _one_of("eventAction", action, _PD_ACTIONS)
    for key in ("dedupKey", "summary", "source", "timestamp", "component", "group", "class"):
        _expect(params, key, "string", required=False)
    severity = params.get("severity")
    if severity is not None:
        _one_of("severity", severity, _PD_SEVERITIES)
    if action in ("resolve", "acknowledge") and not params.get("dedupKey"):
        raise ParamsError(f'DedupKey is required when eventAction is "{action}"')


def _email(params: Mapping[str, Any]) -> None:
    # email: to/cc/bcc arrays (default []), subject and message strings; validateParams then needs
    # at least one recipient ('no [to], [cc], or [bcc] entries').
    recipients = 0
    for key in ("to", "cc", "bcc"):
        value = _expect(params, key, "array", required=False) or []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ParamsError(f"[{key}.{i}]: expected value of type [string] but got [{js_type(item)}]")
        recipients += len(value)
    _expect(params, "subject", "string")
    _expect(params, "message", "string")
    if recipients == 0:
        raise ParamsError("no [to], [cc], or [bcc] entries")


_VALIDATORS: Mapping[str, Callable[[Mapping[str, Any]], None]] = {
    ".server-log": _server_log,
    ".index": _index,
    ".slack": _slack,
    ".pagerduty": _pagerduty,
    ".email": _email,
}


def _index_data(config: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A minimal Elasticsearch bulk response, the `data` es_index returns: one created item per
    document. Ids are fresh UUIDs; no index exists behind it."""
    index = params.get("indexOverride") or config.get("index")
    items = [
        {"index": {"_index": index, "_id": str(uuid.uuid4()), "_version": 1, "result": "created", "status": 201,
                   "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": n, "_primary_term": 1}}
        for n, _ in enumerate(params.get("documents") or [])
    ]
    return {"errors": False, "took": 0, "items": items}


def execute_result(connector_id: str, type_id: str, config: Mapping[str, Any],
                   params: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a 200 `_execute` answer: ok (with `data` for `.index`) or a params-validation error."""
    check = _VALIDATORS.get(type_id)
    if check is not None:
        try:
            check(params)
        except ParamsError as exc:
            return {"connector_id": connector_id, "status": "error",
                    "message": f"error validating action params: {exc}", "retry": False, "errorSource": "user"}
    out: dict[str, Any] = {"connector_id": connector_id, "status": "ok"}
    if type_id == ".index":
        out["data"] = _index_data(config, params)
    return out
