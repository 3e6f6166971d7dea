"""What kcr makes of Kibana's answers: errors keyed on the status code (with Kibana's own message,
masked, and a hint that names the fix) or on a TLS failure that would fail again, and every answer
checked field by field before it becomes a LiveConnector or a ConnectorTypeInfo. Separate from the
client (reconciler/kibana.py), which sends and repeats requests: these are pure functions of one answer,
and the list of what a safety decision may not default is easier to review on its own.

Nothing a plan decides from is defaulted: a connector without a type, or a list entry without
referenced_by_count, is refused as malformed rather than read as "new" or "unused".
"""

from __future__ import annotations

import re
import ssl
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import httpx

from reconciler.errors import (
    KibanaAuthError,
    KibanaConflict,
    KibanaError,
    KibanaNotFound,
    KibanaUnavailable,
)
from reconciler.masking import Masker
from reconciler.model import ConnectorTypeInfo, LiveConnector, id_segment_problem
from reconciler.wire import Reply

# --------------------------------------------------------------------------------------------
# Errors


def _status_error(status: int) -> type[KibanaError]:
    if status in (401, 403):
        return KibanaAuthError
    if status == 404:
        return KibanaNotFound
    if status == 409:
        return KibanaConflict
    if status >= 500:
        return KibanaUnavailable
    return KibanaError


