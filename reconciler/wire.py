"""The Kibana client's HTTP/1.1 transport on the standard library's http.client.

Why not httpx's own: at apply's scale the HTTP stack's CPU was most of the run's. On the bench box one
POST cost ~1.9 ms of CPU through httpx.Client and its transport (httpcore, h11), ~0.9 ms as an
httpx.Request sent through this transport, 0.6 ms through bare http.client (bench/apply.py prints the
floors), so 10,000 creates spent more in httpx than in all of kcr. kcr keeps httpx's Request, Response
and exceptions, so retries, messages, the sandbox's in-process transports and tests see the same types,
and sends them here without an httpx.Client (reconciler/kibana.py). Behind a proxy kcr uses httpx's
Client as before: proxy selection (NO_PROXY, schemes, CONNECT) is httpx's job, not this module's.

What it does: one keep-alive connection per request in flight, idle ones kept (most recent first) up to
`keepalive`, an idle connection the server has closed or written to is dropped before use (as httpcore
does); every connect, TLS handshake, read and write waits at most what is left of the request's deadline
(reconciler/deadline.py) and at most the request's own timeout; failures are httpx's exception types
with httpcore's wording where it had one.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import threading
from typing import Any

import httpx

from reconciler.deadline import WRITE_SLICE, bounded, timed_out

_Key = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Socket:
    """The part of a socket http.client uses (sendall, makefile, close), each wait cut to the deadline."""

    def __init__(self, sock: socket.socket, read: float | None, write: float | None) -> None:
        self.sock = sock
        self.read_timeout = read
        self.write_timeout = write

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), WRITE_SLICE):  # a slow reader cannot stretch one large write
            self.sock.settimeout(bounded(self.write_timeout, httpx.WriteTimeout))
            self.sock.sendall(view[start : start + WRITE_SLICE])

    def recv_into(self, buffer: Any) -> int:
        self.sock.settimeout(bounded(self.read_timeout, httpx.ReadTimeout))
        return self.sock.recv_into(buffer)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_Reader(self))

    def close(self) -> None:
        """http.client closes the socket as soon as it reads `Connection: close`, before the body (a real
        socket outlives that while its reader is open); the transport closes it once the answer is read."""


class _Reader(io.RawIOBase):
    """What http.client reads a response from: the socket's bounded reads."""

    def __init__(self, sock: _Socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)


class _Connection:
    __slots__ = ("http", "key", "sock")

    def __init__(self, key: _Key, sock: _Socket) -> None:
        self.key = key
        self.sock = sock
        self.http = http.client.HTTPConnection(key[1], key[2])
        self.http.sock = sock

    def stale(self) -> bool:
        """An idle connection is readable only if the server closed it (or broke the protocol). poll,
        not select: select refuses descriptors past 1023, which would drop every connection of a
        process holding many files."""
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(self.sock.sock, select.POLLIN)
                return bool(poller.poll(0))
            readable, _, _ = select.select([self.sock.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.http.close()
        self.sock.sock.close()


def _timeouts(request: httpx.Request, default: httpx.Timeout) -> dict[str, float | None]:
    given = request.extensions.get("timeout")
    return dict(given) if isinstance(given, dict) else default.as_dict()


class StdlibTransport(httpx.BaseTransport):
    """Sends httpx Requests over http.client connections; see the module's docstring."""

    def __init__(self, *, verify: ssl.SSLContext | None, timeout: httpx.Timeout, keepalive: int) -> None:
        self._ssl = verify  # None: an https:// URL fails to connect rather than go unverified
        self._timeout = timeout
        self._keepalive = keepalive
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        key = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        timeouts = _timeouts(request, self._timeout)
        conn = self._reused(key) or self._connect(key, timeouts)
        conn.sock.read_timeout, conn.sock.write_timeout = timeouts.get("read"), timeouts.get("write")
        try:
            response, reusable = _exchange(conn.http, request)
        except BaseException:
            conn.close()
            raise
        self._release(conn, reusable)
        return response

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- the pool --------------------------------------------------------------------------------

    def _reused(self, key: _Key) -> _Connection | None:
        while True:
            with self._lock:
                index = next((i for i in range(len(self._idle) - 1, -1, -1) if self._idle[i].key == key), None)
                if index is None:
                    return None
                conn = self._idle.pop(index)
            if not conn.stale():
                return conn
            conn.close()

    def _release(self, conn: _Connection, reusable: bool) -> None:
        if reusable:
            with self._lock:
                if not self._closed and len(self._idle) < self._keepalive:
                    self._idle.append(conn)
                    return
        conn.close()

    def _connect(self, key: _Key, timeouts: dict[str, float | None]) -> _Connection:
        scheme, host, port = key
        limit = timeouts.get("connect")
        try:
            sock = socket.create_connection((host, port), bounded(limit, httpx.ConnectTimeout))
        except TimeoutError as exc:
            raise timed_out(httpx.ConnectTimeout, exc) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if self._ssl is None:
                    raise httpx.ConnectError(f"no TLS settings for https://{host}:{port}")
                sock.settimeout(bounded(limit, httpx.ConnectTimeout))
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
        except httpx.HTTPError:
            sock.close()
            raise
        except TimeoutError as exc:
            sock.close()
            raise timed_out(httpx.ConnectTimeout, exc) from exc
        except OSError as exc:  # ssl.SSLError among them: the cause chain keeps it for the TLS message
            sock.close()
            raise httpx.ConnectError(str(exc)) from exc
        return _Connection(key, _Socket(sock, timeouts.get("read"), timeouts.get("write")))


def _exchange(conn: http.client.HTTPConnection, request: httpx.Request) -> tuple[httpx.Response, bool]:
    """One request and its whole answer; whether the connection may carry another."""
    try:
        conn.putrequest(request.method, request.url.raw_path.decode("ascii"), skip_host=True,
                        skip_accept_encoding=True)
        for name, value in request.headers.raw:
            conn.putheader(name, value)
        conn.endheaders(request.content or None)
    except httpx.HTTPError:
        raise
    except TimeoutError as exc:
        raise timed_out(httpx.WriteTimeout, exc) from exc
    except OSError as exc:
        raise httpx.WriteError(str(exc)) from exc
    try:
        answer = conn.getresponse()
        body = answer.read()
    except httpx.HTTPError:
        raise
    except TimeoutError as exc:
        raise timed_out(httpx.ReadTimeout, exc) from exc
    except http.client.RemoteDisconnected as exc:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from exc
    except http.client.IncompleteRead as exc:
        raise httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body (received {len(exc.partial)} bytes, "
            f"expected {exc.expected})") from exc
    except http.client.HTTPException as exc:
        raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}"[:200]) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc)) from exc
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.getheaders()]
    response = httpx.Response(
        answer.status, headers=headers, stream=httpx.ByteStream(body), request=request,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason.encode("latin-1", "replace")},
    )
    response.read()  # decodes a gzip/deflate body, as httpx.Client does
    return response, not answer.will_close


__all__ = ["StdlibTransport"]
