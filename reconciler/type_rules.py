"""Kibana's rules for each connector type beyond its JSON Schema, as findings.

The schemas in schemas/types say what a config or secrets object may hold; Kibana checks more before
it stores a connector: URLs that must parse, hosts that must be allowed, closed value sets held in free
strings, and rules that weigh config against secrets (email's `hasAuth` needs a user and a password).
This module says them once, in Kibana's order and words. Two callers read it: `kcr validate` (through
`desired`), which quotes a refusal at the connector in the merge request, and the sandbox, which
answers it as Kibana's HTTP 400. Nothing here raises or knows HTTP: each check returns its findings.

Kibana stops at the first rule a request breaks, so each step below yields its refusals in Kibana's
order and returns only the first: what Kibana would say, and nothing it would not have reached.

Messages never quote a secret's value: a refusal travels back into a client's error text and a log.
Per-type facts that are data (families, credential shapes, which types drop unknown keys, fixed and
default URLs, host-name fields, URL-parse wording, closed value sets, read-as-sent keys) live with the
type's schema file (schemas/README) and are read through `catalog`; what stays here is code: one
`TypeRules` entry per type or family in `RULES`, which a new type needs only when Kibana runs code the
data cannot say."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from reconciler import catalog
from reconciler.jsurl import host_allowed, host_of, js_url

ANY_HOST: tuple[str, ...] = ("*",)  # Kibana's allowedHosts when nothing is known of it (offline)
_FIELD_REF = re.compile(r"^(config|secrets)\.([A-Za-z0-9_]+)")


@dataclass(frozen=True)
class Finding:
    """One rule broken. `path` is the field within the connector as keys (`("config", "url")`, or `()`
    when the rule weighs config against secrets), for the caller to spell; `message` is, for a refusal,
    Kibana's own text, which the sandbox answers verbatim. A warning: Kibana accepts it, but stores it
    otherwise than written."""

    path: tuple[str, ...]
    message: str
    severity: str = "error"  # "error" | "warning"


def _first(findings: Iterator[Finding]) -> list[Finding]:
    return list(islice(findings, 1))


# ---- URLs and hosts ---------------------------------------------------------------------------------


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


_TORQ_HOSTS = frozenset({"hooks.torq.io", "hooks.eu.torq.io", "localhost"})
_TORQ, _TORQ_URL = "error configuring send to Torq action", ("config", "webhookIntegrationUrl")


def _implied_urls(ct: catalog.ConnectorType, part: str, value: Mapping[str, Any]) -> list[str]:
    """Hosts Kibana checks that no field of `value` holds: the type's fixed endpoints, a field's default
    URL when the field is empty, and hosts a field's value implies (email's well-known services)."""
    urls = list(ct.fixed_urls(part))
    urls += [url for key, url in ct.marked(part, "x-kibana-default-url").items() if not value.get(key)]
    for key, hosts in ct.marked(part, "x-kibana-implied-hosts").items():
        if host := hosts.get(str(value.get(key) or "").lower()):
            urls.append(host)
    return urls


def _unparsable_url(ct: catalog.ConnectorType, part: str, key: str, url: str) -> str | None:
    """The detail for a checked URL field that `new URL()` would refuse, or None when it parses. A
    field marked `x-kibana-host-name` holds a host, not a URL; `x-kibana-url-parse-message` is the
    type's own wording, where `{err}` is the JS error and `{key}` the field (secrets never get `{err}`:
    it quotes the value)."""
    if ct.marked(part, "x-kibana-host-name").get(key) is True:
        return None
    try:
        js_url(url)
    except ValueError as exc:
        template = ct.marked(part, "x-kibana-url-parse-message").get(key)
        if template is None:
            template = ("error validating url: [{key}]: {err}" if part == "config"
                        else "error validating url: unable to parse host name from {key}")
        return template.format(key=key, err=exc if part == "config" else "Invalid URL")
    return None


def _host_refusal(prefix: str, part: str, url: str, key: str | None) -> Finding:
    path = (part, key) if key else (part,)
    if part == "config":
        shown = f'target url "{url}"'
    else:
        host = host_of(url)
        if host is None:  # a secret: name the key, never the value
            return Finding(path, f"{prefix}: unable to parse host name from {key or 'the URL'}")
        shown = f'target hostname "{host}"'
    return Finding(path, f"{prefix}: {shown} is not added to the Kibana config xpack.actions.allowedHosts")


# ---- config or secrets on their own --------------------------------------------------------------

def closed_values(type_id: str, raw_config: Mapping[str, Any]) -> list[Finding]:
    """Config rules the JSON Schema leaves open (a free-string field with a closed set of values),
    checked on the config as sent, before anything else."""
    ct = catalog.get(type_id)
    for key, allowed in (ct.marked("config", "x-kibana-values") if ct else {}).items():
        value = raw_config.get(key)
        if isinstance(value, str) and value.lower() not in allowed:
            return [Finding(("config", key),
                            f"error validating action type config: [{key}] value '{value}' is not valid")]
    return []


def _pem(value: Any, label: str, marker: str) -> str | None:
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


def _torq_url(value: Mapping[str, Any]) -> str | None:
    try:
        js_url(str(value.get("webhookIntegrationUrl") or ""))
    except ValueError as exc:
        return f"{_TORQ}: unable to parse url: {exc}"
    return None


def _gemini_credentials(value: Mapping[str, Any]) -> str | None:
    if not isinstance(value.get("credentialsJson"), str):
        return None
    try:
        kind = json.loads(value["credentialsJson"]).get("type")
    except (ValueError, AttributeError):
        return "[credentialsJson]: must be the JSON text of a service-account key"
    return None if kind == "service_account" else "[credentialsJson]: only service_account credentials are supported"


def _torq_host(value: Mapping[str, Any]) -> str | None:
    """stack_connectors/server/connector_types/torq/index.ts validateActionTypeConfig."""
    try:
        host = js_url(str(value.get("webhookIntegrationUrl") or "")).hostname
    except ValueError:
        return None  # refused before the hosts check, in the same words
    if host not in _TORQ_HOSTS:
        return f"{_TORQ}: url must begin with https://hooks.torq.io or https://hooks.eu.torq.io"
    return None


def _webhook_auth_type(value: Mapping[str, Any]) -> str | None:
    """stack_connectors/server/connector_types/webhook/index.ts validateAuthType."""
    if value.get("authType") and not value.get("hasAuth"):
        return "error validation webhook action config: authType must be null or undefined if hasAuth is false"
    return None


_HTTP = "error validation http action config"


def _http_config(value: Mapping[str, Any]) -> str | None:
    """stack_connectors/server/connector_types/http/validations.ts validateConnectorTypeConfig, after
    the URL and allowedHosts checks: validateAuthType, validateAdditionalFields, validateOAuth2 (the
    pfx check reads a kibana.yml setting, on by default, and is left to Kibana)."""
    if value.get("authType") and not value.get("hasAuth"):
        return f"{_HTTP}: authType must be null or undefined if hasAuth is false"
    if extra := value.get("additionalFields"):
        try:
            parsed = json.loads(str(extra))
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not parsed:
            return f"{_HTTP}: additionalFields must be a valid JSON object"
    if value.get("authType") == "webhook-oauth2-client-credentials":
        missing = [label for key, label in (("accessTokenUrl", "Access Token URL (accessTokenUrl)"),
                                             ("clientId", "Client ID (clientId)")) if not value.get(key)]
        if missing:
            return f"{_HTTP}: missing {', '.join(missing)} fields"
    return None


def _gen_ai_url(value: Mapping[str, Any]) -> str | None:
    """openai/lib/utils configValidator: assertURL (http(s) with a hostname), wrapped by the type."""
    try:
        parts = urlsplit(str(value.get("apiUrl") or ""))
    except ValueError:
        return "Error configuring OpenAI action: Error: URL Error: Invalid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Error configuring OpenAI action: Error: " + ("Invalid protocol" if parts.hostname
                                                            else "URL must contain hostname")
    return None


@dataclass(frozen=True)
class _Rule:
    path: tuple[str, ...]  # the field the rule is about
    check: Callable[[Mapping[str, Any]], str | None]  # Kibana's detail when broken


def _part_refusals(type_id: str, part: str, filled: Mapping[str, Any],
                   allowed_hosts: Sequence[str]) -> Iterator[Finding]:
    prefix = f"error validating action type {part}"
    rules, ct = _rules_of(type_id), catalog.get(type_id)
    before, after = rules.before_hosts.get(part), rules.after_hosts.get(part)
    if before is not None and (detail := before.check(filled)) is not None:
        yield Finding(before.path, f"{prefix}: {detail}")
    urls = checked_urls(type_id, part, filled)
    for key, url in urls:
        unparsable = _unparsable_url(ct, part, str(key), url) if ct and key is not None else None
        if unparsable is not None:
            yield Finding((part, str(key)), f"{prefix}: {unparsable}")
    for key, url in urls:
        if not host_allowed(url, allowed_hosts):
            yield _host_refusal(prefix, part, url, key)
    if after is not None and (detail := after.check(filled)) is not None:
        yield Finding(after.path, f"{prefix}: {detail}")


def checked_urls(type_id: str, part: str, filled: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Every URL (or host) Kibana checks against xpack.actions.allowedHosts when it validates `part`
    (with defaults filled): (field, value) for the fields that hold one, then (None, url) for the ones
    no field holds (fixed endpoints, default URLs, hosts implied by a service). One list for the check
    itself and for `kcr render allowed-hosts`, so the hosts printed are exactly the hosts checked."""
    ct = catalog.get(type_id)
    urls: list[tuple[str | None, str]] = [(k, u) for k in checked_fields(type_id, part)
                                          if isinstance(u := filled.get(k), str) and u]
    return urls + [(None, u) for u in (_implied_urls(ct, part, filled) if ct else [])]


