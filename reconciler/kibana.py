"""The Kibana HTTP client: one httpx.Client per KibanaClient, typed errors keyed on status codes,
retries only where they are safe, and never a secret in a log line or an exception.

    KibanaError                       any other 4xx, or a body kcr cannot make sense of
    ├── KibanaAuthError    401/403
    ├── KibanaNotFound     404
    ├── KibanaConflict     409
    └── KibanaUnavailable  5xx, or the transport failed, after the retries

Retry policy (SPEC §4): GET, PUT and DELETE are repeated with exponential backoff and full jitter on
429/502/503/504 and transport errors, honouring Retry-After. A create (POST) may have reached Kibana
before the connection broke, so it is confirmed by reading the connector back rather than repeated
blindly; `_execute` sends a real notification and is repeated only on 429 (Kibana did nothing).
"""

from __future__ import annotations

import base64
import difflib
import email.utils
import json
import logging
import random as _random
import re
import ssl
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from reconciler import __version__, jsondepth
from reconciler.deadline import DeadlineClient, deadline
from reconciler.errors import (
    ConfigError,
    KibanaAuthError,
    KibanaConflict,
    KibanaError,
    KibanaNotFound,
    KibanaUnavailable,
)
from reconciler.masking import Masker
from reconciler.model import (
    SPACE_ID_PATTERN,
    ConnectorTypeInfo,
    LiveConnector,
    LiveSpace,
    LiveState,
    RuleRef,
    id_segment_problem,
)

log = logging.getLogger("kcr.kibana")

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 60.0  # a Retry-After longer than this is clamped: a run must not hang for hours
MAX_BACKOFF = 30.0
RULES_PER_PAGE = 100
MAX_RULE_PAGES = 100
READ_LIVE_WORKERS = 4

DEFAULT_SPACE = "default"
MISSING: Any = object()  # a 404 where absence is an answer, not an error
_SPACE_RE = re.compile(SPACE_ID_PATTERN)
_CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f]")
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


# --------------------------------------------------------------------------------------------
# Connection settings


def parse_go_bool(name: str, value: str) -> bool:
    """Go's strconv.ParseBool, because the Terraform provider reads KIBANA_INSECURE (and Terraform's
    HTTP backend its skip_cert_verification) with it and users copy those settings."""
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false (also 1/0, t/f, TRUE/FALSE)")


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name, "")
        if value:
            return name, value
    return None


def _api_key_header(key: str) -> str:
    """Kibana wants the base64 of `id:api_key`; people often paste the two parts joined by a colon
    (the form Elasticsearch's create-API-key response shows). Base64 never contains a colon."""
    if ":" in key:
        key = base64.b64encode(key.encode()).decode()
    return f"ApiKey {key}"


@dataclass(frozen=True)
class _Credential:
    kind: str  # "bearer" | "apikey" | "basic"
    source: str  # the variable(s) or flag(s) it came from, for messages
    header: str = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)  # every spelling a server could echo back


def _refuse_untidy(values: Mapping[str, str | None], names: Mapping[str, str]) -> None:
    """A credential with a trailing newline (a CI file variable) or any control character makes httpx
    fail with the header value in its message; say which variable instead, never the value."""
    for kind, value in values.items():
        if value and (value != value.strip() or _CONTROL_CHAR.search(value)):
            raise ConfigError(f"{names[kind]} has leading or trailing whitespace or a control character (a "
                              "trailing newline from a file?); remove it")


