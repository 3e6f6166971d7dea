"""Kibana's two layers of request validation, in its order and wording.

1. The route body schema (`@kbn/config-schema`): one message, the first failing key in schema order,
   `[request body.<path>]: <reason>`; unknown keys and blank strings are refused.
2. The connector type's config and secrets (the JSON Schemas of schemas/types via `catalog`), then the
   allowed-hosts check: `error validating action type config|secrets: <detail>`.

Messages never quote a submitted value: a secret would travel back into a client's error text."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from reconciler import catalog
from reconciler.normalize import STRIPS_UNKNOWN
from reconciler.sandbox.http import HttpError

_MISSING: Any = object()
_FIELD_REF = re.compile(r"^(config|secrets)\.([A-Za-z0-9_]+)")


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
    if value is _MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "Array"
    return "object"


# ECMAScript WhiteSpace + LineTerminator: what `String.prototype.trim` strips (Python's str.strip also
# strips U+001C-U+001F and U+0085, and keeps U+FEFF).
JS_WHITESPACE = ("\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                 "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")


def js_trim(value: str) -> str:
    return value.strip(JS_WHITESPACE)


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


_BARE_HOST = re.compile(r"^[A-Za-z0-9._-]+$|^\[?[0-9A-Fa-f:.]+\]?$")


def _host_of(value: str) -> str | None:
    """The host of a URL, or of a bare host name; None when there is none. Never the raw value of
    something that is not a host name: for a secret that would echo the secret into a message."""
    if "://" not in value:
        bare = js_trim(value).lower()
        return bare if _BARE_HOST.match(bare) else None
    try:
        return (_js_url(value).hostname or "").lower() or None
    except ValueError:
        return None


def host_allowed(value: str, allowed_hosts: Sequence[str]) -> bool:
    if "*" in allowed_hosts:
        return True
    host = _host_of(value)
    return host is not None and host in {h.lower() for h in allowed_hosts}


def checked_fields(type_id: str, part: str) -> list[str]:
    """The keys of `part` whose URL Kibana checks against xpack.actions.allowedHosts. Descriptive
    entries of the catalogue that name no field (fixed URLs, derived hosts) are skipped."""
    ct = catalog.get(type_id)
    out = []
    for entry in ct.allowed_hosts_checked if ct else ():
        m = _FIELD_REF.match(entry)
        if m and m.group(1) == part:
            out.append(m.group(2))
    return out


# Hosts Kibana checks that no field names: fixed endpoints, and hosts a field implies.
_FIXED_URLS: Mapping[tuple[str, str], str] = {
    (".slack_api", "secrets"): "https://slack.com/api/",
}
_DEFAULT_URLS: Mapping[tuple[str, str, str], str] = {
    (".pagerduty", "config", "apiUrl"): "https://events.pagerduty.com/v2/enqueue",
}
# A few nodemailer well-known services (the email type resolves config.service to a host).
_EMAIL_SERVICE_HOSTS: Mapping[str, str] = {
    "gmail": "smtp.gmail.com",
    "outlook365": "smtp.office365.com",
    "hotmail": "smtp-mail.outlook.com",
    "yahoo": "smtp.mail.yahoo.com",
    "fastmail": "smtp.fastmail.com",
    "zoho": "smtp.zoho.com",
}


def _implied_urls(type_id: str, part: str, value: Mapping[str, Any]) -> list[str]:
    urls = [url for (t, p), url in _FIXED_URLS.items() if (t, p) == (type_id, part)]
    urls += [url for (t, p, key), url in _DEFAULT_URLS.items() if (t, p) == (type_id, part) and not value.get(key)]
    if (type_id, part) == (".email", "config"):
        host = _EMAIL_SERVICE_HOSTS.get(str(value.get("service") or "").lower())
        if host:
            urls.append(host)
    return urls


def _pem(value: Any, label: str, marker: str) -> str | None:
    import base64
    import binascii

    try:
        text = base64.b64decode(str(value), validate=False).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        text = ""
    if f"-----BEGIN {marker}-----" in text or (marker == "PRIVATE KEY" and "-----BEGIN RSA PRIVATE KEY-----" in text):
        return None
    return (f"Invalid {label} file format: The file must be a PEM-encoded value beginning with "
            f"\"-----BEGIN {marker}-----\".")


def _gen_ai_secrets(value: Mapping[str, Any]) -> str | None:
    """openai/lib/other_openai_utils.ts pkiSecretsValidator / nonPkiSecretsValidator."""
    if any(k in value for k in ("caData", "certificateData", "privateKeyData")):
        if not value.get("certificateData"):
            return "Certificate data must be provided for PKI"
        if not value.get("privateKeyData"):
            return "Private key data must be provided for PKI"
        return (_pem(value["certificateData"], "Certificate data", "CERTIFICATE")
                or _pem(value["privateKeyData"], "Private key data", "PRIVATE KEY")
                or (_pem(value["caData"], "CA certificate data", "CERTIFICATE") if value.get("caData") else None))
    if not value.get("apiKey"):
        return "[apiKey]: expected value of type [string] but got [undefined]"
    return None


def _type_checks(type_id: str, part: str, value: Mapping[str, Any]) -> str | None:
    """Cross-field rules the JSON Schemas cannot say; the detail of the 400, or None."""
    if (type_id, part) == (".gen-ai", "secrets"):
        return _gen_ai_secrets(value)
    if (type_id, part) == (".torq", "config"):
        try:
            _js_url(str(value.get("webhookIntegrationUrl") or ""))
        except ValueError as exc:
            return f"error configuring send to Torq action: unable to parse url: {exc}"
    if (type_id, part) == (".gemini", "secrets") and isinstance(value.get("credentialsJson"), str):
        try:
            kind = json.loads(value["credentialsJson"]).get("type")
        except (ValueError, AttributeError):
            return "[credentialsJson]: must be the JSON text of a service-account key"
        if kind != "service_account":
            return "[credentialsJson]: only service_account credentials are supported"
    return None


def _host_error(prefix: str, part: str, url: str, key: str | None) -> HttpError:
    if part == "config":
        shown = f'target url "{url}"'
    else:
        host = _host_of(url)
        if host is None:  # a secret: name the key, never the value
            return HttpError(400, f"{prefix}: unable to parse host name from {key or 'the URL'}")
        shown = f'target hostname "{host}"'
    return HttpError(400, f"{prefix}: {shown} is not added to the Kibana config xpack.actions.allowedHosts")


# Fields of allowed_hosts_checked that hold a host name, not a URL.
_HOST_NAME_FIELDS = frozenset({(".email", "host")})
# Kibana's per-type words for a URL that does not parse; `{err}` is the JS error, `{key}` the field.
# Secrets never get `{err}` (it quotes the value).
_URL_PARSE_MESSAGES: Mapping[str, str] = {
    ".webhook": "error validation webhook action config: unable to parse url: {err}",
    ".slack": "error configuring slack action: unable to parse host name from {key}",
    ".teams": "error configuring teams action: unable to parse host name from {key}",
}


def _unparsable_url(type_id: str, part: str, key: str, url: str) -> str | None:
    """The detail for a checked URL field that `new URL()` would refuse, or None when it parses."""
    if (type_id, key) in _HOST_NAME_FIELDS:
        return None
    try:
        _js_url(url)
    except ValueError as exc:
        template = _URL_PARSE_MESSAGES.get(type_id)
        if template is None:
            template = ("error validating url: [{key}]: {err}" if part == "config"
                        else "error validating url: unable to parse host name from {key}")
        return template.format(key=key, err=exc if part == "config" else "Invalid URL")
    return None


def _schema_errors(type_id: str, part: str, filled: Mapping[str, Any]) -> list[Any]:
    errors = list(catalog.validator(type_id, part).iter_errors(filled))
    if type_id in _WEBHOOKS and part == "config":
        # Kibana's webhook validator checks "authType with hasAuth false" after the URL checks, in its
        # own words (_webhook_auth_type below); the catalogue's if/then must not pre-empt it.
        errors = [e for e in errors if list(e.absolute_path) != ["authType"] or e.validator != "type"]
    if (type_id, part) == (".gen-ai", "secrets") and isinstance(filled, Mapping):
        errors = [e for e in errors if list(e.absolute_path) or e.validator != "anyOf"]
    return errors


def validate_part(type_id: str, part: str, value: Mapping[str, Any], allowed_hosts: Sequence[str],
                  *, current: bool = True, schema: bool = True) -> dict[str, Any]:
    """Config or secrets as Kibana stores them (defaults filled), or a 400 with Kibana's prefix.
    `current` adds the defaults newer releases store (webhook `authType`); `schema=False` skips the
    JSON Schema (for `kcr validate`, which has checked it already, with positions)."""
    filled = catalog.with_defaults(type_id, part, value)
    errors = _schema_errors(type_id, part, filled) if schema else []
    prefix = f"error validating action type {part}"
    if errors:
        import jsonschema.exceptions  # deferred: only failures pay for it

        best = jsonschema.exceptions.best_match(errors)
        raise HttpError(400, f"{prefix}: {_detail(best)}")
    detail = _type_checks(type_id, part, filled)
    if detail is not None:
        raise HttpError(400, f"{prefix}: {detail}")
    urls: list[tuple[str | None, str]] = [(k, u) for k in checked_fields(type_id, part)
                                          if isinstance(u := filled.get(k), str) and u]
    for key, url in urls:
        detail = _unparsable_url(type_id, part, str(key), url)
        if detail is not None:
            raise HttpError(400, f"{prefix}: {detail}")
    for key, url in urls + [(None, u) for u in _implied_urls(type_id, part, filled)]:
        if not host_allowed(url, allowed_hosts):
            raise _host_error(prefix, part, url, key)
    detail = _after_hosts(type_id, part, filled)
    if detail is not None:
        raise HttpError(400, f"{prefix}: {detail}")
    if part == "config" and type_id in STRIPS_UNKNOWN:  # zod without .strict(): unknown keys dropped
        known = set(catalog.types()[type_id].config_schema.get("properties") or {})
        filled = {k: v for k, v in filled.items() if k in known}
    if current and part == "config" and type_id in _WEBHOOKS and filled.get("hasAuth") is True \
            and "authType" not in filled:
        # Newer releases store basic auth for `hasAuth: true` with no authType (webhook.ts API tests
        # expect `authType: 'webhook-authentication-basic'` in the created config).
        filled["authType"] = "webhook-authentication-basic"
    return filled


_WEBHOOKS = frozenset({".webhook", ".cases-webhook"})
_TORQ_HOSTS = frozenset({"hooks.torq.io", "hooks.eu.torq.io", "localhost"})


_C0_AND_SPACE = "".join(map(chr, range(0x21)))  # what the WHATWG URL parser trims
_FORBIDDEN_HOST = re.compile(r"[\s<>^|%\\\"{}]")


def _js_url(value: str) -> Any:
    """What WHATWG `new URL(value)` accepts, roughly: a scheme; for http(s) a host without forbidden
    code points and a port in range. Raises ValueError with Node's `err.toString()`."""
    invalid = ValueError(f"TypeError: Invalid URL: {value}")
    try:
        parts = urlsplit(value.strip(_C0_AND_SPACE))
        _ = parts.port
    except ValueError:
        raise invalid from None
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*$", parts.scheme or ""):
        raise invalid
    if parts.scheme.lower() in ("http", "https") and (not parts.hostname or _FORBIDDEN_HOST.search(parts.hostname)):
        raise invalid
    return parts


