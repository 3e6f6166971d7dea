"""Where Kibana is and how to reach it: the base URL and its checks, the credential and its
precedence, TLS trust, timeouts, and the API paths below the base URL. Separate from the client
(reconciler/kibana.py) because all of it is settled from flags and the environment before any request:
a wrong URL or an unreadable CA file fails here, naming the variable, and the state backend reuses
`redact_url` and `parse_go_bool` without needing a client.

Variable names and precedence are the Terraform provider's (KIBANA_*, then ELASTICSEARCH_*; bearer,
then API key, then basic), because users copy those settings.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from reconciler.errors import ConfigError
from reconciler.model import SPACE_ID_PATTERN, id_segment_problem

log = logging.getLogger("kcr.kibana")  # the client's channel: users filter on one name for Kibana

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_SPACE = "default"
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
        """What the client trusts. An http:// Kibana reached without a proxy never negotiates TLS (the
        client follows no redirect and sends every request to this URL), so it gets a context trusting
        nothing instead of certifi's bundle, whose loading was a sixth of a small plan's CPU (and of every
        `--all-envs` worker's): a TLS connection made all the same fails verification, never passes
        unchecked. Any proxy variable (httpx reads them, and an https:// proxy is TLS): the full trust."""
        if self.insecure:
            return False
        if self.ca_certs:
            return _ssl_context(self.ca_certs, "KIBANA_CA_CERT")
        if urllib.parse.urlsplit(self.url).scheme == "http" and not proxied():
            return _trusting_nothing()
        return default_ssl_context()


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


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """What httpx's verify=True means (certifi's bundle, or SSL_CERT_FILE/SSL_CERT_DIR), built once per
    process: httpx builds it anew for every client, about 60 ms each, which `--all-envs` paid per
    environment and every command per client. A context is safe to share between clients and threads."""
    return httpx.create_ssl_context(verify=True, trust_env=True)


def proxied() -> bool:
    """Whether httpx would send requests through a proxy: the schemes it reads (`get_environment_proxies`).
    Any of them set, the Kibana client leaves proxy selection (NO_PROXY among it) to httpx's Client."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


@functools.cache
def unverified_ssl_context() -> ssl.SSLContext:
    """KIBANA_INSECURE=true as an SSLContext (what httpx builds for verify=False): no certificate or host
    name check, for kcr's own transport, which takes contexts only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@functools.cache
def _trusting_nothing() -> ssl.SSLContext:
    """Verification on (certificate and host name) with no CA loaded: no server can pass it."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


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


def path_segment(value: str, what: str) -> str:
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
    return "" if space == DEFAULT_SPACE else f"/s/{space}"


def connector_path(space: str, connector_id: str | None = None, suffix: str = "") -> str:
    base = f"{space_prefix(space)}/api/actions/connector"
    if connector_id is None:
        return base
    return f"{base}/{path_segment(connector_id, 'connector id')}{suffix}"


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_SPACE",
    "Connection",
    "check_space",
    "connector_path",
    "parse_go_bool",
    "path_segment",
    "redact_url",
    "space_prefix",
]