def _credentials_from(values: Mapping[str, str | None], names: Mapping[str, str]) -> list[_Credential]:
    """Every credential set in one family (flags, KIBANA_*, ELASTICSEARCH_*), in the Terraform
    provider's precedence: bearer, API key, basic."""
    _refuse_untidy(values, names)
    found: list[_Credential] = []
    bearer, api_key = values.get("bearer"), values.get("api_key")
    username, password = values.get("username"), values.get("password")
    if bearer:
        found.append(_Credential("bearer", names["bearer"], f"Bearer {bearer}", (bearer,)))
    if api_key:
        header = _api_key_header(api_key)
        parts = (api_key, api_key.partition(":")[2], header.split(" ", 1)[1])  # `id:key`: the key alone too
        found.append(_Credential("apikey", names["api_key"], header, tuple(p for p in parts if p)))
    if username or password:
        if not (username and password):
            missing = names["password"] if username else names["username"]
            given = names["username"] if username else names["password"]
            raise ConfigError(f"{given} is set but {missing} is not; set both for basic authentication")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        found.append(_Credential("basic", f"{names['username']}/{names['password']}", f"Basic {token}",
                                 (password, token)))
    return found


def _env_family(env: Mapping[str, str], prefix: str) -> tuple[dict[str, str | None], dict[str, str]]:
    names = {
        "bearer": f"{prefix}_BEARER_TOKEN",
        "api_key": f"{prefix}_API_KEY",
        "username": f"{prefix}_USERNAME",
        "password": f"{prefix}_PASSWORD",
    }
    return {k: env.get(v) or None for k, v in names.items()}, names


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment: what may appear in a message or a repr."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    try:
        port = parts.port
    except ValueError:  # not a number: left out rather than risk echoing the netloc's user info
        port = None
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Connection:
    """Where Kibana is and how to talk to it. The credential lives in `auth_header`, which no repr
    shows: a Connection may end up in a traceback or a debug print."""

    url: str
    auth_header: str | None = field(default=None, repr=False)
    auth_secrets: tuple[str, ...] = field(default=(), repr=False)  # what the client masks in every message
    auth_kind: str = "none"  # "bearer" | "apikey" | "basic" | "none"
    auth_source: str = ""
    ca_certs: tuple[str, ...] = ()
    insecure: bool = False
    timeout: float = DEFAULT_READ_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    def __repr__(self) -> str:
        return (
            f"Connection(url={redact_url(self.url)!r}, auth={self.auth_kind}"
            f"{' from ' + self.auth_source if self.auth_source else ''}, ca_certs={self.ca_certs!r}, "
            f"insecure={self.insecure}, timeout={self.timeout})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        url: str | None = None,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        bearer: str | None = None,
        ca_cert: str | None = None,
        insecure: bool | None = None,
        timeout: float | None = None,
    ) -> Connection:
        """Flags override the environment; the variable names are the Terraform provider's."""
        url_source = "--kibana-url"
        if not url:
            hit = _first(env, "KIBANA_URL", "KIBANA_ENDPOINT")
            if hit is None:
                raise ConfigError(
                    "no Kibana URL: set KIBANA_URL (or KIBANA_ENDPOINT), or pass --kibana-url, "
                    "e.g. https://kibana.example.com:5601"
                )
            url_source, url = hit
        url = url.strip().rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{url_source}={redact_url(url)!r} is not an http(s) URL; use e.g. https://kibana.example.com:5601"
            )
        if parts.username or parts.password:
            raise ConfigError(
                f"{url_source} carries credentials in the URL; use KIBANA_API_KEY or KIBANA_USERNAME/"
                "KIBANA_PASSWORD instead"
            )
        try:
            parts.port  # noqa: B018 - validates: urlsplit parses the port lazily
        except ValueError:
            raise ConfigError(f"{url_source}={redact_url(url)!r} has a port that is not a number 0-65535") from None
        if parts.query or parts.fragment:
            raise ConfigError(f"{url_source}={redact_url(url)!r} must not have a query or fragment")
        _refuse_space_or_app_path(url_source, parts.path)

        flag_values: dict[str, str | None] = {
            "bearer": bearer, "api_key": api_key, "username": username, "password": password,
        }
        flag_names = {
            "bearer": "--bearer-token", "api_key": "--api-key", "username": "--username", "password": "--password",
        }
        candidates = _credentials_from(flag_values, flag_names)
        for prefix in ("KIBANA", "ELASTICSEARCH"):
            values, names = _env_family(env, prefix)
            candidates += _credentials_from(values, names)
        chosen = candidates[0] if candidates else None
        if len(candidates) > 1:
            log.warning(
                "several Kibana credentials are set (%s); using %s",
                ", ".join(c.source for c in candidates), candidates[0].source,
            )

        ca_source = "--ca-cert"
        if ca_cert is None:
            hit = _first(env, "KIBANA_CA_CERT", "KIBANA_CA_CERTS")
            ca_source, ca_cert = hit if hit else ("", None)
        ca_certs = tuple(p.strip() for p in (ca_cert or "").split(",") if p.strip())
        if ca_certs:
            _ssl_context(ca_certs, ca_source)  # fail now, with the variable's name, not at the first request

        if insecure is None:
            raw = env.get("KIBANA_INSECURE", "")
            insecure = parse_go_bool("KIBANA_INSECURE", raw) if raw else False
        if insecure:
            log.warning("TLS certificate verification is disabled (KIBANA_INSECURE); never do this in production")

        if timeout is None:
            raw = env.get("KCR_TIMEOUT", "")
            if raw:
                try:
                    timeout = float(raw)
                except ValueError:
                    raise ConfigError(f"KCR_TIMEOUT={raw!r} is not a number of seconds") from None
            else:
                timeout = DEFAULT_READ_TIMEOUT
        if not timeout > 0:
            raise ConfigError(f"the timeout must be a positive number of seconds, not {timeout}")

        return cls(
            url=url,
            auth_header=chosen.header if chosen else None,
            auth_secrets=chosen.secrets if chosen else (),
            auth_kind=chosen.kind if chosen else "none",
            auth_source=chosen.source if chosen else "",
            ca_certs=ca_certs,
            insecure=insecure,
            timeout=timeout,
        )

    def verify(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        if self.ca_certs:
            return _ssl_context(self.ca_certs, "KIBANA_CA_CERT")
        return True


def _refuse_space_or_app_path(source: str, path: str) -> None:
    """A URL copied from the browser (`.../s/ops/app/...`) would keep its path as the base of every
    request, so "default" would silently be another space: with prune, kcr would plan deletes of that
    space's connectors. A real server.basePath (`/kibana`) is kept. kcr cannot tell a basePath from the
    rest of the path, so it refuses the two segments that mark a browser URL rather than guess."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        space = segment == "s" and i + 1 < len(segments) and segments[i + 1] != ""
        if space or segment == "app":
            tail = "/".join(segments[i:])
            fix = " and use `--space`/the directory name" if space else ""
            raise ConfigError(
                f"{source} must be Kibana's base URL (including server.basePath if any), not a space or app URL: "
                f"drop `/{tail}`{fix}"
            )


def _ssl_context(paths: Sequence[str], source: str) -> ssl.SSLContext:
    """The system trust store plus every PEM file listed: a private CA adds to what is trusted."""
    ctx = ssl.create_default_context()
    for path in paths:
        try:
            ctx.load_verify_locations(cafile=path)
        except FileNotFoundError:
            raise ConfigError(f"{source}: CA certificate file {path!r} does not exist") from None
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"{source}: {path!r} is not a readable PEM CA certificate ({type(exc).__name__}); "
                "point it at the PEM file of the CA that signed Kibana's certificate"
            ) from None
    return ctx


# --------------------------------------------------------------------------------------------
# Paths


def check_space(space: str) -> str:
    if not isinstance(space, str) or not _SPACE_RE.fullmatch(space):
        raise ConfigError(
            f"space id {space!r} is not valid: Kibana space ids use lowercase letters, digits, '-' and '_'"
        )
    return space


def _segment(value: str, what: str) -> str:
    """One path segment that cannot reach another endpoint: '/', '?', '#', '%' are percent-encoded,
    and '.'/'..' (which URL normalisation would resolve) are encoded too."""
    problem = id_segment_problem(value, what)
    if problem is not None:
        raise ConfigError(problem)
    quoted = urllib.parse.quote(value, safe="")
    if quoted in (".", ".."):
        quoted = quoted.replace(".", "%2E")
    return quoted


def space_prefix(space: str) -> str:
    check_space(space)
    return "" if space == "default" else f"/s/{space}"


def connector_path(space: str, connector_id: str | None = None, suffix: str = "") -> str:
    base = f"{space_prefix(space)}/api/actions/connector"
    if connector_id is None:
        return base
    return f"{base}/{_segment(connector_id, 'connector id')}{suffix}"


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


def _kibana_message(response: httpx.Response, mask: Masker) -> str:
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
_PRIVILEGE_HINT = (
    "the credentials lack a privilege: the user needs the Actions and Connectors feature (all) in this space"
)
_TYPE_DISABLED_HINT = "the type needs a higher licence or is not in xpack.actions.enabledActionTypes"


def _hint(status: int, message: str) -> str | None:
    """Kibana answers 403 both for a missing privilege and for a type the licence or the config
    disables; the two need different fixes, told apart by the message's prefix. Only the hint depends
    on the wording: the error type follows the status alone."""
    if status == 401:
        return _AUTH_HINT
    if status == 403:
        if message.startswith("Unauthorized to"):
            return _PRIVILEGE_HINT
        if message.lower().startswith("action type "):
            return _TYPE_DISABLED_HINT
    return None


def _error_for(method: str, path: str, response: httpx.Response, mask: Masker) -> KibanaError:
    status = response.status_code
    message = _kibana_message(response, mask)
    text = f"{method} {path}: Kibana answered {status} {response.reason_phrase}".rstrip()
    if message:
        text += f": {message}"
    hint = _hint(status, message)
    if hint:
        text += f" ({hint})"
    return _status_error(status)(text, status)


def _malformed(method: str, path: str, what: str) -> KibanaError:
    return KibanaError(f"{method} {path}: Kibana's answer is not what kcr expects ({what}); is the URL a Kibana?")


# --------------------------------------------------------------------------------------------
# The client


def _parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class KibanaClient:
    def __init__(
        self,
        conn: Connection,
        *,
        transport: httpx.BaseTransport | None = None,
        retries: int = 4,
        throttled: int = 10,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        # The run's own credential is masked in every message, with the secrets of the request at hand:
        # a 401 page or a proxy may echo the Authorization header back.
        self._mask = Masker(list(conn.auth_secrets))
        self.retries = max(0, retries)
        # A 429 means Kibana did nothing and says when to come back: it has its own budget, so being
        # throttled never uses up the retries meant for failures.
        self.throttled = max(0, throttled)
        self.backoff = backoff
        self._sleep = sleep
        self._random = random
        self._clock = clock
        headers = {"User-Agent": f"kcr/{__version__}", "Accept": "application/json"}
        if conn.auth_header:
            headers["Authorization"] = conn.auth_header
        # The per-operation timeouts stay as caps; the deadline set in _send_once bounds the whole request.
        self._http = DeadlineClient(
            base_url=conn.url,
            headers=headers,
            verify=conn.verify(),
            timeout=httpx.Timeout(conn.timeout, connect=conn.connect_timeout),
            transport=transport,
            trust_env=True,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"KibanaClient({self.conn!r})"

    def _masking(self, payload: Any) -> Masker:
        """The run's credential and the request's own secrets."""
        return Masker(*self._mask.payloads, payload)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KibanaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            after = _parse_retry_after(response.headers.get("Retry-After"), self._clock())
            if after is not None:
                return after
        return self._random() * min(MAX_BACKOFF, self.backoff * (2.0**attempt))

    def _send_once(self, method: str, path: str, body: Any, params: Mapping[str, str] | None) -> httpx.Response:
        """One attempt, bounded as a whole by KCR_TIMEOUT (reconciler/deadline.py): httpx's own timeouts
        bound each read, so a server trickling its answer would otherwise hold the run forever. Past the
        deadline it fails as an httpx timeout, which the retry policy treats like any transport error."""
        headers = {}
        content = None
        if method not in ("GET", "HEAD", "OPTIONS"):
            headers["kbn-xsrf"] = "true"
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body).encode()
        started = time.monotonic()
        try:
            with deadline(self.conn.timeout, f"KCR_TIMEOUT={self.conn.timeout:g}s"):
                response = self._http.request(method, path, content=content, headers=headers, params=params)
        except httpx.HTTPError as exc:
            log.info("%s %s failed after %.0f ms: %s", method, path, (time.monotonic() - started) * 1000,
                      type(exc).__name__)
            raise
        log.info("%s %s -> %d in %.0f ms", method, path, response.status_code, (time.monotonic() - started) * 1000)
        return response

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool,
    ) -> tuple[httpx.Response, bool]:
        """Sends with the retry policy; returns the last response and whether an earlier attempt may
        have reached Kibana (a transport failure or a 5xx), which makes a later 404 on DELETE a success."""
        ambiguous = False
        attempt = throttled = 0
        while True:
            last = attempt >= self.retries
            try:
                response = self._send_once(method, path, body, params)
            except httpx.HTTPError as exc:
                _raise_if_tls(method, path, exc)
                if idempotent and not last:
                    ambiguous = True
                    self._sleep(self._delay(attempt + throttled, None))
                    attempt += 1
                    continue
                advice = "check the URL, the network and the proxy settings"
                if isinstance(exc, httpx.TimeoutException):
                    advice = f"if Kibana is only slow, raise KCR_TIMEOUT (now {self.conn.timeout:g}s); else {advice}"
                raise KibanaUnavailable(
                    f"{method} {path}: Kibana could not be reached ({type(exc).__name__}: "
                    f"{self._mask(_describe(exc))}); {advice}"
                ) from None
            if response.status_code == 429 and throttled < self.throttled:
                self._sleep(self._delay(attempt + throttled, response))
                throttled += 1
                continue
            if idempotent and response.status_code in RETRY_STATUSES and not last:
                ambiguous = True
                self._sleep(self._delay(attempt + throttled, response))
                attempt += 1
                continue
            return response, ambiguous

    def _json(self, method: str, path: str, response: httpx.Response) -> Any:
        """Bounded in depth before anything recursive (normalising, fingerprints, schemas) walks it."""
        try:
            return jsondepth.loads(response.content)
        except (jsondepth.TooDeep, jsondepth.NotUnicode) as exc:
            raise _malformed(method, path, f"a {response.status_code} answer {exc}") from None
        except ValueError:
            raise _malformed(method, path, f"a {response.status_code} answer whose body is not JSON") from None

    def _get(self, path: str, params: Mapping[str, str] | None = None, *, missing_ok: bool = False) -> Any:
        """The decoded body; MISSING for a 404 when `missing_ok` (a JSON null is not a 404)."""
        response, _ = self._request("GET", path, params=params, idempotent=True)
        if missing_ok and response.status_code == 404:
            return MISSING
        if not response.is_success:
            raise _error_for("GET", path, response, self._mask)
        return self._json("GET", path, response)

    # -- reading ---------------------------------------------------------------------------

    def list_spaces(self) -> list[str]:
        """Every space id the credentials can see. Kibana 8+ cannot disable spaces, so a 404 here means
        the URL is not Kibana's base (a basePath missing or extra), not "only `default`": reading it as
        that would hide the wrong URL until a create or a delete landed somewhere else."""
        path = "/api/spaces/space"
        body = self._get(path, missing_ok=True)
        if body is MISSING:
            raise ConfigError(
                f"Kibana at {redact_url(self.conn.url)} answered 404 for {path}: is KIBANA_URL Kibana's base URL "
                "(server.basePath included)?"
            )
        if not isinstance(body, list):
            raise _malformed("GET", path, "expected a list of spaces")
        ids: list[str] = []
        for item in body:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                raise _malformed("GET", path, "a space without an id")
            ids.append(item["id"])
        return ids

    def list_connectors(self, space: str) -> list[LiveConnector]:
        path = f"{space_prefix(space)}/api/actions/connectors"
        body = self._get(path)
        if not isinstance(body, list):
            raise _malformed("GET", path, "expected a list of connectors")
        connectors = [_live_connector("GET", path, item, listed=True) for item in body]
        _refuse_repeated_ids(path, connectors)
        return connectors

    def get_connector(self, space: str, id: str) -> LiveConnector | None:
        path = connector_path(space, id)
        body = self._get(path, missing_ok=True)
        return None if body is MISSING else _live_connector("GET", path, body)

    def connector_types(self, space: str = "default") -> dict[str, ConnectorTypeInfo]:
        """What the plan checks licences and enablement against. Nothing is defaulted to "enabled": a
        recreate to a type Kibana would refuse deletes the old connector and then fails its create."""
        path = f"{space_prefix(space)}/api/actions/connector_types"
        body = self._get(path)
        if not isinstance(body, list) or not body:
            raise _malformed("GET", path, "expected a non-empty list of connector types")
        types: dict[str, ConnectorTypeInfo] = {}
        for item in body:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                raise _malformed("GET", path, "a connector type without an id")
            problem = _type_field_error(item)
            if problem is not None:
                raise _malformed("GET", path, f"connector type {item['id']!r} {problem}")
            info = ConnectorTypeInfo(
                id=item["id"],
                name=item["name"],
                enabled=item["enabled"],
                enabled_in_config=item["enabled_in_config"],
                enabled_in_license=item["enabled_in_license"],
                minimum_license_required=item["minimum_license_required"],
                is_system_action_type=item.get("is_system_action_type", False),
            )
            types[info.id] = info
        return types

    def rules_referencing(self, space: str, connector_id: str) -> list[RuleRef]:
        """The rules of one space whose actions use the connector (rules `_find` with `has_reference`)."""
        path = f"{space_prefix(space)}/api/alerting/rules/_find"
        _segment(connector_id, "connector id")
        reference = json.dumps({"type": "action", "id": connector_id}, separators=(",", ":"))
        rules: list[RuleRef] = []
        for page in range(1, MAX_RULE_PAGES + 1):
            params = {
                "has_reference": reference,
                "per_page": str(RULES_PER_PAGE),
                "page": str(page),
                "fields": "name",
            }
            body = self._get(path, params)
            if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
                raise _malformed("GET", path, "expected an object with a `data` list")
            data = body["data"]
            for item in data:
                if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                    raise _malformed("GET", path, "a rule without an id")
                rules.append(RuleRef(id=item["id"], name=str(item.get("name", "")), space=space))
            total = body.get("total")
            if not data or not isinstance(total, int) or page * RULES_PER_PAGE >= total:
                break
        return rules

    def read_live(self, spaces: Sequence[str]) -> LiveState:
        """One spaces check, one connector_types, one list per space: S + 2 requests (SPEC §5, §10),
        plus the default space's list when it is not among them. Lists that name one saved-object
        connector in two spaces are refused: ids are global."""
        wanted = list(dict.fromkeys(spaces))
        for space in wanted:
            check_space(space)
        known = self.list_spaces()
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise ConfigError(
                f"space{'s' if len(unknown) > 1 else ''} {', '.join(_with_suggestion(s, known) for s in unknown)} "
                "not found in Kibana at "
                f"{redact_url(self.conn.url)}; known spaces: {', '.join(sorted(known)) or '(none)'}. "
                "Create the space in Kibana or rename the directory under connectors/"
            )
        types = self.connector_types()
        # A proxy that drops /s/<space> answers every space with the default space's list; when the
        # default space is not planned, its list is read as a witness (one request) so that shows.
        witness = [DEFAULT_SPACE] if DEFAULT_SPACE not in wanted and DEFAULT_SPACE in known and wanted else []
        workers = max(1, min(READ_LIVE_WORKERS, len(wanted) + len(witness)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kcr-read") as pool:
            lists = list(pool.map(self.list_connectors, [*wanted, *witness]))
        _refuse_ids_in_several_spaces(dict(zip([*wanted, *witness], lists, strict=True)))
        lists = lists[: len(wanted)]
        return LiveState(
            kibana_url=self.conn.url,
            spaces={s: LiveSpace(space=s, connectors=tuple(c)) for s, c in zip(wanted, lists, strict=True)},
            known_spaces=frozenset(known),
            connector_types=types,
        )

    # -- writing ---------------------------------------------------------------------------

    def create_connector(
        self,
        space: str,
        id: str,
        *,
        name: str,
        type: str,
        config: Mapping[str, Any],
        secrets: Mapping[str, Any],
    ) -> LiveConnector:
        path = connector_path(space, id)
        body = {"name": name, "connector_type_id": type, "config": dict(config), "secrets": dict(secrets)}
        masked = self._masking(secrets)
        maybe_created = False
        attempt = throttled = 0
        while True:
            last = attempt >= self.retries
            response: httpx.Response | None = None
            try:
                response = self._send_once("POST", path, body, None)
            except httpx.HTTPError as exc:
                _raise_if_tls("POST", path, exc)  # the handshake failed: nothing was sent
                failure = f"{type_name(exc)}: {self._mask(_describe(exc))}"
            else:
                status = response.status_code
                if response.is_success:
                    return _live_connector("POST", path, self._json("POST", path, response))
                if status == 429 and throttled < self.throttled:  # Kibana did nothing: safe to repeat
                    self._sleep(self._delay(attempt + throttled, response))
                    throttled += 1
                    continue
                if status == 409 and maybe_created:
                    confirmed = self._confirm_created(space, id, name, type)
                    if confirmed is not None:
                        return confirmed
                if status < 500:
                    raise _error_for("POST", path, response, masked)
                failure = f"Kibana answered {status}"
            # The create may or may not have happened: read before deciding.
            confirmed = self._confirm_created(space, id, name, type)
            if confirmed is not None:
                return confirmed
            maybe_created = True
            retry = response is None or response.status_code in RETRY_STATUSES
            if retry and not last:
                self._sleep(self._delay(attempt + throttled, response))
                attempt += 1
                continue
            if response is not None:
                raise _error_for("POST", path, response, masked)
            raise KibanaUnavailable(
                f"POST {path}: Kibana could not be reached ({failure}) and the connector does not exist; "
                "re-run when Kibana is reachable"
            )

    def _confirm_created(self, space: str, id: str, name: str, type: str) -> LiveConnector | None:
        live = self.get_connector(space, id)
        if live is None:
            return None
        if live.name == name and live.type == type:
            return live
        raise KibanaConflict(
            f"POST {connector_path(space, id)}: a connector with this id already exists with another "
            f"name or type ({live.name!r}, {live.type}); re-plan",
            409,
        )

    def update_connector(
        self,
        space: str,
        id: str,
        *,
        name: str,
        config: Mapping[str, Any],
        secrets: Mapping[str, Any],
    ) -> LiveConnector:
        path = connector_path(space, id)
        body = {"name": name, "config": dict(config), "secrets": dict(secrets)}
        response, _ = self._request("PUT", path, body=body, idempotent=True)
        if not response.is_success:
            raise _error_for("PUT", path, response, self._masking(secrets))
        return _live_connector("PUT", path, self._json("PUT", path, response))

    def delete_connector(self, space: str, id: str) -> None:
        path = connector_path(space, id)
        response, ambiguous = self._request("DELETE", path, idempotent=True)
        if response.status_code == 404 and ambiguous:
            return  # an earlier attempt deleted it
        if not response.is_success:
            raise _error_for("DELETE", path, response, self._mask)

    def execute_connector(self, space: str, id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Runs the connector once. Not idempotent (a real notification): repeated on 429 only."""
        path = connector_path(space, id, "/_execute")
        response, _ = self._request("POST", path, body={"params": dict(params)}, idempotent=False)
        if not response.is_success:
            raise _error_for("POST", path, response, self._masking(params))
        if response.status_code == 204 or not response.content:
            return {"connector_id": id, "status": "ok"}
        body = self._json("POST", path, response)
        if not isinstance(body, dict):
            raise _malformed("POST", path, "expected an object")
        return body


def _with_suggestion(space: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(space, known, n=1)
    return f"{space} (did you mean {close[0]!r}?)" if close else space


def _raise_if_tls(method: str, path: str, exc: httpx.HTTPError) -> None:
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


def type_name(exc: BaseException) -> str:
    return type(exc).__name__


def _describe(exc: httpx.HTTPError) -> str:
    # httpx messages name the host and the OS error, never headers or bodies.
    text = str(exc) or "no detail"
    return text[:200]


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


def _type_field_error(item: Mapping[str, Any]) -> str | None:
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


def _connector_field_error(body: Mapping[str, Any], *, listed: bool) -> str | None:
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
    what = f"connector {cid!r}"
    for key in ("connector_type_id", "name"):
        value = body.get(key)
        if value is None:
            return f"{what} has no {key}"
        if not isinstance(value, str) or (key == "connector_type_id" and not value):
            return f"{what} has a {key} that is not a{' non-empty' if key == 'connector_type_id' else ''} string"
    config = body.get("config")
    if config is not None and not isinstance(config, Mapping):
        return f"{what} has a config that is not an object"
    for flag in _FLAGS:  # absent is false (older Kibanas lack is_system_action); present must be a boolean
        if flag in body and not isinstance(body[flag], bool):
            return f"{what} has an {flag} that is not a boolean"
    missing_secrets = body.get("is_missing_secrets")  # absent or null for preconfigured connectors
    if missing_secrets is not None and not isinstance(missing_secrets, bool):
        return f"{what} has an is_missing_secrets that is not a boolean"
    count = body.get("referenced_by_count")
    if count is None:
        return f"{what} has no referenced_by_count, which the list must carry" if listed else None
    if not _is_count(count):
        return f"{what} has a referenced_by_count that is not a non-negative integer"
    return None


def _live_connector(method: str, path: str, body: Any, *, listed: bool = False) -> LiveConnector:
    """One connector of an answer, checked field by field. `listed`: it comes from
    GET .../api/actions/connectors, the only answer that carries referenced_by_count."""
    if not isinstance(body, Mapping):
        raise _malformed(method, path, "expected a connector object")
    _refuse_7x_shape(method, path, body)
    problem = _connector_field_error(body, listed=listed)
    if problem is not None:
        raise _malformed(method, path, problem)
    return LiveConnector.from_api(body)


def _refuse_repeated_ids(path: str, connectors: Sequence[LiveConnector]) -> None:
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


def _refuse_ids_in_several_spaces(lists: Mapping[str, Sequence[LiveConnector]]) -> None:
    """Connector ids are global across spaces; only preconfigured connectors (and system actions) are
    listed in every space. The same saved-object id in two spaces' lists means the answers are wrong,
    typically a proxy or basePath rewrite that drops `/s/<space>` so every space returns the default
    space's list: planning from that would create in, or prune from, the wrong space."""
    spaces_of: dict[str, list[str]] = {}
    for space, connectors in lists.items():
        for conn in connectors:
            if not (conn.is_preconfigured or conn.is_system_action):
                spaces_of.setdefault(conn.id, []).append(space)
    shared = {cid: spaces for cid, spaces in sorted(spaces_of.items()) if len(spaces) > 1}
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
    "Connection",
    "KibanaClient",
    "check_space",
    "connector_path",
    "parse_go_bool",
    "redact_url",
    "space_prefix",
]
