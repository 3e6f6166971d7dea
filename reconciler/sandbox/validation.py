"""Kibana's layers of request validation, in its order and wording, answered as HTTP 400s.

1. The route body schema (`@kbn/config-schema`): one message, the first failing key in schema order,
   `[request body.<path>]: <reason>`; unknown keys and blank strings are refused.
2. The connector type's config and secrets: the JSON Schemas of schemas/types (via `catalog`) in
   config-schema's words, then Kibana's per-type rules (`reconciler.type_rules`, which `kcr validate`
   reads too): `error validating action type config|secrets|connector: <detail>`. In the 9.x line
   (`kibana9`: the zod schemas of Kibana 9.3+) config and secrets are `connector type`, the schema's
   detail is zod's (every failing field). In both lines an allowedHosts refusal is wrapped as the type's
   validator wraps it (`kibana9.HOSTS_WRAPPERS`).

The rules are the product's; this module only turns their first finding into Kibana's 400 and adds
what only a server does (the stored form of a config). Messages never quote a submitted value: a
secret would travel back into a client's error text."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import catalog, type_rules
from reconciler.jsurl import js_trim
from reconciler.sandbox import kibana9
from reconciler.sandbox.http import HttpError

_MISSING: Any = kibana9.MISSING


@dataclass(frozen=True)
class Field:
    key: str
    kind: str  # "string" | "object" | "array" | "boolean" | "any"
    required: bool = False
    no_blanks: bool = False  # Kibana's validateEmptyStrings, recursive for objects
    items: str | None = None  # for arrays: the kind of every item


CREATE_CONNECTOR = (
    Field("name", "string", True, True),
    Field("connector_type_id", "string", True, True),
    Field("config", "object", no_blanks=True),
    Field("secrets", "object", no_blanks=True),
)
UPDATE_CONNECTOR = (
    Field("name", "string", True, True),
    Field("config", "object", no_blanks=True),
    Field("secrets", "object", no_blanks=True),
)
EXECUTE = (Field("params", "object", True),)


def js_type(value: Any) -> str:
    """The type name config-schema prints (`typeof`, with null and Array told apart)."""
    return kibana9.js_type(value, array="Array")


def _has_blank(value: Any) -> bool:
    if isinstance(value, str):
        return not js_trim(value)
    if isinstance(value, Mapping):
        return any(_has_blank(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_blank(v) for v in value)
    return False


def _bad(path: str, reason: str) -> HttpError:
    return HttpError(400, f"[request body.{path}]: {reason}")


def kind_ok(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    return True


def check_body(body: Any, fields: Sequence[Field], *, allow_unknown: bool = False) -> dict[str, Any]:
    """The validated body with object defaults (`{}`) filled; raises the first failure as Kibana would."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise HttpError(400, f"[request body]: expected a plain object value, but found [{js_type(body)}] instead.")
    out: dict[str, Any] = {}
    for f in fields:
        value = body.get(f.key, _MISSING)
        if value is _MISSING:
            if f.required:
                raise _bad(f.key, f"expected value of type [{f.kind}] but got [undefined]")
            if f.kind == "object":
                out[f.key] = {}
            continue
        if not kind_ok(f.kind, value):
            raise _bad(f.key, f"expected value of type [{f.kind}] but got [{js_type(value)}]")
        if f.items is not None:
            for i, item in enumerate(value):
                if not kind_ok(f.items, item):
                    raise _bad(f"{f.key}.{i}", f"expected value of type [{f.items}] but got [{js_type(item)}]")
        if f.no_blanks:
            if isinstance(value, dict):
                for k, v in value.items():
                    if _has_blank(v):
                        raise _bad(f"{f.key}.{k}", "value '' is not valid")
            elif _has_blank(value):
                raise _bad(f.key, "value '' is not valid")
        out[f.key] = value
    if not allow_unknown:
        known = {f.key for f in fields}
        for key in body:
            if key not in known:
                raise _bad(str(key), "definition for this key is missing")
    else:
        out.update({k: v for k, v in body.items() if k not in out})
    return out


def _detail(error: Any) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    validator = error.validator
    if validator == "required":
        missing = next((r for r in error.validator_value if r not in (error.instance or {})), "?")
        full = f"{path}.{missing}" if path else str(missing)
        return f"[{full}]: expected value of type [string] but got [undefined]"
    if validator == "additionalProperties":
        extra = sorted(set(error.instance or {}) - set(error.schema.get("properties") or {}))
        key = extra[0] if extra else "?"
        return f"[{path + '.' if path else ''}{key}]: definition for this key is missing"
    if validator == "type":
        expected = error.validator_value if isinstance(error.validator_value, str) else "|".join(error.validator_value)
        return f"[{path}]: expected value of type [{expected}] but got [{js_type(error.instance)}]"
    if validator in ("enum", "const"):
        allowed = error.validator_value if validator == "enum" else [error.validator_value]
        return f"[{path}]: expected one of [{', '.join(str(a) for a in allowed)}]"
    return f"[{path}]: failed validation ({validator})"