def _after_hosts(type_id: str, part: str, value: Mapping[str, Any]) -> str | None:
    """Per-type config validators that run after the allowedHosts check, in Kibana's words."""
    if part != "config":
        return None
    if type_id == ".torq":
        # stack_connectors/server/connector_types/torq/index.ts validateActionTypeConfig
        url = str(value.get("webhookIntegrationUrl") or "")
        try:
            host = _js_url(url).hostname
        except ValueError as exc:
            return f"error configuring send to Torq action: unable to parse url: {exc}"
        if host not in _TORQ_HOSTS:
            return ("error configuring send to Torq action: url must begin with https://hooks.torq.io or "
                    "https://hooks.eu.torq.io")
    if type_id == ".webhook" and value.get("authType") and not value.get("hasAuth"):
        # stack_connectors/server/connector_types/webhook/index.ts validateAuthType
        return "error validation webhook action config: authType must be null or undefined if hasAuth is false"
    if type_id == ".gen-ai":
        # openai/lib/utils configValidator: assertURL (http(s) with a hostname), wrapped by the type
        url = str(value.get("apiUrl") or "")
        try:
            parts = urlsplit(url)
        except ValueError:
            return "Error configuring OpenAI action: Error: URL Error: Invalid URL"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return ("Error configuring OpenAI action: Error: " +
                    ("Invalid protocol" if parts.hostname else "URL must contain hostname"))
    return None