def _kibana_message(response: Reply, mask: Masker) -> str:
    """Kibana's messages sometimes quote what was sent (a URL that is not allowed, a value that failed
    validation), so whatever we sent as a secret is masked — before the text is cut, so a cut never
    leaves part of one behind."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        text = mask(response.text.strip())
        return text[:200] + ("..." if len(text) > 200 else "") if text else ""
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str):
            return mask(message)
        error = body.get("error")
        if isinstance(error, str):
            return mask(error)
    return ""


_AUTH_HINT = "check the Kibana credentials (KIBANA_API_KEY, KIBANA_USERNAME/KIBANA_PASSWORD or KIBANA_BEARER_TOKEN)"
_PRIVILEGE_HINT = "the credentials lack a privilege"
_TYPE_DISABLED_HINT = "the type needs a higher licence or is not in xpack.actions.enabledActionTypes"
_README = '(README: "Kibana privileges" gives each key\'s role descriptor)'

# What each request kcr sends needs from Kibana's privileges (Kibana's feature privileges: the
# `actions` feature's read grants get/find and running connectors, its all adds create/update/delete,
# x-pack/platform/plugins/shared/actions/server/feature.ts; rules come with their solution's feature,
# e.g. Stack Rules `stackAlerts`; spaces are listed where the credentials hold any privilege,
# x-pack/platform/plugins/shared/security/server/spaces/secure_spaces_client_wrapper.ts).
_ACTIONS_READ = "the `read` privilege on Actions and Connectors (`feature_actions.read`)"
_ACTIONS_ALL = "the `all` privilege on Actions and Connectors (`feature_actions.all`)"
_READ_ADVICE = f"plan and drift need a key with `feature_actions.read` in every space they read {_README}"
_WRITE_ADVICE = ("a read-only key is for plan and drift; apply needs a key with `feature_actions.all` in every "
                 f"space it changes {_README}")


def _refusal(method: str, path: str) -> tuple[str, str, str] | None:
    """(what was refused, what it needs, what to do) for a 403 on one of kcr's requests, from the
    method and path alone; None for a path kcr does not send."""
    m = re.match(r"^(?:/s/([^/]+))?(/api/.*)$", path)
    if m is None:
        return None
    space, route = unquote(m.group(1) or "default"), m.group(2)
    where = f"in space `{space}`"
    if route == "/api/spaces/space" or route.startswith("/api/spaces/space/"):
        return ("list the spaces" if route == "/api/spaces/space" else f"read space {unquote(route[18:])}",
                "a Kibana privilege in each space kcr manages (Kibana lists only the spaces the credentials hold "
                "one in)", _READ_ADVICE)
    if route == "/api/alerting/rules/_find":
        return (f"find the rules that use a connector {where}",
                f"the `read` privilege {where} on the Kibana feature of those rules (`feature_stackAlerts.read` for "
                "Stack rules; each solution's own feature for its rules)",
                f"kcr reads them to name the rules a delete would break {_README}")
    if route == "/api/actions/connectors" and method == "GET":
        return f"list the connectors {where}", f"{_ACTIONS_READ} {where}", _READ_ADVICE
    m = re.match(r"^/api/actions/connector(?:/([^/]+))?(/_execute)?$", route)
    if m is None:
        return None
    id, execute = unquote(m.group(1) or ""), m.group(2)
    connector = f"connector {id} {where}" if id else f"a connector {where}"
    if execute and method == "POST":
        return (f"run {connector}", f"{_ACTIONS_READ} {where}, which includes running connectors",
                f"kcr test needs a key with `feature_actions.read` {_README}")
    verb = {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}.get(method)
    if verb is None or execute:
        return None
    if verb == "read":
        return f"read {connector}", f"{_ACTIONS_READ} {where}", _READ_ADVICE
    return f"{verb} {connector}", f"{_ACTIONS_ALL} {where}", _WRITE_ADVICE


def _forbidden_text(method: str, path: str, response: Reply, message: str) -> str | None:
    """A 403 on a known request: what was refused and the privilege it needs, from the status and the
    request alone; Kibana's message can only add a hint (`Unauthorized to ...`: the credentials lack it;
    `action type ...`: the type is disabled by licence or config)."""
    refusal = _refusal(method, path)
    if refusal is None:
        return None
    what, needs, advice = refusal
    said = f"{response.status_code} {response.reason_phrase}".rstrip() + (f": {message}" if message else "")
    text = f"Kibana refused to {what} ({said}; {method} {path}): "
    if message.startswith("Unauthorized to"):
        return text + f"{_PRIVILEGE_HINT}: this needs {needs}; {advice}"
    text += f"this needs {needs}"
    if message.lower().startswith("action type "):
        text += f"; if the credentials have it, {_TYPE_DISABLED_HINT}"
    return text


def _hint(status: int, message: str) -> str | None:
    """Kibana answers 403 both for a missing privilege and for a type the licence or the config
    disables; the two need different fixes, told apart by the message's prefix. Only the hint depends
    on the wording: the error type follows the status alone."""
    if status == 401:
        return _AUTH_HINT
    if status == 403:
        if message.startswith("Unauthorized to"):
            return f"{_PRIVILEGE_HINT}: the user needs the Actions and Connectors feature (all) in this space"
        if message.lower().startswith("action type "):
            return _TYPE_DISABLED_HINT
    return None


def error_for(method: str, path: str, response: Reply, mask: Masker) -> KibanaError:
    status = response.status_code
    message = _kibana_message(response, mask)
    forbidden = _forbidden_text(method, path, response, message) if status == 403 else None
    if forbidden is not None:
        return _status_error(status)(forbidden, status)
    text = f"{method} {path}: Kibana answered {status} {response.reason_phrase}".rstrip()
    if message:
        text += f": {message}"
    hint = _hint(status, message)
    if hint:
        text += f" ({hint})"
    return _status_error(status)(text, status)


def malformed(method: str, path: str, what: str) -> KibanaError:
    return KibanaError(f"{method} {path}: Kibana's answer is not what kcr expects ({what}); is the URL a Kibana?")


def refuse_tls_failure(method: str, path: str, exc: httpx.HTTPError) -> None:
    """A certificate that does not verify fails the same way every time: no retry, and the message
    names the fix instead of blaming the network."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return
    detail = cause.verify_message or str(cause)
    raise KibanaUnavailable(
        f"{method} {path}: TLS certificate verification failed ({detail}); if Kibana uses a private CA, "
        "set KIBANA_CA_CERT to the CA's PEM file (KIBANA_INSECURE=true disables verification: never in production)"
    ) from None