def _schema_errors(type_id: str, part: str, filled: Mapping[str, Any], line: str) -> list[Any]:
    errors = list(catalog.validator(type_id, part).iter_errors(filled))
    if catalog.family(type_id) == catalog.WEBHOOKS and part == "config":
        # Kibana's webhook validator checks "authType with hasAuth false" after the URL checks, in its
        # own words (type_rules' after-hosts rules); the catalogue's if/then must not pre-empt it.
        errors = [e for e in errors if list(e.absolute_path) != ["authType"] or e.validator != "type"]
        if line == kibana9.LINE_9 and type_id == ".webhook":
            # 9.x: the OAuth2 fields are optional in the zod schema; the custom validator names the
            # missing ones after the URL checks (`_webhook_oauth2`).
            errors = [e for e in errors if not _oauth2_field_error(e)]
    if (type_id, part) == (".gen-ai", "secrets") and isinstance(filled, Mapping):
        errors = [e for e in errors if list(e.absolute_path) or e.validator != "anyOf"]
    return errors


def _oauth2_field_error(error: Any) -> bool:
    path = list(error.absolute_path)
    return (error.validator == "required" and set(error.validator_value) == set(_OAUTH2_FIELDS)) or \
        (bool(path) and path[0] in _OAUTH2_FIELDS and error.validator == "minLength")


# webhook/index.test.ts (Kibana main), describe('OAuth2 Client Credentials')
_OAUTH2 = "webhook-oauth2-client-credentials"
_OAUTH2_FIELDS = {"accessTokenUrl": "Access Token URL", "clientId": "Client ID"}
_WEBHOOK_SECRETS = ("must specify one of the following schemas: user and password; crt and key (with optional "
                    "password); pfx (with optional password); or clientSecret (for OAuth2)")
_WEBHOOK_CONFIG = "error validation webhook action config"


def _webhook_oauth2(config: Mapping[str, Any], line: str) -> str | None:
    """The webhook validator's OAuth2 client-credentials checks (webhook/index.test.ts: the missing
    fields, then `additionalFields`, which must be the JSON text of a non-empty object)."""
    if config.get("authType") != _OAUTH2:
        return None
    missing = [f"{label} ({key})" for key, label in _OAUTH2_FIELDS.items() if not config.get(key)]
    if missing and line == kibana9.LINE_9:
        # Kibana's test names both fields ("... fields"); the wording for one alone was not seen.
        return f"{_WEBHOOK_CONFIG}: missing {', '.join(missing)} field{'s' if len(missing) > 1 else ''}"
    extra = config.get("additionalFields")
    if isinstance(extra, str):
        try:
            parsed = json.loads(extra)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not parsed:
            return f"{_WEBHOOK_CONFIG}: additionalFields must be a non-empty JSON object."
    return None


_SN_OAUTH_CONFIG = ("clientId", "userIdentifierValue", "jwtKeyId")


def _servicenow_auth(part: str, value: Mapping[str, Any]) -> str | None:
    """ServiceNow's own auth messages, in place of the schema's (servicenow_sir.ts API test, 'OAuth
    connector with missing fields' and 'without secrets'; the same validators serve every ServiceNow type)."""
    if part == "config":
        if value.get("isOAuth") is True:
            for key in _SN_OAUTH_CONFIG:
                if not value.get(key):
                    return f"{key} must be provided when isOAuth = true"
        return None
    if bool(value.get("clientSecret")) != bool(value.get("privateKey")):
        return "clientSecret and privateKey must both be specified"
    if not (value.get("username") and value.get("password")) and not value.get("clientSecret"):
        return "Either basic auth or OAuth credentials must be specified"
    return None


def _schema_refusal(type_id: str, part: str, errors: list[Any], line: str,
                    filled: Mapping[str, Any] | None = None) -> str:
    if catalog.family(type_id) == catalog.SERVICENOW and filled is not None \
            and (detail := _servicenow_auth(part, filled)) is not None:
        return detail
    if type_id == ".webhook" and part == "secrets" and any(e.validator == "anyOf" and not list(e.absolute_path)
                                                          for e in errors):
        # webhook secrets schema's object-level check (webhook/index.test.ts), one message in both lines
        return _WEBHOOK_SECRETS
    if line == kibana9.LINE_9:
        ct = catalog.get(type_id)
        order = list((ct.schema(part).get("properties") or {}) if ct else ())
        return kibana9.zod_detail(errors, order)
    import jsonschema.exceptions  # deferred: only failures pay for it

    return _detail(jsonschema.exceptions.best_match(errors))


def _shown_url(type_id: str, finding: type_rules.Finding, filled: Mapping[str, Any] | None) -> str | None:
    """The URL an allowedHosts refusal quotes, where type_rules' words differ from Kibana's: a secret URL
    (Kibana quotes it whole; the sandbox shows its origin only) and a fixed URL that type_rules names
    by host (`.slack_api`'s API endpoint, slack_api/index.ts ensureUriAllowed(SLACK_URL))."""
    if not finding.path or finding.path[0] != "secrets":
        return None
    if len(finding.path) > 1:
        value = (filled or {}).get(finding.path[1])
        return kibana9.redacted_origin(value) if isinstance(value, str) else None
    ct = catalog.get(type_id)
    fixed = ct.fixed_urls("secrets") if ct else ()
    return fixed[0] if fixed else None