def part_rules(type_id: str, part: str, filled: Mapping[str, Any],
               allowed_hosts: Sequence[str] = ANY_HOST) -> list[Finding]:
    """The first rule that `filled` (config or secrets with the schema's defaults, already valid against
    the schema) breaks, Kibana's steps in order: the type's own checks, URLs that must parse, hosts
    that must be allowed (Kibana's `xpack.actions.allowedHosts`), the validators Kibana runs after."""
    return _first(_part_refusals(type_id, part, filled, allowed_hosts))


# ---- config against secrets: Kibana's per-type validateConnector --------------------------------

_SN_OAUTH_CONFIG = ("clientId", "userIdentifierValue", "jwtKeyId")
_SN_OAUTH_SECRETS = ("clientSecret", "privateKey")


@dataclass(frozen=True)
class _Request:
    """A create or update as Kibana's validateConnector sees it: `raw_*` as sent, the others validated
    (defaults filled). Each rule reads what Kibana's reads."""

    raw_config: Mapping[str, Any]
    config: Mapping[str, Any]
    secrets: Mapping[str, Any]
    raw_secrets: Mapping[str, Any]


def _xmatters_connector(r: _Request) -> str | None:
    """stack_connectors/server/connector_types/xmatters/index.ts validateConnector, on the request as
    sent: an omitted usesBasic is falsy there although the stored default is true."""
    config, secrets = r.raw_config, r.raw_secrets
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


