"""The in-process transport: httpx talks to a Sandbox with no socket. A dropped-connection fault
surfaces as the error httpx raises when a server hangs up mid-response."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from reconciler.sandbox.app import Sandbox


class SandboxTransport(httpx.BaseTransport):
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raw = request.url.raw_path.decode("ascii", errors="replace")
        path, _, query = raw.partition("?")
        body = request.read()
        response = self._sandbox.handle(request.method, path, query, dict(request.headers), body)
        if response.drop:
            raise httpx.RemoteProtocolError("Server disconnected without sending a complete response.", request=request)
        return httpx.Response(response.status, headers=dict(response.headers), content=response.body,
                              request=request)
