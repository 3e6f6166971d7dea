"""The Kibana HTTP client: requests sent through kcr's own transport (reconciler/wire.py; httpx's
behind a proxy), typed errors keyed on status codes, retries only where they are safe, and never a
secret in a log line or an exception. Where Kibana is and how to reach it (URL, credential, TLS) is
reconciler/connection.py; what an answer must hold and which error a status becomes is
reconciler/answers.py; how long to wait between attempts is reconciler/retry.py.

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

import contextvars
import difflib
import json
import logging
import random as _random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from reconciler import __version__, jsondepth
from reconciler.answers import (
    connector_type,
    describe,
    error_for,
    live_connector,
    malformed,
    refuse_ids_in_several_spaces,
    refuse_repeated_ids,
    refuse_tls_failure,
)
from reconciler.connection import (
    DEFAULT_SPACE,
    Connection,
    check_space,
    connector_path,
    path_segment,
    proxied,
    redact_url,
    space_prefix,
    unverified_ssl_context,
)
from reconciler.deadline import DeadlineClient, deadline
from reconciler.errors import ConfigError, KibanaConflict, KibanaUnavailable
from reconciler.masking import Masker
from reconciler.model import ConnectorTypeInfo, LiveConnector, LiveSpace, LiveState, RuleRef
from reconciler.retry import RETRY_STATUSES, RetryPolicy, Sent
from reconciler.wire import Origin, Reply, StdlibTransport

log = logging.getLogger("kcr.kibana")

RULES_PER_PAGE = 100
MAX_RULE_PAGES = 100
READ_LIVE_WORKERS = 4  # lists read at once by a plan, unless KCR_READ_CONCURRENCY says otherwise
MAX_READ_CONCURRENCY = 32  # a Kibana answers each list from its saved objects: more at once only queues there
# Idle connections kept: one per worker at --parallelism 64 (httpx's 20 made most requests of such an
# apply open a new connection, a churn that can overflow a server's accept queue). The number in use
# is not capped: each of kcr's threads holds at most one, so no worker ever waits for the pool.
KEEPALIVE_CONNECTIONS = 64
MISSING: Any = object()  # a 404 where absence is an answer, not an error


class KibanaClient:
    """One Kibana, read and written through the Actions and Spaces APIs. `sleep`, `random` and `clock`
    feed the retry policy, so tests record the waits instead of spending them."""

    def __init__(
        self,
        conn: Connection,
        *,
        transport: httpx.BaseTransport | None = None,
        retries: int = 4,
        throttled: int = 10,
        read_concurrency: int = READ_LIVE_WORKERS,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.read_concurrency = read_concurrency
        # The run's own credential is masked in every message, with the secrets of the request at hand:
        # a 401 page or a proxy may echo the Authorization header back.
        self._mask = Masker(list(conn.auth_secrets))
        # A 429 has its own budget (`throttled`): being throttled never uses up the retries for failures.
        self.retry = RetryPolicy(retries, throttled, backoff, sleep=sleep, random=random, clock=clock)
        # What an httpx.Client would send by default, spelled out: kcr builds its requests itself.
        self._headers = {"User-Agent": f"kcr/{__version__}", "Accept": "application/json",
                         "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}
        if conn.auth_header:
            self._headers["Authorization"] = conn.auth_header
        self._base = conn.url.rstrip("/") + "/"
        base = httpx.URL(self._base)  # parsed once: kcr's own transport is given origin, Host and target
        host = base.raw_host.decode("ascii")
        self._origin: Origin = (base.scheme, host, base.port or (443 if base.scheme == "https" else 80))
        self._host = base.netloc.decode("ascii")
        self._prefix = base.raw_path.decode("ascii")
        # The per-operation timeouts stay as caps; the deadline set in _send_once bounds the whole request.
        timeout = httpx.Timeout(conn.timeout, connect=conn.connect_timeout)
        self._timeouts = timeout.as_dict()
        self._client: httpx.Client | None = None
        if transport is None and proxied():
            # Proxy selection (NO_PROXY, schemes, CONNECT) is httpx's: its Client, as before.
            self._client = DeadlineClient(
                verify=conn.verify(), trust_env=True, follow_redirects=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE_CONNECTIONS),
            )
        elif transport is None:
            verify = conn.verify()
            transport = StdlibTransport(
                verify=verify if isinstance(verify, ssl.SSLContext) else unverified_ssl_context(),
                timeout=timeout, keepalive=KEEPALIVE_CONNECTIONS,
            )
        self._transport = transport

    def __repr__(self) -> str:
        return f"KibanaClient({self.conn!r})"

    def _masking(self, payload: Any) -> Masker:
        """The run's credential and the request's own secrets."""
        return Masker(*self._mask.payloads, payload)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._transport is not None:
            self._transport.close()

    def __enter__(self) -> KibanaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _send_once(self, method: str, path: str, body: Any, params: Mapping[str, str] | None) -> Reply:
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
                response = self._send(method, path, params, headers, content)
        except httpx.HTTPError as exc:
            log.info("%s %s failed after %.0f ms: %s", method, path, (time.monotonic() - started) * 1000,
                      type(exc).__name__)
            raise
        log.info("%s %s -> %d in %.0f ms", method, path, response.status_code, (time.monotonic() - started) * 1000)
        return response

    def _send(self, method: str, path: str, params: Mapping[str, str] | None, headers: Mapping[str, str],
              content: bytes | None) -> Reply:
        """To kcr's own transport as it takes them, without httpx's Request and Response (reconciler/
        wire.py says why); else as an httpx Request: through httpx's Client behind a proxy, or to the
        transport passed in (the in-process sandbox, tests), with what a Client would add done here."""
        if isinstance(self._transport, StdlibTransport):
            target = self._prefix + path.lstrip("/") + (f"?{httpx.QueryParams(params)}" if params else "")
            fields = [("Host", self._host), *self._headers.items(), *headers.items()]
            if content is not None:
                fields.append(("Content-Length", str(len(content))))
            return self._transport.exchange(self._origin, method, target, fields, content, self._timeouts)
        request = httpx.Request(method, self._base + path.lstrip("/"), params=params, content=content,
                                headers={**self._headers, **headers}, extensions={"timeout": self._timeouts})
        if self._client is not None:
            return self._client.send(request)
        assert self._transport is not None
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        response.request = request
        return response

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool,
    ) -> Sent[Reply]:
        """Sends with the retry policy; returns the last response and whether an earlier attempt may
        have reached Kibana (a transport failure or a 5xx), which makes a later 404 on DELETE a success."""
        try:
            return self.retry.call(
                lambda: self._send_once(method, path, body, params),
                repeat=idempotent,
                fatal=lambda exc: refuse_tls_failure(method, path, exc),
            )
        except httpx.HTTPError as exc:
            advice = "check the URL, the network and the proxy settings"
            if isinstance(exc, httpx.TimeoutException):
                advice = f"if Kibana is only slow, raise KCR_TIMEOUT (now {self.conn.timeout:g}s); else {advice}"
            raise KibanaUnavailable(
                f"{method} {path}: Kibana could not be reached ({type(exc).__name__}: "
                f"{self._mask(describe(exc))}); {advice}"
            ) from None

    def _json(self, method: str, path: str, response: Reply) -> Any:
        """Bounded in depth before anything recursive (normalising, fingerprints, schemas) walks it."""
        try:
            return jsondepth.loads(response.content)
        except (jsondepth.TooDeep, jsondepth.NotUnicode) as exc:
            raise malformed(method, path, f"a {response.status_code} answer {exc}") from None
        except ValueError:
            raise malformed(method, path, f"a {response.status_code} answer whose body is not JSON") from None

    def _get(self, path: str, params: Mapping[str, str] | None = None, *, missing_ok: bool = False) -> Any:
        """The decoded body; MISSING for a 404 when `missing_ok` (a JSON null is not a 404)."""
        response, _ = self._request("GET", path, params=params, idempotent=True)
        if missing_ok and response.status_code == 404:
            return MISSING
        if not response.is_success:
            raise error_for("GET", path, response, self._mask)
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
            raise malformed("GET", path, "expected a list of spaces")
        ids: list[str] = []
        for item in body:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                raise malformed("GET", path, "a space without an id")
            ids.append(item["id"])
        return ids

    def list_connectors(self, space: str) -> list[LiveConnector]:
        path = f"{space_prefix(space)}/api/actions/connectors"
        body = self._get(path)
        if not isinstance(body, list):
            raise malformed("GET", path, "expected a list of connectors")
        connectors = [live_connector("GET", path, item, listed=True) for item in body]
        refuse_repeated_ids(path, connectors)
        return connectors

    def get_connector(self, space: str, id: str) -> LiveConnector | None:
        path = connector_path(space, id)
        body = self._get(path, missing_ok=True)
        return None if body is MISSING else live_connector("GET", path, body)

    def connector_types(self, space: str = "default") -> dict[str, ConnectorTypeInfo]:
        """What the plan checks licences and enablement against. Nothing is defaulted to "enabled": a
        recreate to a type Kibana would refuse deletes the old connector and then fails its create."""
        path = f"{space_prefix(space)}/api/actions/connector_types"
        body = self._get(path)
        if not isinstance(body, list) or not body:
            raise malformed("GET", path, "expected a non-empty list of connector types")
        types: dict[str, ConnectorTypeInfo] = {}
        for item in body:
            info = connector_type(path, item)
            types[info.id] = info
        return types

    def rules_referencing(self, space: str, connector_id: str) -> list[RuleRef]:
        """The rules of one space whose actions use the connector (rules `_find` with `has_reference`)."""
        path = f"{space_prefix(space)}/api/alerting/rules/_find"
        path_segment(connector_id, "connector id")
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
                raise malformed("GET", path, "expected an object with a `data` list")
            data = body["data"]
            for item in data:
                if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                    raise malformed("GET", path, "a rule without an id")
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
        workers = max(1, min(self.read_concurrency, len(wanted) + len(witness)))
        caller = contextvars.copy_context()  # its log label (`--all-envs`: the environment) on the readers' lines
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kcr-read") as pool:
            lists = list(pool.map(lambda space: caller.copy().run(self.list_connectors, space), [*wanted, *witness]))
        refuse_ids_in_several_spaces(dict(zip([*wanted, *witness], lists, strict=True)))
        lists = lists[: len(wanted)]
        return LiveState(
            kibana_url=self.conn.url,
            spaces={s: LiveSpace(space=s, connectors=tuple(c)) for s, c in zip(wanted, lists, strict=True)},
            known_spaces=frozenset(known),
            connector_types=types,
        )

    # -- writing ---------------------------------------------------------------------------

    def create_connector(
        self, space: str, id: str, *, name: str, type: str, config: Mapping[str, Any], secrets: Mapping[str, Any]
    ) -> LiveConnector:
        """Never sent twice blindly: a create whose answer is lost is confirmed by reading it back."""
        path = connector_path(space, id)
        body = {"name": name, "connector_type_id": type, "config": dict(config), "secrets": dict(secrets)}
        masked = self._masking(secrets)
        maybe_created = False
        tries = self.retry.start()
        while True:
            response: Reply | None = None
            try:
                response = self._send_once("POST", path, body, None)
            except httpx.HTTPError as exc:
                refuse_tls_failure("POST", path, exc)  # the handshake failed: nothing was sent
                failure = f"{exc.__class__.__name__}: {self._mask(describe(exc))}"  # `type` is the argument
            else:
                status = response.status_code
                if response.is_success:
                    return live_connector("POST", path, self._json("POST", path, response))
                if tries.throttle(response):  # Kibana did nothing: safe to repeat
                    continue
                if status == 409 and maybe_created:
                    confirmed = self._confirm_created(space, id, name, type)
                    if confirmed is not None:
                        return confirmed
                if status < 500:
                    raise error_for("POST", path, response, masked)
                failure = f"Kibana answered {status}"
            # The create may or may not have happened: read before deciding.
            confirmed = self._confirm_created(space, id, name, type)
            if confirmed is not None:
                return confirmed
            maybe_created = True
            if (response is None or response.status_code in RETRY_STATUSES) and tries.again(response):
                continue
            if response is not None:
                raise error_for("POST", path, response, masked)
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
        self, space: str, id: str, *, name: str, config: Mapping[str, Any], secrets: Mapping[str, Any]
    ) -> LiveConnector:
        path = connector_path(space, id)
        body = {"name": name, "config": dict(config), "secrets": dict(secrets)}
        response, _ = self._request("PUT", path, body=body, idempotent=True)
        if not response.is_success:
            raise error_for("PUT", path, response, self._masking(secrets))
        return live_connector("PUT", path, self._json("PUT", path, response))

    def delete_connector(self, space: str, id: str) -> None:
        path = connector_path(space, id)
        response, ambiguous = self._request("DELETE", path, idempotent=True)
        if response.status_code == 404 and ambiguous:
            return  # an earlier attempt deleted it
        if not response.is_success:
            raise error_for("DELETE", path, response, self._mask)

    def execute_connector(self, space: str, id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Runs the connector once. Not idempotent (a real notification): repeated on 429 only."""
        path = connector_path(space, id, "/_execute")
        response, _ = self._request("POST", path, body={"params": dict(params)}, idempotent=False)
        if not response.is_success:
            raise error_for("POST", path, response, self._masking(params))
        if response.status_code == 204 or not response.content:
            return {"connector_id": id, "status": "ok"}
        body = self._json("POST", path, response)
        if not isinstance(body, dict):
            raise malformed("POST", path, "expected an object")
        return body


def read_concurrency(env: Mapping[str, str]) -> int:
    """KCR_READ_CONCURRENCY: how many spaces' lists a plan reads at once (default READ_LIVE_WORKERS),
    a whole number from 1 to MAX_READ_CONCURRENCY."""
    raw = env.get("KCR_READ_CONCURRENCY", "").strip()
    if not raw:
        return READ_LIVE_WORKERS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_READ_CONCURRENCY:
        raise ConfigError(f"KCR_READ_CONCURRENCY={raw!r} is not a whole number from 1 to {MAX_READ_CONCURRENCY}: "
                          f"it is how many spaces' connector lists a plan reads at once (default {READ_LIVE_WORKERS})")
    return value


def _with_suggestion(space: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(space, known, n=1)
    return f"{space} (did you mean {close[0]!r}?)" if close else space


__all__ = ["KibanaClient"]
