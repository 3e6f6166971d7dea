"""Seeing what kcr sends: a handler for `httpx.MockTransport` that records every request before a
function answers it: a fake Kibana, or `Sandbox.transport().handle_request` to pass each request on;
and respx's view of kcr's own transport."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import respx
import respx.mocks

from reconciler.wire import Answer, _Headers

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Records each request, its body read, then answers through `handler`. Thread-safe: read_live
    lists spaces in parallel and apply writes from several workers."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self._lock:
            self.requests.append(request)
        return self.handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def raw_paths(self) -> list[str]:
        """Each path as sent, still percent-encoded."""
        return [r.url.raw_path.decode() for r in self.requests]

    @property
    def sent(self) -> list[tuple[str, str]]:
        """(method, raw path) of each request."""
        return [(r.method, r.url.raw_path.decode()) for r in self.requests]

    @property
    def writes(self) -> list[tuple[str, str]]:
        """The requests that may change Kibana (reads and the `_find` searches left out)."""
        return [(method, path) for method, path in self.sent if method != "GET" and not path.endswith("/_find")]

    def count(self, method: str) -> int:
        return sum(1 for r in self.requests if r.method == method)



class WireMocker(respx.mocks.AbstractRequestMocker):
    """respx for kcr's own Kibana transport (reconciler/wire.py), which is not httpcore and so not
    seen by respx's default mocker: `respx.mock(using="kcr-wire")`. The transport takes its requests
    as parts (origin, request target, headers, body) and answers with its own Answer: each is turned into
    httpx's for respx's routes and back."""

    name = "kcr-wire"
    targets = ["reconciler.wire.StdlibTransport"]
    target_methods = ["exchange"]

    @classmethod
    def to_httpx_request(cls, **kwargs: Any) -> httpx.Request:
        scheme, host, port = kwargs["origin"]
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        return httpx.Request(kwargs["method"], f"{scheme}://{host}:{port}{kwargs['request_target']}",
                             headers=list(kwargs["headers"]), content=kwargs["body"] or b"")

    @classmethod
    def from_sync_httpx_response(cls, httpx_response: httpx.Response, target: Any, **kwargs: Any) -> Answer:
        httpx_response.read()
        fields = _Headers((k.lower(), v) for k, v in httpx_response.headers.items())
        return Answer(httpx_response.status_code, httpx_response.reason_phrase, fields, httpx_response.content)