def describe(exc: httpx.HTTPError) -> str:
    # httpx messages name the host and the OS error, never headers or bodies.
    text = str(exc) or "no detail"
    return text[:200]


# --------------------------------------------------------------------------------------------
# Answers


# Kibana 7.x's legacy /api/actions answered in camelCase; a snake_case twin missing means that shape.
_SHAPE_7X = {
    "actionTypeId": "connector_type_id",
    "referencedByCount": "referenced_by_count",
    "isPreconfigured": "is_preconfigured",
    "isMissingSecrets": "is_missing_secrets",
    "isDeprecated": "is_deprecated",
}
_FLAGS = ("is_preconfigured", "is_system_action", "is_deprecated")


def _refuse_7x_shape(method: str, path: str, body: Mapping[str, Any]) -> None:
    """Read as 8.x, a 7.x connector has no type and no reference count: every one would look new or
    unused. Saying which Kibana kcr supports is the fix, not "malformed"."""
    for camel, snake in _SHAPE_7X.items():
        if camel in body and snake not in body:
            raise KibanaError(
                f"{method} {path}: Kibana answered in the 7.x shape ({camel}): kcr supports Kibana 8.x and "
                "later's /api/actions/connectors; upgrade Kibana, or check that KIBANA_URL reaches Kibana 8 and "
                "not an older one"
            )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_TYPE_FLAGS = ("enabled", "enabled_in_config", "enabled_in_license")


def type_field_error(item: Mapping[str, Any]) -> str | None:
    """Why a connector_types entry cannot be trusted, or None. The flags decide whether a plan may
    send a type: each must be there and be a boolean (a string "false" is not false)."""
    for key in ("name", "minimum_license_required"):
        if not isinstance(item.get(key), str):
            return f"has no {key} string"
    for flag in _TYPE_FLAGS:
        if not isinstance(item.get(flag), bool):
            return f"has no boolean {flag}"
    system = item.get("is_system_action_type", False)  # absent before Kibana 8.13: no system types then
    if not isinstance(system, bool):
        return "has an is_system_action_type that is not a boolean"
    return None


def connector_type(path: str, item: Any) -> ConnectorTypeInfo:
    """One entry of GET .../connector_types, checked before a plan trusts its flags."""
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        raise malformed("GET", path, "a connector type without an id")
    problem = type_field_error(item)
    if problem is not None:
        raise malformed("GET", path, f"connector type {item['id']!r} {problem}")
    return ConnectorTypeInfo(
        id=item["id"],
        name=item["name"],
        enabled=item["enabled"],
        enabled_in_config=item["enabled_in_config"],
        enabled_in_license=item["enabled_in_license"],
        minimum_license_required=item["minimum_license_required"],
        is_system_action_type=item.get("is_system_action_type", False),
    )


def connector_field_error(body: Mapping[str, Any], *, listed: bool) -> str | None:
    """What is wrong with one connector of an answer, or None. Nothing a safety decision reads is
    defaulted: a connector without a type or name, or a list entry without referenced_by_count, would
    otherwise plan a recreate or a delete from a fact Kibana never stated."""
    cid = body.get("id")
    if cid is None:
        return "a connector without an id"
    if not isinstance(cid, str) or not cid:
        return "a connector whose id is not a non-empty string"
    unaddressable = id_segment_problem(cid, "a connector id")
    if unaddressable is not None:  # kcr could neither address it nor load a plan that names it
        return unaddressable
    problem = _field_problem(body, listed)
    return None if problem is None else f"connector {cid!r} {problem}"  # named only when refused


