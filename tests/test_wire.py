"""kcr's own Kibana transport (reconciler/wire.py) against small HTTP/1.1 servers on loopback: one
connection carries many requests; an idle connection the server has closed is replaced before use,
not failed on; a server's `Connection: close` is honoured; chunked and gzip answers read as httpx
reads them; broken answers become httpx's errors with httpcore's wording; a proxy setting hands the
requests to httpx's own Client. Every server is stopped by the test that started it."""

from __future__ import annotations

import gzip
import json
import os
import resource
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from reconciler.connection import Connection
from reconciler.errors import KibanaError, KibanaUnavailable
from reconciler.kibana import KibanaClient
from reconciler.wire import StdlibTransport

Answer = Callable[[BaseHTTPRequestHandler], None]
LIST = json.dumps([]).encode()


def _json(handler: BaseHTTPRequestHandler, body: bytes = LIST, *, close: bool = False) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    if close:
        handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, answer: Answer) -> None:
        self.connections = 0
        self.paths: list[str] = []
        self._count = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._count:
                    server.connections += 1

            def do_GET(self) -> None:
                server.paths.append(self.path)
                answer(self)

            do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@contextmanager
def serving(answer: Answer) -> Iterator[_Server]:
    server = _Server(answer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def client_for(server: _Server, **env: str) -> KibanaClient:
    host, port = server.server_address[:2]
    return KibanaClient(Connection.from_env({"KIBANA_URL": f"http://{host!s}:{port}", **env}), retries=0,
                        sleep=lambda s: None)


def test_one_connection_carries_every_request() -> None:
    with serving(_json) as server, client_for(server) as client:
        for _ in range(5):
            assert client.list_connectors("default") == []
    assert server.connections == 1 and len(server.paths) == 5
    assert isinstance(client._transport, StdlibTransport)


def test_an_idle_connection_the_server_closed_is_replaced_not_failed_on() -> None:
    """The server drops the connection once it has answered, without saying so (as a keep-alive
    timeout does): the next request, sent after the drop, neither fails nor is retried (retries=0
    would make any failure an error)."""
    hung_up = threading.Event()

    def answer_then_hang_up(handler: BaseHTTPRequestHandler) -> None:
        _json(handler)
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
        hung_up.set()

    with serving(answer_then_hang_up) as server, client_for(server) as client:
        for _ in range(3):
            hung_up.clear()
            assert client.list_connectors("default") == []
            assert hung_up.wait(timeout=10)
    assert server.connections == 3 and len(server.paths) == 3


def test_connection_close_is_honoured() -> None:
    with serving(lambda h: _json(h, close=True)) as server, client_for(server) as client:
        for _ in range(2):
            assert client.list_connectors("default") == []
    assert server.connections == 2


def test_chunked_and_gzip_answers_read_as_httpx_reads_them() -> None:
    body = json.dumps([{"id": "a"}]).encode()

    def chunked_gzip(handler: BaseHTTPRequestHandler) -> None:
        packed = gzip.compress(body)
        handler.send_response(200, "Fine")
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("X-Note", "caf\xe9")  # latin-1 in a header value
        handler.end_headers()
        for start in range(0, len(packed), 7):
            piece = packed[start : start + 7]
            handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    with serving(chunked_gzip) as server:
        host, port = server.server_address[:2]
        transport = StdlibTransport(verify=None, timeout=httpx.Timeout(5.0), keepalive=4)
        try:
            request = httpx.Request("GET", f"http://{host!s}:{port}/x", headers={"Accept-Encoding": "gzip"})
            response = transport.handle_request(request)
            again = transport.handle_request(httpx.Request("GET", f"http://{host!s}:{port}/y"))
        finally:
            transport.close()
    assert response.json() == [{"id": "a"}] and again.content == body
    assert response.reason_phrase == "Fine" and response.headers["x-note"] == "caf\xe9"
    assert response.request is request
    assert server.connections == 1  # a chunked answer read to its end leaves the connection usable


@pytest.mark.parametrize(
    ("raw", "error", "wording"),
    [
        (b"", httpx.RemoteProtocolError, "Server disconnected without sending a response."),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[]", httpx.RemoteProtocolError,
         "received 2 bytes, expected 8"),
        (b"NOT HTTP\r\n\r\n", httpx.RemoteProtocolError, "BadStatusLine"),
    ],
    ids=["no answer", "body cut short", "not HTTP"],
)
def test_broken_answers_are_httpx_errors(raw: bytes, error: type[Exception], wording: str) -> None:
    def broken(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(raw)
        handler.wfile.flush()
        handler.close_connection = True

    with serving(broken) as server:
        host, port = server.server_address[:2]
        transport = StdlibTransport(verify=None, timeout=httpx.Timeout(5.0), keepalive=4)
        try:
            with pytest.raises(error, match=wording):
                transport.handle_request(httpx.Request("GET", f"http://{host!s}:{port}/x"))
        finally:
            transport.close()


def test_a_refused_connection_is_a_connect_error_named_in_the_message() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    conn = Connection.from_env({"KIBANA_URL": f"http://127.0.0.1:{port}"})
    with KibanaClient(conn, retries=0, sleep=lambda s: None) as client, pytest.raises(KibanaUnavailable) as caught:
        client.list_connectors("default")
    assert "ConnectError: [Errno 111] Connection refused" in str(caught.value)


def test_https_without_tls_settings_fails_to_connect_instead_of_going_unverified() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        transport = StdlibTransport(verify=None, timeout=httpx.Timeout(5.0), keepalive=4)
        with pytest.raises(httpx.ConnectError, match="no TLS settings"):
            transport.handle_request(httpx.Request("GET", f"https://127.0.0.1:{port}/"))
        transport.close()


def test_a_proxy_setting_hands_requests_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy selection (NO_PROXY among it) is httpx's job: with a proxy variable set kcr sends through
    httpx's Client, which here goes straight to the server because NO_PROXY names it."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: used, it would fail
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with serving(_json) as server, client_for(server) as client:
        assert client.list_connectors("default") == []
        assert client._transport is None and isinstance(client._client, httpx.Client)
    assert server.connections == 1


def test_a_connection_past_descriptor_1023_is_still_reused() -> None:
    """select() cannot watch a descriptor past 1023; the idle check must not call every such
    connection stale (each request would open a new one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is too low to get past 1023")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200) if hard == resource.RLIM_INFINITY
                                                else min(max(soft, 1200), hard), hard))
    held: list[int] = []
    try:
        with serving(_json) as server:
            while not held or held[-1] < 1030:
                held.append(os.dup(0))
            with client_for(server) as client:
                for _ in range(3):
                    assert client.list_connectors("default") == []
        assert server.connections == 1
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _encoded(encoding: str, body: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # "raw deflate", as some servers send deflate
    return raw.compress(body) + raw.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw deflate"])
def test_compressed_answers_are_decoded_on_kcr_s_own_path(encoding: str) -> None:
    listed = [{"id": "a", "name": "n", "connector_type_id": ".index", "config": {}, "is_preconfigured": False,
               "is_deprecated": False, "is_missing_secrets": False, "is_system_action": False,
               "referenced_by_count": 0}]

    def compressed(handler: BaseHTTPRequestHandler) -> None:
        assert handler.headers["Accept-Encoding"] == "gzip, deflate"
        packed = _encoded(encoding, json.dumps(listed).encode())
        handler.send_response(200)
        handler.send_header("Content-Encoding", encoding.split()[-1])
        handler.send_header("Content-Length", str(len(packed)))
        handler.end_headers()
        handler.wfile.write(packed)

    with serving(compressed) as server, client_for(server) as client:
        [live] = client.list_connectors("default")
    assert live.id == "a" and live.referenced_by_count == 0


def test_an_encoding_kcr_did_not_ask_for_is_a_transport_error_not_garbage() -> None:
    def brotli(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Encoding", "br")
        handler.send_header("Content-Length", "4")
        handler.end_headers()
        handler.wfile.write(b"\x0b\x01\x80[")

    with serving(brotli) as server, client_for(server) as client, pytest.raises(KibanaUnavailable) as caught:
        client.list_connectors("default")
    assert "DecodingError" in str(caught.value) and "'br'" in str(caught.value)


def test_what_kcr_s_own_path_sends() -> None:
    """Host, the credential, kbn-xsrf and a Content-Length on a write; none on a read; the query as
    httpx encodes it; a Retry-After read in any letter case."""
    seen: list[tuple[str, str, dict[str, str]]] = []
    answers = iter([429, 200, 200, 200])

    def record(handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        handler.rfile.read(length)
        seen.append((handler.command, handler.path, dict(handler.headers.items())))
        status = next(answers)
        if status == 429:
            handler.send_response(429)
            handler.send_header("RETRY-AFTER", "3")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        _json(handler, b"{}")

    waits: list[float] = []
    with serving(record) as server:
        host, port = server.server_address[:2]
        conn = Connection.from_env({"KIBANA_URL": f"http://{host!s}:{port}/kibana", "KIBANA_API_KEY": "id:key"})
        with KibanaClient(conn, sleep=waits.append) as client:
            client._request("GET", "/api/x", params={"search": "a b&c", "per_page": "100"}, idempotent=True)
            client._request("POST", "/api/y", body={"n": 1}, idempotent=False)
    assert waits == [3.0]
    (_, first, read), (_, again, _), (method, written, wrote) = seen[0], seen[1], seen[2]
    as_httpx = httpx.URL("http://h/kibana/api/x", params={"search": "a b&c", "per_page": "100"})
    assert first == again == as_httpx.raw_path.decode()
    assert read["Host"] == f"{host!s}:{port}" and read["Authorization"].startswith("ApiKey ")
    assert "Content-Length" not in read and "kbn-xsrf" not in read
    assert (method, written) == ("POST", "/kibana/api/y")
    assert wrote["kbn-xsrf"] == "true" and wrote["Content-Length"] == "8"
    assert wrote["Content-Type"] == "application/json"


# --- what the review of this transport found (each fails on the first version of it) -------------------


@contextmanager
def raw_server(talk: Callable[[socket.socket], None]) -> Iterator[tuple[int, list[int]]]:
    """A loopback server speaking raw bytes: `talk` gets each accepted connection; the list counts them."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            threading.Thread(target=_talking, args=(talk, conn), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


def _talking(talk: Callable[[socket.socket], None], conn: socket.socket) -> None:
    with conn, suppress(OSError):
        talk(conn)


def _head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _transport(clock: Callable[[], float] = time.monotonic) -> StdlibTransport:
    return StdlibTransport(verify=None, timeout=httpx.Timeout(5.0), keepalive=4, clock=clock)


TIMEOUTS = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": None}


def test_an_idle_connection_past_its_expiry_is_not_reused() -> None:
    """A NAT or a load balancer may drop an idle connection without a word: past 5 s idle (httpx's
    keepalive expiry) a new one is made instead of waiting out a whole timeout on a dead one."""
    now = [100.0]

    def answer_each(conn: socket.socket) -> None:
        while _head(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    with raw_server(answer_each) as (port, accepted):
        transport = _transport(clock=lambda: now[0])
        try:
            for step in (0.0, 4.9, 5.2):  # idle 4.9 s: reused; then idle 5.2 s: not
                now[0] += step
                transport.exchange(("http", "127.0.0.1", port), "GET", "/", [("Host", "h")], None, TIMEOUTS)
        finally:
            transport.close()
    assert len(accepted) == 2


def test_an_answer_sent_before_the_body_was_read_is_the_answer() -> None:
    """A server refusing a large body (413) answers and closes before reading it: kcr reports the 413,
    not a broken pipe (which would send a create into its confirm-by-read path)."""

    def refuse(conn: socket.socket) -> None:
        _head(conn)
        conn.sendall(b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
        conn.shutdown(socket.SHUT_WR)

    body = b"x" * 20_000_000
    with raw_server(refuse) as (port, _):
        transport = _transport()
        try:
            answer = transport.exchange(("http", "127.0.0.1", port), "PUT", "/", [("Host", "h"), (
                "Content-Length", str(len(body)))], body, TIMEOUTS)
        finally:
            transport.close()
    assert answer.status_code == 413


def test_an_informational_answer_is_followed_by_the_real_one() -> None:
    """103 Early Hints (http.client skips only 100 Continue): the real answer is read, and the connection
    still carries the next request."""

    def hints(conn: socket.socket) -> None:
        while _head(conn):
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")

    with raw_server(hints) as (port, accepted):
        transport = _transport()
        try:
            answers = [transport.exchange(("http", "127.0.0.1", port), "POST", "/", [("Host", "h"), (
                "Content-Length", "2")], b"{}", TIMEOUTS) for _ in range(2)]
        finally:
            transport.close()
    assert [(a.status_code, a.content) for a in answers] == [(201, b"{}")] * 2 and len(accepted) == 1


@pytest.mark.parametrize(("encoding", "body", "read"), [
    ("gzip", b"", b""),  # a 204 or 429 from a proxy that labels every answer
    ("gzip, identity", gzip.compress(b"[]"), b"[]"),  # a list of encodings, undone last first
], ids=["empty body labelled gzip", "a list of encodings"])
def test_content_encodings_as_httpx_reads_them(encoding: str, body: bytes, read: bytes) -> None:
    def labelled(conn: socket.socket) -> None:
        _head(conn)
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)

    with raw_server(labelled) as (port, _):
        transport = _transport()
        try:
            answer = transport.exchange(("http", "127.0.0.1", port), "GET", "/", [("Host", "h")], None, TIMEOUTS)
        finally:
            transport.close()
    assert answer.content == read


def test_a_secret_quoted_in_a_latin1_error_page_is_masked() -> None:
    """The page's charset decides how it reads: decoded as UTF-8 a latin-1 'ü' is no longer the secret's
    'ü', and the secret would print almost whole."""
    canary = "H\u00fcttenk\u00e4se-9f2a-canary"

    def echo(handler: BaseHTTPRequestHandler) -> None:
        handler.rfile.read(int(handler.headers["Content-Length"]))
        page = f"<html>bad value {canary}</html>".encode("latin-1")
        handler.send_response(400)
        handler.send_header("Content-Type", "text/html; charset=ISO-8859-1")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)

    with serving(echo) as server, client_for(server) as client, pytest.raises(KibanaError) as caught:
        client.create_connector("default", "a", name="n", type=".webhook", config={}, secrets={"password": canary})
    assert canary not in str(caught.value) and "bad value ***" in str(caught.value)