def _refuse(findings: Sequence[type_rules.Finding], type_id: str = "", line: str = kibana9.LINE_8,
            filled: Mapping[str, Any] | None = None) -> None:
    """Kibana answers the first rule broken with a 400 in its words (each step returns at most one):
    the line's prefix, and an allowedHosts detail wrapped as the type's validator wraps it."""
    if findings:
        finding = findings[0]
        message = kibana9.reprefix(finding.message, line)
        if type_id == ".email":
            key = finding.path[1] if len(finding.path) > 1 else None
            message = kibana9.email_hosts(message, key, filled or {})
        else:
            message = kibana9.wrap_hosts(type_id, message, _shown_url(type_id, finding, filled))
        raise HttpError(400, message)


_GEMINI_SECRETS = "Error configuring Google Gemini secrets: "
_PLAIN_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _gemini_secrets(secrets: Mapping[str, Any]) -> str | None:
    """gemini/validators.ts validateGeminiSecrets, wrapped by gemini/index.ts secretsValidator
    (`Error configuring Google Gemini secrets: ${err.toString()}`). The credential `type` is quoted
    only when it is a plain word: the rest of the JSON is a private key."""
    text = secrets.get("credentialsJson")
    if not isinstance(text, str):
        return None  # the schema refused it already
    try:
        credentials = json.loads(text)
    except ValueError:
        return f"{_GEMINI_SECRETS}Error: Invalid JSON format for credentials."
    if credentials is None:
        return f"{_GEMINI_SECRETS}TypeError: Cannot read properties of null (reading 'type')"
    kind = credentials.get("type") if isinstance(credentials, dict) else None
    if kind == "service_account":
        return None
    shown = "undefined" if kind is None else str(kind).lower() if isinstance(kind, bool) else \
        str(kind) if _PLAIN_WORD.match(str(kind)) else kibana9.REDACTED
    return (f'{_GEMINI_SECRETS}Error: Invalid credential type. Only "service_account" credentials are '
            f'supported. Type was "{shown}".')


def validate_part(type_id: str, part: str, value: Mapping[str, Any], allowed_hosts: Sequence[str],
                  *, current: bool = True, line: str = kibana9.LINE_8) -> dict[str, Any]:
    """Config or secrets as Kibana stores them (defaults filled), or a 400 with Kibana's prefix.
    `current` adds the defaults newer releases store (webhook `authType`); `line` words the refusal."""
    filled = catalog.with_defaults(type_id, part, value)
    errors = _schema_errors(type_id, part, filled, line)
    if errors:
        raise HttpError(400, f"{kibana9.prefix(line, part)}: {_schema_refusal(type_id, part, errors, line, filled)}")
    if (type_id, part) == (".gemini", "secrets") and (detail := _gemini_secrets(filled)):
        raise HttpError(400, f"{kibana9.prefix(line, part)}: {detail}")
    _refuse(type_rules.part_rules(type_id, part, filled, allowed_hosts), type_id, line, filled)
    if type_id == ".webhook" and part == "config" and (detail := _webhook_oauth2(filled, line)):
        raise HttpError(400, f"{kibana9.prefix(line, part)}: {detail}")
    return _stored(type_id, part, filled, current=current, line=line)


def _stored(type_id: str, part: str, filled: dict[str, Any], *, current: bool, line: str) -> dict[str, Any]:
    """What Kibana saves of a valid config: unknown keys dropped where its schema is not strict (zod
    without .strict()), and the webhook `authType` that 8.x releases with the field fill in."""
    ct = catalog.get(type_id)
    if part == "config" and ct is not None and ct.strips_unknown:
        known = set(ct.config_schema.get("properties") or {})
        filled = {k: v for k, v in filled.items() if k in known}
    if current and line == kibana9.LINE_8 and part == "config" and catalog.family(type_id) == catalog.WEBHOOKS \
            and filled.get("hasAuth") is True and "authType" not in filled:
        # Releases with config-schema store basic auth for `hasAuth: true` with no authType (webhook.ts
        # API tests expect `authType: 'webhook-authentication-basic'`); 9.x's zod schema
        # (kbn-connector-schemas) declares authType optional with no default, so nothing is stored.
        filled["authType"] = "webhook-authentication-basic"
    return filled


def check_config_values(type_id: str, raw_config: Mapping[str, Any], line: str = kibana9.LINE_8) -> None:
    """Config rules the JSON Schema leaves open (a free-string field with a closed set of values)."""
    _refuse(type_rules.closed_values(type_id, raw_config), type_id, line)


def validate_connector(type_id: str, raw_config: Mapping[str, Any], config: Mapping[str, Any],
                       secrets: Mapping[str, Any], raw_secrets: Mapping[str, Any] | None = None) -> None:
    """Kibana's per-type `validateConnector`, run after config and secrets (`type_rules.connector_rules`)."""
    _refuse(type_rules.connector_rules(type_id, raw_config, config, secrets, raw_secrets))