def _field_problem(body: Mapping[str, Any], listed: bool) -> str | None:
    for key in ("connector_type_id", "name"):
        value = body.get(key)
        if value is None:
            return f"has no {key}"
        if not isinstance(value, str) or (key == "connector_type_id" and not value):
            return f"has a {key} that is not a{' non-empty' if key == 'connector_type_id' else ''} string"
    config = body.get("config")
    if config is not None and not _is_object(config):
        return "has a config that is not an object"
    for flag in _FLAGS:  # absent is false (older Kibanas lack is_system_action); present must be a boolean
        if flag in body and not isinstance(body[flag], bool):
            return f"has an {flag} that is not a boolean"
    missing_secrets = body.get("is_missing_secrets")  # absent or null for preconfigured connectors
    if missing_secrets is not None and not isinstance(missing_secrets, bool):
        return "has an is_missing_secrets that is not a boolean"
    count = body.get("referenced_by_count")
    if count is None:
        return "has no referenced_by_count, which the list must carry" if listed else None
    if not _is_count(count):
        return "has a referenced_by_count that is not a non-negative integer"
    return None


def _is_object(value: Any) -> bool:
    """A JSON object: the dict json.loads makes, named first so that it is decided before the abstract
    Mapping check (which costs more than the rest of a connector's checks), or any other Mapping."""
    return isinstance(value, (dict, Mapping))


def live_connector(method: str, path: str, body: Any, *, listed: bool = False) -> LiveConnector:
    """One connector of an answer, checked field by field. `listed`: it comes from
    GET .../api/actions/connectors, the only answer that carries referenced_by_count."""
    if not _is_object(body):
        raise malformed(method, path, "expected a connector object")
    _refuse_7x_shape(method, path, body)
    problem = connector_field_error(body, listed=listed)
    if problem is not None:
        raise malformed(method, path, problem)
    return LiveConnector.from_api(body)


def refuse_repeated_ids(path: str, connectors: Sequence[LiveConnector]) -> None:
    """Kibana's list holds each connector once; an id twice means something between kcr and Kibana
    mangled the answer, and the planner would keep only one of the two."""
    twice = sorted(cid for cid, n in Counter(c.id for c in connectors).items() if n > 1)
    if twice:
        raise KibanaError(
            f"GET {path}: Kibana's list names connector id{'s' if len(twice) > 1 else ''} {', '.join(twice[:5])}"
            f"{' ...' if len(twice) > 5 else ''} more than once, which Kibana never does: something between kcr "
            "and Kibana (a proxy or cache) is rewriting the answer; nothing was planned. Check KIBANA_URL points at "
            "Kibana itself and re-run"
        )


def refuse_ids_in_several_spaces(lists: Mapping[str, Sequence[LiveConnector]]) -> None:
    """Connector ids are global across spaces; only preconfigured connectors (and system actions) are
    listed in every space. The same saved-object id in two spaces' lists means the answers are wrong,
    typically a proxy or basePath rewrite that drops `/s/<space>` so every space returns the default
    space's list: planning from that would create in, or prune from, the wrong space."""
    spaces_of: dict[str, list[str]] = {}
    for space, connectors in lists.items():
        for conn in connectors:
            if not (conn.is_preconfigured or conn.is_system_action):
                spaces_of.setdefault(conn.id, []).append(space)
    shared = dict(sorted((cid, spaces) for cid, spaces in spaces_of.items() if len(spaces) > 1))
    if not shared:
        return
    shown = "; ".join(f"{cid} in {', '.join(spaces)}" for cid, spaces in list(shared.items())[:5])
    more = f" (and {len(shared) - 5} more)" if len(shared) > 5 else ""
    spaces = sorted({s for ss in shared.values() for s in ss})
    raise KibanaError(
        f"GET .../api/actions/connectors listed the same connector id in several spaces: {shown}{more}. Connector "
        "ids are global across spaces, so these answers are wrong, most likely a proxy or server.basePath rewrite "
        f"that drops /s/<space> so spaces {', '.join(spaces)} all get the default space's list; nothing was "
        "planned. Check that KIBANA_URL reaches Kibana without rewriting /s/<space> (e.g. GET "
        "<url>/s/<space>/api/actions/connectors returns that space's connectors)"
    )


__all__ = [
    "connector_field_error",
    "connector_type",
    "describe",
    "error_for",
    "live_connector",
    "malformed",
    "refuse_ids_in_several_spaces",
    "refuse_repeated_ids",
    "refuse_tls_failure",
    "type_field_error",
]
