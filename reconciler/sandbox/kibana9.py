"""Where Kibana 9.x answers otherwise than 8.x, in 9.x's words; the seed's `kibana_version` chooses.

Two lines of behaviour, because Kibana's wording changed in one step: 9.3 moved every stack connector's
config and secrets schemas from `@kbn/config-schema` to zod (src/platform/packages/shared/
kbn-connector-schemas; its schema tests were backported to 9.3.1, elastic/kibana#251877). Since then
`validate_with_schema.ts` (x-pack/platform/plugins/shared/actions/server/lib) names the part
`connector type config|secrets` and formats a ZodError with `format_zod_error.ts` (every failing field,
`Field "<path>": <reason>`, numbered when more than one); `validateConnector` still says
`error validating action type connector`. Releases 9.0-9.2 answer as 8.x did, so "8.x" here means
"before the zod schemas" and an exact version picks its line by that threshold.

This module only words: what is refused, and in which order, stays `type_rules`' and the catalogue's.
Messages never quote a submitted value that may be a secret."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler import catalog

LINE_8 = "8.x"
LINE_9 = "9.x"
# A line given as the seed's kibana_version stands for one release: what `kbn-version` must equal and
# GET /api/status reports. 9.4.0 is the version on Kibana main when #251877 was labelled (v9.4.0).
LINE_VERSIONS = {LINE_8: "8.19.0", LINE_9: "9.4.0"}
_ZOD_FROM = (9, 3)
_VERSION = re.compile(r"^(\d+)\.(\d+)")
ALLOWED_HOSTS_PHRASE = "is not added to the Kibana config xpack.actions.allowedHosts"


def resolve_version(raw: str) -> str:
    """The exact version a seed's `kibana_version` names ("8.x" and "9.x" stand for one release)."""
    return LINE_VERSIONS.get(raw, raw)


def line_of(version: str) -> str:
    """The behaviour line of an exact version: 9.x from the zod schemas (9.3) on, else 8.x."""
    match = _VERSION.match(version)
    if match is None:
        return LINE_8
    return LINE_9 if (int(match[1]), int(match[2])) >= _ZOD_FROM else LINE_8


def prefix(line: str, part: str) -> str:
    """validate_with_schema.ts: `connector type` for config and secrets in 9.x; the connector-level
    check keeps `action type connector` in every release."""
    if line == LINE_9 and part in ("config", "secrets"):
        return f"error validating connector type {part}"
    return f"error validating action type {part}"


def reprefix(message: str, line: str) -> str:
    """A type_rules message (worded as 8.x) with the line's prefix."""
    for part in ("config", "secrets"):
        old = f"error validating action type {part}: "
        if message.startswith(old):
            return f"{prefix(line, part)}: {message[len(old):]}"
    return message


# ---- allowedHosts refusals, wrapped as each type's validator wraps ensureUriAllowed's error -------------
# The wrapping is the type's own validator code, not its schema library, so both lines wrap alike: the
# 8.x-era API tests (x-pack/test/alerting_api_integration/security_and_spaces/group2/tests/actions/
# connector_types/jira.ts, servicenow_itsm.ts, swimlane.ts, opsgenie.ts, tines.ts, xsoar.ts, d3security.ts,
# thehive.ts, pagerduty.ts, openai.ts, gemini.ts) expect `error validating action type config: <wrapper>
# target url ...` where main's (x-pack/platform/test/...) expect `error validating connector type config:`
# and the same wrapper.

