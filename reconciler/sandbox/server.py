"""The sandbox over real HTTP: a bare ASGI adapter to `Sandbox.handle` under uvicorn (no web framework:
one catch-all endpoint needs none, and the server must answer on loopback within moments of start; the
package docstring says why starlette is not used).

A dropped-connection fault sends the status line and a Content-Length larger than the body, then
closes: the client sees a response cut short, as when a proxy or Kibana dies mid-answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reconciler.sandbox.app import MAX_PAYLOAD, STATS_PATH, Sandbox

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
START_TIMEOUT_S = 10.0
# Connections the kernel holds for the server before it accepts them (uvicorn's own default when it
# binds; the kernel caps it at net.core.somaxconn). At 128, a client opening connections faster than a
# busy event loop accepts them (an apply at --parallelism 64 whose pool closed most connections after
# each request) overflowed the queue: Linux then drops the handshake's last ACK, the client believes
# it is connected and its request waits for a retransmission, up to its whole timeout.
BACKLOG = 2048
# How long an idle connection stays open: Kibana's `server.keepaliveTimeout` default, 120 s (elastic/kibana
# src/core/packages/http/server-internal/src/http_config.ts). uvicorn's 5 s equals httpx's keep-alive
# expiry, so a client could send a request on a connection the server was closing that same moment.
KEEPALIVE_TIMEOUT_S = 120


class _Dropped(Exception):
    """Raised after a deliberately short response so uvicorn closes the connection."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Dropped))


def _quiet_drops() -> None:
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in log.filters):
        log.addFilter(_QuietDrops())


def asgi_app(sb: Sandbox, clients: set[tuple[str, int]] | None = None) -> Callable[[Scope, Receive, Send], Any]:
    """`clients`, when given, collects the (host, port) of every connection a request came on: how many
    connections a client opened (tests of the client's pool)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if clients is not None and scope.get("client"):
            clients.add(tuple(scope["client"]))
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if size <= MAX_PAYLOAD:  # keep draining past the cap, but store one byte over it at most
                chunks.append(chunk[: MAX_PAYLOAD + 1 - size])
            size += len(chunk)
            more = message.get("more_body", False)
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else quote(scope["path"])
        query = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if sb.latency_s and path != STATS_PATH:
            await asyncio.sleep(sb.latency_s)
        call = partial(sb.handle, scope["method"], path, query, headers, b"".join(chunks), with_latency=False)
        response = await asyncio.get_running_loop().run_in_executor(None, call)
        declared = len(response.body) + (1024 if response.drop else 0)
        out_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        out_headers.append((b"content-length", str(declared).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": response.drop})
        if response.drop:
            raise _Dropped

    return app


class _Server:
    """uvicorn.Server with hooks: `on_ready` once listening, `on_stop` after shutdown (before uvicorn
    re-raises a caught SIGTERM, so state is saved first). Built lazily to keep imports light."""

    @staticmethod
    def create(sb: Sandbox, *, log_level: str, on_ready: Callable[[], None] | None,
               on_stop: Callable[[], None] | None, clients: set[tuple[str, int]] | None = None) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                if on_ready is not None and self.started:
                    on_ready()

            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                try:
                    await super().shutdown(sockets=sockets)
                finally:
                    if on_stop is not None:
                        on_stop()

        config = uvicorn.Config(asgi_app(sb, clients), lifespan="off", log_level=log_level, access_log=False,
                                timeout_graceful_shutdown=5, backlog=BACKLOG,
                                timeout_keep_alive=KEEPALIVE_TIMEOUT_S)
        _quiet_drops()
        return Server(config)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. Without it, a socket handed to uvicorn keeps Nagle on and every
    # response waits ~40 ms for the client's delayed ACK (asyncio sets it only on sockets it creates).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(sb: Sandbox, host: str, port: int, state_path: Path | str | None = None, *,
          on_ready: Callable[[str], None] | None = None, log_level: str = "warning") -> None:
    """Blocking. SIGTERM/SIGINT stop it cleanly; the state file (if any) is saved on the way out."""
    sb.persist_to(state_path)
    sock = _bind(host, port)
    url = _url(host, sock)

    def stopped() -> None:
        if state_path is not None:
            sb.save_state(state_path)

    server = _Server.create(sb, log_level=log_level, on_ready=(lambda: on_ready(url)) if on_ready else None,
                            on_stop=stopped)
    try:
        with _signals_stop(server):
            server.run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def _signals_stop(server: Any) -> Iterator[None]:
    """SIGTERM/SIGINT are the way to stop `serve`, so a clean stop returns normally. uvicorn handles
    them while serving, then re-raises the caught signal against the handlers it found (the process
    would die with -15, or KeyboardInterrupt would make click print `Aborted.` and exit 1): the handlers
    found are these, which only ask the server to exit (also covering a signal before uvicorn's own
    handlers are installed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: Any) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def running(sb: Sandbox, host: str = "127.0.0.1", port: int = 0, *,
            clients: set[tuple[str, int]] | None = None) -> Iterator[str]:
    """A real server in a background thread for tests; yields its base URL, stops and joins on exit.
    `clients`: see `asgi_app`."""
    sock = _bind(host, port)
    ready = threading.Event()
    server = _Server.create(sb, log_level="warning", on_ready=ready.set, on_stop=None, clients=clients)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="kcr-sandbox", daemon=True)
    thread.start()
    try:
        if not ready.wait(START_TIMEOUT_S) or failure or not server.started:
            raise RuntimeError(f"the sandbox server did not start within {START_TIMEOUT_S:.0f}s")
        yield _url(host, sock)
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()


def main_options(host: str, port: int, seed_path: Path | None, state_path: Path | None) -> None:
    """What `kcr sandbox` runs: build from the seed file, persist to the state file, serve until
    SIGTERM/SIGINT, then return normally (state saved) so the CLI exits 0. Raises ConfigError for an
    unreadable seed or state."""
    import click

    sb = Sandbox.from_seed_file(seed_path) if seed_path is not None else Sandbox.from_seed(None)

    def announce(url: str) -> None:
        click.echo(f"kcr sandbox: Kibana connectors API on {url} (offline test double; never use real credentials)")

    serve(sb, host, port, state_path, on_ready=announce, log_level="warning")