def _cases_webhook_connector(r: _Request) -> str | None:
    """cases_webhook/validators.ts validateConnector: `hasAuth && isEmpty(secrets)` on the request as
    sent (`{user: null}` is not empty). The i18n.INVALID_AUTH text was not read; this wording is ours."""
    if r.raw_config.get("hasAuth") and not r.raw_secrets:
        return "Invalid authentication: hasAuth is true but no secrets were given"
    return None


def _email_connector(r: _Request) -> str | None:
    if r.raw_config.get("service") == "exchange_server":
        return None if r.secrets.get("clientSecret") else "[clientSecret] is required"
    if r.raw_config.get("hasAuth") is True:
        for key in ("user", "password"):
            if not r.secrets.get(key):
                return f"[{key}] is required"
    return None


def _servicenow_connector(r: _Request) -> str | None:
    config, secrets = r.config, r.secrets
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


@dataclass(frozen=True)
class TypeRules:
    """A type's rules that are code: by part, the check Kibana runs before the URL checks and the one
    after the hosts check, and its `validateConnector` weighing config against secrets."""

    before_hosts: Mapping[str, _Rule] = field(default_factory=dict)
    after_hosts: Mapping[str, _Rule] = field(default_factory=dict)
    connector: Callable[[_Request], str | None] | None = None


# One entry per type, by type id, else by the family its schema names (`x-kcr-family`): a new ServiceNow
# type needs no entry, and a type whose rules are all data (schemas/README) needs none either.
RULES: Mapping[str, TypeRules] = {
    ".gen-ai": TypeRules(before_hosts={"secrets": _Rule(("secrets",), _gen_ai_secrets)},
                         after_hosts={"config": _Rule(("config", "apiUrl"), _gen_ai_url)}),
    ".torq": TypeRules(before_hosts={"config": _Rule(_TORQ_URL, _torq_url)},
                       after_hosts={"config": _Rule(_TORQ_URL, _torq_host)}),
    ".gemini": TypeRules(before_hosts={"secrets": _Rule(("secrets", "credentialsJson"), _gemini_credentials)}),
    ".webhook": TypeRules(after_hosts={"config": _Rule(("config", "authType"), _webhook_auth_type)}),
    ".http": TypeRules(after_hosts={"config": _Rule(("config",), _http_config)}),
    ".email": TypeRules(connector=_email_connector),
    catalog.SERVICENOW: TypeRules(connector=_servicenow_connector),
    ".xmatters": TypeRules(connector=_xmatters_connector),
    ".cases-webhook": TypeRules(connector=_cases_webhook_connector),
}
_NO_RULES = TypeRules()


