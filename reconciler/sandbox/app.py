"""The Sandbox: an offline emulator of Kibana's connectors API, framework-independent.

`Sandbox.handle` runs Kibana's request lifecycle in its order: routing with the `/s/<space>` rewrite
(404, routes.py) → authentication (401) → payload parsing as Hapi does it (413, 415, malformed JSON
400; Hapi parses before the onPostAuth xsrf hook runs) → kbn-xsrf on non-GET (400) → the route's body
schema and per-route checks (the handlers). Faults (latency, 503, 429, dropped connections) are
injected before the lifecycle and never touch the stats path `/__kcr_sandbox/stats`, which Kibana
never uses.

Spaces. API routes in a space the seed does not list behave as Kibana's do (api-behaviour §13: the
spaces plugin checks existence for `/app` paths only): they answer, list only preconfigured connectors,
and a create writes into that space. Only `GET /api/spaces/space/{id}` answers 404 for it. A client
that must refuse unknown spaces asks the spaces API first, as kcr does.

Versions. The seed's `kibana_version` (an exact version, or "8.x"/"9.x" standing for 8.19.0/9.4.0)
chooses the behaviour line where releases differ (kibana9.py: 9.3 and later answer as 9.x), and is
what a `kbn-version` request header must equal (core's
version-check onPostAuth handler, registered after the xsrf one: elastic/kibana
src/core/packages/http/server-internal/src/lifecycle_handlers.ts). `response_fields: current` (the
default) answers with what newer releases add: `is_connector_type_deprecated`, connector_types'
`is_deprecated`/`is_experimental`, and the `elastic-api-version: 2023-10-31` header that core puts
on every `access: public` route's response (router-server-internal/src/route.ts); `legacy` omits them.

Privileges. A credential the seed gives privileges to (`auth.api_keys` as a mapping, `auth.users`
entries with `privileges`) gets Kibana's 403s for what they do not grant (privileges.py: Kibana's
feature privileges, the check of each route and its message); the list forms are superusers. Refusals
are counted under `forbidden` in the stats, next to the route's own count.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl

from reconciler.sandbox import privileges, routes
from reconciler.sandbox.context import Ctx
from reconciler.sandbox.http import HttpError, SandboxResponse, error_response, json_response
from reconciler.sandbox.seed import IN_MEMORY, read_seed, settings_and_store
from reconciler.sandbox.store import Settings, Store

if TYPE_CHECKING:
    import httpx

MAX_PAYLOAD = 1_048_576
STATS_PATH = "/__kcr_sandbox/stats"
RESET_STATS_PATH = "/__kcr_sandbox/reset-stats"
_SAFE_METHODS = frozenset({"GET", "OPTIONS", "HEAD"})
PUBLIC_API_VERSION = "2023-10-31"  # BASE_PUBLIC_VERSION of core's versioned router


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # JSON.parse refuses NaN and Infinity; so do we


class Sandbox:
    def __init__(
        self, settings: Settings, store: Store, *, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._store = store
        self._lock = threading.RLock()
        self._fault_lock = threading.Lock()
        self._rng = random.Random(settings.faults.seed)
        self._clock = clock
        self._sleep = sleep
        self._window: tuple[int, int] = (0, 0)  # (second, requests in it) for rate_limit_per_s
        self._counters: dict[str, int] = {"total": 0}
        self._state_path: Path | None = None

    # ---- construction and persistence ----------------------------------------------------------

    @classmethod
    def from_seed(cls, seed: Mapping[str, Any] | None = None, *, origin: str = IN_MEMORY,
                  **kwargs: Any) -> Sandbox:
        """`origin` names the seed in ConfigError messages. Raises ConfigError listing every problem."""
        settings, store = settings_and_store(seed, origin)
        return cls(settings, store, **kwargs)

    @classmethod
    def from_seed_file(cls, path: Path | str, **kwargs: Any) -> Sandbox:
        """A YAML or JSON seed; its problems are reported as `file:line:col: key: message`."""
        doc = read_seed(path)
        settings, store = settings_and_store(doc.value, str(path), doc)
        return cls(settings, store, **kwargs)

    def load_state(self, path: Path | str) -> None:
        """Replace connectors, rules and executions with the file's (state wins over the seed)."""
        store = Store.load(Path(path))
        with self._lock:
            self._store = store

    def save_state(self, path: Path | str) -> None:
        with self._lock:
            self._store.save(Path(path))

    def persist_to(self, path: Path | str | None) -> None:
        """Load `path` if it exists, then save there after every change (what `--state` does)."""
        if path is None:
            self._state_path = None
            return
        path = Path(path)
        if path.exists():
            self.load_state(path)
        self._state_path = path
        self.save_state(path)

    @property
    def state_path(self) -> Path | None:
        return self._state_path

    # ---- inspection (tests) -------------------------------------------------------------------

    def connectors_in(self, space: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(json.dumps(c)) for c in self._store.connectors.values() if c["space"] == space]

    def rules_in(self, space: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(json.dumps(r)) for r in self._store.rules.values() if r["space"] == space]

    @property
    def executions(self) -> list[dict[str, Any]]:
        with self._lock:
            return json.loads(json.dumps(self._store.executions))  # type: ignore[no-any-return]

    @property
    def counters(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._counters)

    def reset_counters(self) -> None:
        with self._lock:
            self._counters = {"total": 0}

    @property
    def latency_s(self) -> float:
        return self.settings.faults.latency_ms / 1000.0

    def transport(self) -> httpx.BaseTransport:
        from reconciler.sandbox.transport import SandboxTransport

        return SandboxTransport(self)

    # ---- the request lifecycle ----------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, *,
        with_latency: bool = True,
    ) -> SandboxResponse:
        """One request. `with_latency=False` lets an async server sleep without holding a thread."""
        method = method.upper()
        if path == STATS_PATH and method == "GET":
            return json_response(200, dict(self.counters))
        if path == RESET_STATS_PATH and method == "POST":
            self.reset_counters()
            return json_response(200, {})
        try:
            return self._handle(method, path, query, headers, body, with_latency)
        except Exception:  # Kibana answers a generic 500 for any uncaught error, with no detail
            return error_response(500, "An internal server error occurred.")

    def _handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, with_latency: bool,
    ) -> SandboxResponse:
        space, route, params = routes.match(method, path)
        name = f"{method} {route.name if route else 'not_found'}"
        with self._lock:
            self._counters["total"] = self._counters.get("total", 0) + 1
            self._counters[name] = self._counters.get(name, 0) + 1
        fault, drop_after = self._faults(with_latency)
        if fault is not None:
            return fault
        response = self._lifecycle(method, space, route, params, query, headers, body)
        return replace(response, drop=True) if drop_after else response

    def _faults(self, with_latency: bool) -> tuple[SandboxResponse | None, bool]:
        """(a response replacing the real one, whether to cut the connection after applying)."""
        f = self.settings.faults
        if not f.active:
            return None, False
        if f.latency_ms and with_latency:
            self._sleep(self.latency_s)
        with self._fault_lock:
            if f.rate_limit_per_s:
                now = self._clock()
                second = math.floor(now)
                count = self._window[1] + 1 if self._window[0] == second else 1
                self._window = (second, count)
                if count > f.rate_limit_per_s:
                    wait = max(1, math.ceil(second + 1 - now))
                    return error_response(429, "Too Many Requests", {"retry-after": str(wait)}), False
            if f.error_rate and self._rng.random() < f.error_rate:
                return error_response(503, "Service Unavailable: injected fault (kcr sandbox)"), False
            if f.drop_rate and self._rng.random() < f.drop_rate:
                if self._rng.random() < 0.5:
                    return SandboxResponse(503, {}, b"", drop=True), False  # cut before anything is applied
                return None, True
        return None, False

    def _principal(self, headers: Mapping[str, str]) -> str | None:
        """Who authenticated (`apikey:<key>`, `user:<name>`, `anonymous` without `auth`), or None (401)."""
        if not self.settings.auth_enabled:
            return "anonymous"
        value = headers.get("authorization", "")
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            return f"user:{user}" if sep and self.settings.users.get(user) == password else None
        if scheme.lower() == "apikey":
            key = credentials.strip()
            if key in self.settings.api_keys:
                return f"apikey:{key}"
            # A seeded `id:api_key` pair is sent as Kibana wants it, base64-encoded.
            try:
                decoded = base64.b64decode(key, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            return f"apikey:{decoded}" if ":" in decoded and decoded in self.settings.api_keys else None
        return None

    def _authorize(self, principal: str, route: routes.Route, ctx: Ctx, params: dict[str, str]) -> None:
        try:
            privileges.authorize(self.settings.grants.get(principal), route.name, ctx, params)
        except HttpError:
            self._counters["forbidden"] = self._counters.get("forbidden", 0) + 1
            raise

    def _lifecycle(
        self, method: str, space: str, route: routes.Route | None, params: dict[str, str], query: str,
        raw_headers: Mapping[str, str], body: bytes,
    ) -> SandboxResponse:
        in_route = False  # core's route handler reached: its responses (400s included) carry the header
        try:
            if route is None:
                raise HttpError(404, "Not Found")
            headers = {k.lower(): val for k, val in raw_headers.items()}
            principal = self._principal(headers)
            if principal is None:
                raise HttpError(401, "Unauthorized", {"www-authenticate": 'Basic realm="kibana", ApiKey'})
            payload = self._payload(headers, body) if route.parses_body else None
            if method not in _SAFE_METHODS and "kbn-xsrf" not in headers and "kbn-version" not in headers:
                raise HttpError(400, "Request must contain a kbn-xsrf header.")
            self._check_version(headers)
            ctx = Ctx(self.settings, self._store, space, parse_qs(query, keep_blank_values=True), payload)
            in_route = True
            with self._lock:
                ctx.store = self._store
                self._authorize(principal, route, ctx, params)
                response: SandboxResponse = route.handler(ctx, params)
                if ctx.changed and self._state_path is not None:
                    self._store.save(self._state_path)
        except HttpError as exc:
            response = error_response(exc.status, exc.message, exc.headers, exc.attributes)
        if in_route and self.settings.current_fields:
            response = replace(response, headers={**response.headers, "elastic-api-version": PUBLIC_API_VERSION})
        return response

    def _check_version(self, headers: Mapping[str, str]) -> None:
        """Core's createVersionCheckPostAuthHandler: an empty header passes (`requestVersion &&`)."""
        got = headers.get("kbn-version")
        expected = self.settings.kibana_version
        if got and got != expected:
            raise HttpError(
                400,
                f'Browser client is out of date, please refresh the page ("kbn-version" header was "{got}" but '
                f'should be "{expected}")',
                attributes={"expected": expected, "got": got},
            )

    @staticmethod
    def _payload(headers: Mapping[str, str], body: bytes) -> Any:
        if len(body) > MAX_PAYLOAD:
            raise HttpError(413, f"Payload content length greater than maximum allowed: {MAX_PAYLOAD}")
        if not body:
            return None
        ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                return json.loads(body.decode("utf-8"), parse_constant=_no_constants)
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise HttpError(400, "Invalid request payload JSON format") from None
        if ctype.startswith("text/"):
            return body.decode("utf-8", errors="replace")
        if ctype == "application/x-www-form-urlencoded":
            return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        raise HttpError(415, "Unsupported Media Type")