# nodemailer's well-known services that Kibana accepts as config.service, plus Kibana's own values.
_EMAIL_SERVICES = frozenset({
    "other", "ses", "elastic_cloud", "exchange_server", "__json", "126", "163", "1und1", "aol", "dynectemail",
    "fastmail",
    "gandimail", "gmail", "godaddy", "godaddyasia", "godaddyeurope", "hot.ee", "hotmail", "icloud", "mail.ee",
    "mail.ru", "mailgun", "mailjet", "mandrill", "naver", "openmailbox", "outlook365", "postmark", "qq", "qqex",
    "sendcloud", "sendgrid", "sendinblue", "sendpulse", "ses-us-east-1", "ses-us-west-2", "ses-eu-west-1",
    "sparkpost", "yahoo", "yandex", "zoho",
})
_SERVICENOW = frozenset({".servicenow", ".servicenow-sir", ".servicenow-itom"})
_SN_OAUTH_CONFIG = ("clientId", "userIdentifierValue", "jwtKeyId")
_SN_OAUTH_SECRETS = ("clientSecret", "privateKey")


def _xmatters_connector(config: Mapping[str, Any], secrets: Mapping[str, Any]) -> str | None:
    """stack_connectors/server/connector_types/xmatters/index.ts validateConnector, on the request as
    sent: an omitted usesBasic is falsy there although the stored default is true."""
    if config.get("usesBasic"):
        if secrets.get("secretsUrl"):
            return "secretsUrl should not be provided when usesBasic is true"
        if secrets.get("user") is None:
            return "Provide valid Username"
        if secrets.get("password") is None:
            return "Provide valid Password"
        if config.get("configUrl") is None:
            return "Provide valid configUrl"
        return None
    if secrets.get("user") or secrets.get("password"):
        return "Username and password should not be provided when usesBasic is false"
    if config.get("configUrl"):
        return "configUrl should not be provided when usesBasic is false"
    if secrets.get("secretsUrl") is None:
        return "Provide valid secretsUrl with API Key"
    return None