def _rules_of(type_id: str) -> TypeRules:
    return RULES.get(type_id) or RULES.get(catalog.family(type_id)) or _NO_RULES


def connector_rules(type_id: str, raw_config: Mapping[str, Any], config: Mapping[str, Any],
                    secrets: Mapping[str, Any], raw_secrets: Mapping[str, Any] | None = None) -> list[Finding]:
    """Kibana's per-type `validateConnector`, run after config and secrets on the request's own
    `{config, secrets}` (actions server/application/connector/methods/create/create.ts)."""
    rule = _rules_of(type_id).connector
    request = _Request(raw_config, config, secrets, secrets if raw_secrets is None else raw_secrets)
    detail = rule(request) if rule is not None else None
    return [] if detail is None else [Finding((), f"error validating action type connector: {detail}")]


# ---- what kcr validate asks offline ----------------------------------------------------------------


@dataclass(frozen=True)
class OfflineRules:
    """A type's rules as `kcr validate` asks them of each connector, with what they read of the type worked
    out once per catalogue entry (`offline_rules`): a caller checking many connectors of one type
    (`connector_checks`) keeps it rather than asking again."""

    type_id: str
    type: catalog.ConnectorType | None
    rules: TypeRules
    no_config_rules: bool  # `refusals` can find nothing: no closed values, checked or implied URL, nor rule
    strips_unknown: bool  # Kibana drops config keys its schema does not know
    known: frozenset[str]  # the config schema's top-level keys
    read_as_sent: Mapping[str, str]

    def refusals(self, config: Mapping[str, Any], secrets: Mapping[str, Any]) -> list[Finding]:
        """What Kibana would refuse of a connector whose config and secrets already passed the type's
        schema, checked offline: secrets are placeholders, so only their presence counts and the secrets'
        own rules (which read their values) are left to Kibana; allowed hosts are Kibana's setting."""
        if self.no_config_rules:
            return []
        filled = catalog.with_defaults(self.type_id, "config", config)
        return (closed_values(self.type_id, config) or part_rules(self.type_id, "config", filled)
                or connector_rules(self.type_id, config, filled, secrets))

    def stored_differently(self, config: Mapping[str, Any]) -> list[Finding]:
        """Config that Kibana accepts but would store otherwise than written, which no plan could ever
        converge: keys a non-strict schema drops (warnings), and xMatters' usesBasic, checked as false
        when omitted but stored as true."""
        out = []
        if self.strips_unknown:
            for key in sorted(set(config) - self.known):
                out.append(Finding(("config", key), f"config.{key}: Kibana's {self.type_id} schema does not know "
                                   "this key and drops it on save; remove it", severity="warning"))
        for key, advice in self.read_as_sent.items():
            if key not in config:
                out.append(Finding(("config",), f"config.{key}: {advice}"))
        return out


_FACTS: dict[str, OfflineRules] = {}


def offline_rules(type_id: str) -> OfflineRules:
    """The type's facts, kept while the catalogue entry and the rule table are the same objects (tests
    swap both), so a cached answer never outlives what it was read from."""
    ct, rules = catalog.get(type_id), _rules_of(type_id)
    hit = _FACTS.get(type_id)
    if hit is not None and hit.type is ct and hit.rules is rules:
        return hit
    quiet = (rules.connector is None and "config" not in rules.before_hosts and "config" not in rules.after_hosts
             and (ct is None or not (ct.marked("config", "x-kibana-values") or checked_fields(type_id, "config")
                                     or ct.fixed_urls("config") or ct.marked("config", "x-kibana-default-url")
                                     or ct.marked("config", "x-kibana-implied-hosts"))))
    facts = OfflineRules(type_id, ct, rules, quiet, ct is not None and ct.strips_unknown,
                         frozenset((ct.config_schema.get("properties") or {}) if ct else ()),
                         dict(ct.read_as_sent) if ct else {})
    if len(_FACTS) < 1_000:
        _FACTS[type_id] = facts
    return facts