_SUB_ACTION_URL = "error validating url: {msg}"  # sub_action_framework/helpers/validators.ts urlAllowListValidator
_CONNECTOR_ACTION = "error configuring connector action: {msg}"
HOSTS_WRAPPERS: Mapping[str, str] = {
    # jira/translations.ts, servicenow translations WHITE_LISTED_ERROR; swimlane.ts, jira.ts and
    # servicenow_itsm.ts API tests
    ".jira": _CONNECTOR_ACTION, ".servicenow": _CONNECTOR_ACTION, ".servicenow-sir": _CONNECTOR_ACTION,
    ".servicenow-itom": _CONNECTOR_ACTION, ".swimlane": _CONNECTOR_ACTION,
    ".cases-webhook": "error configuring cases webhook action: {msg}",  # cases_webhook.ts API test
    ".torq": "error configuring send to Torq action: {msg}",  # torq.ts API test
    ".xmatters": "Error configuring xMatters action: {msg}",  # xmatters.ts API test
    ".webhook": "error validation webhook action config: {msg}",  # webhook/validations.ts ensureUriAllowed
    ".http": "error validation http action config: {msg}",  # http/validations.ts ensureUriAllowed
    ".teams": "error configuring teams action: {msg}",  # teams/index.ts validateConnectorTypeConfig
    ".pagerduty": "error configuring pagerduty action: {msg}",  # pagerduty/index.ts; pagerduty.ts API test
    ".slack": "error configuring slack action: {msg}",  # slack/index.ts validateConnectorTypeSecrets
    ".slack_api": "error configuring slack action: {msg}",  # slack_api/index.ts validateSlackUrl
    ".gen-ai": "Error configuring OpenAI action: Error: error validating url: {msg}",  # openai.ts API test
    ".bedrock": "Error configuring Amazon Bedrock action: Error: error validating url: {msg}",  # bedrock.ts
    ".gemini": "Error configuring Google Gemini action: Error: error validating url: {msg}",  # gemini.ts
    # sub-action framework connectors registering urlAllowListValidator (resilient/index.ts since IBM
    # Resilient moved onto the framework: x-pack/platform/.../connector_types/resilient.ts API test;
    # mcp/index.ts configValidator on serverUrl)
    ".tines": _SUB_ACTION_URL, ".d3security": _SUB_ACTION_URL, ".thehive": _SUB_ACTION_URL,
    ".sentinelone": _SUB_ACTION_URL, ".crowdstrike": _SUB_ACTION_URL, ".opsgenie": _SUB_ACTION_URL,
    ".microsoft_defender_endpoint": _SUB_ACTION_URL, ".xsoar": _SUB_ACTION_URL,
    ".jira-service-management": _SUB_ACTION_URL, ".resilient": _SUB_ACTION_URL, ".mcp": _SUB_ACTION_URL,
}
_QUOTED = re.compile(r'^target (?:url|hostname) "(.*)" ' + re.escape(ALLOWED_HOSTS_PHRASE) + "$")
REDACTED = "[redacted]"


def redacted_origin(url: str) -> str:
    """A secret URL as the sandbox shows it: its origin, then `/[redacted]` (the path and query of a
    Slack, Teams or xMatters URL are its credential)."""
    origin = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*", url)
    return f"{origin[0] if origin else ''}/{REDACTED}"


def wrap_hosts(type_id: str, message: str, shown_url: str | None = None) -> str:
    """`message` (prefix: detail) with an allowedHosts detail wrapped as the type wraps it. Kibana's
    ensureUriAllowed quotes the whole URL (`target url "<url>"`); `shown_url` replaces it where the
    sandbox must not echo it (a secret URL) or where type_rules named a host for a fixed URL."""
    template = HOSTS_WRAPPERS.get(type_id) or HOSTS_WRAPPERS.get(catalog.family(type_id))
    head, sep, detail = message.partition(": ")
    if not sep or _QUOTED.match(detail) is None:
        return message
    if shown_url is not None:
        detail = f'target url "{shown_url}" {ALLOWED_HOSTS_PHRASE}'
    return f"{head}: {template.format(msg=detail) if template else detail}"