def _cases_webhook_connector(config: Mapping[str, Any], secrets: Mapping[str, Any]) -> str | None:
    """cases_webhook/validators.ts validateConnector: `hasAuth && isEmpty(secrets)` on the request as
    sent (`{user: null}` is not empty). The i18n.INVALID_AUTH text was not read; this wording is ours."""
    if config.get("hasAuth") and not secrets:
        return "Invalid authentication: hasAuth is true but no secrets were given"
    return None


def _email_connector(raw_config: Mapping[str, Any], secrets: Mapping[str, Any]) -> str | None:
    if raw_config.get("service") == "exchange_server":
        return None if secrets.get("clientSecret") else "[clientSecret] is required"
    if raw_config.get("hasAuth") is True:
        for key in ("user", "password"):
            if not secrets.get(key):
                return f"[{key}] is required"
    return None


def _servicenow_connector(config: Mapping[str, Any], secrets: Mapping[str, Any]) -> str | None:
    if config.get("isOAuth") is True:
        if any(config.get(k) in (None, "") for k in _SN_OAUTH_CONFIG):
            return "clientId, userIdentifierValue and jwtKeyId must not be empty when isOAuth is true"
        if any(not secrets.get(k) for k in _SN_OAUTH_SECRETS):
            return "clientSecret and privateKey must not be empty when isOAuth is true"
        if secrets.get("username") or secrets.get("password"):
            return "Username and password must not be set when isOAuth is true"
        return None
    if not (secrets.get("username") and secrets.get("password")):
        return "username and password must be set when isOAuth is false"
    if any(config.get(k) for k in _SN_OAUTH_CONFIG) or any(secrets.get(k) for k in (*_SN_OAUTH_SECRETS,
                                                                                    "privateKeyPassword")):
        return "OAuth fields (clientId, userIdentifierValue, jwtKeyId, clientSecret, privateKey) must be empty " \
               "when isOAuth is false"
    return None


def check_config_values(type_id: str, raw_config: Mapping[str, Any]) -> None:
    """Config rules the JSON Schema leaves open (a free-string field with a closed set of values)."""
    service = raw_config.get("service")
    if type_id == ".email" and isinstance(service, str) and service.lower() not in _EMAIL_SERVICES:
        raise HttpError(400, f"error validating action type config: [service] value '{service}' is not valid")


def validate_connector(type_id: str, raw_config: Mapping[str, Any], config: Mapping[str, Any],
                       secrets: Mapping[str, Any], raw_secrets: Mapping[str, Any] | None = None) -> None:
    """Kibana's per-type `validateConnector`, run after config and secrets on the request's own
    `{config, secrets}` (actions server/application/connector/methods/create/create.ts)."""
    raw_secrets = secrets if raw_secrets is None else raw_secrets
    detail = None
    if type_id == ".email":
        detail = _email_connector(raw_config, secrets)
    elif type_id in _SERVICENOW:
        detail = _servicenow_connector(config, secrets)
    elif type_id == ".xmatters":
        detail = _xmatters_connector(raw_config, raw_secrets)
    elif type_id == ".cases-webhook":
        detail = _cases_webhook_connector(raw_config, raw_secrets)
    if detail is not None:
        raise HttpError(400, f"error validating action type connector: {detail}")