def email_hosts(message: str, key: str | None, config: Mapping[str, Any]) -> str:
    """email/index.ts validateConfig's own words for a host not allowed (isHostnameAllowed, not
    ensureUriAllowed; email.ts API test 'with a server not added to allowedHosts')."""
    head, sep, detail = message.partition(": ")
    quoted = _QUOTED.match(detail) if sep else None
    if quoted is None:
        return message
    target = quoted[1]
    if key == "oauthTokenUrl":
        detail = f"[oauthTokenUrl]: host name value for '{target}' is not in the allowedHosts configuration"
    elif key == "host":
        detail = f"[host] value '{target}' is not in the allowedHosts configuration"
    else:
        detail = (f"[service] value '{config.get('service')}' resolves to host '{target}' which is not in the "
                  "allowedHosts configuration")
    return f"{head}: {detail}"


# ---- zod's detail (format_zod_error.ts) from JSON Schema errors -----------------------------------------

_ZOD_TYPES = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
              "object": "object", "array": "array", "null": "null"}


MISSING: Any = object()  # a key the body does not have: JavaScript's `undefined`


def js_type(value: Any, *, array: str = "array") -> str:
    """JavaScript's name of a value's type as Kibana's validators print it (`typeof`, with null and
    arrays told apart): zod says `array`, config-schema `Array`; a missing key is `undefined`. One
    function for the sandbox's three wordings (validation, sub-actions, zod details)."""
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
    return array if isinstance(value, list) else "object"


def _quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _issue(error: Any) -> tuple[tuple[str, ...], str]:
    """(path, zod v3 message) of one JSON Schema error; an empty path is an object-level issue."""
    path = tuple(str(p) for p in error.absolute_path)
    v = error.validator
    if v == "required":  # one error per missing property, named in its message ('x' is a required property)
        named = re.match(r"^'(.+)' is a required property$", str(error.message))
        missing = named[1] if named else next((r for r in error.validator_value if r not in (error.instance or {})),
                                              "?")
        return (*path, str(missing)), "Required"
    if v == "additionalProperties":
        extra = sorted(set(error.instance or {}) - set(error.schema.get("properties") or {}))
        return path, "Unrecognized key(s) in object: " + ", ".join(f"'{k}'" for k in extra)
    if v == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        wanted = [w for w in wanted if w != "null"] or wanted
        return path, f"Expected {_ZOD_TYPES.get(wanted[0], wanted[0])}, received {js_type(error.instance)}"
    if v == "enum":
        options = " | ".join(_quote(a) for a in error.validator_value if a is not None)
        return path, f"Invalid enum value. Expected {options}, received {_quote(error.instance)}"
    if v == "const":
        return path, f"Invalid literal value, expected {json.dumps(error.validator_value)}"
    if v == "minLength" and error.validator_value == 1:
        return path, "String must contain at least 1 character(s)"
    return path, "Invalid input"


def zod_detail(errors: Iterable[Any], field_order: Sequence[str] = ()) -> str:
    """format_zod_error.ts: object-level issues first, then one `Field "<path>": <reasons>` per field
    in schema order; one issue alone, else `N errors:\\n [1]: ...;\\n [2]: ...` (five shown at most,
    then `and N more`)."""
    rank = {name: i for i, name in enumerate(field_order)}
    roots: list[str] = []
    fields: dict[tuple[str, ...], list[str]] = {}
    for error in errors:
        path, message = _issue(error)
        if not path:
            roots.append(message)
        elif message not in fields.setdefault(path, []):
            fields[path].append(message)
    ordered = sorted(fields.items(), key=lambda item: (rank.get(item[0][0], len(rank)), item[0]))
    messages = roots + [f'Field "{".".join(path)}": {", ".join(reasons)}' for path, reasons in ordered]
    total = len(messages)
    if total > 5:
        messages = [*messages[:5], f"and {total - 5} more"]
    if total == 1:
        return messages[0]
    return f"{total} errors:\n " + ";\n ".join(f"[{i}]: {m}" for i, m in enumerate(messages, 1))
