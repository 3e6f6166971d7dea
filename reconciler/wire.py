"""The Kibana client's HTTP/1.1 transport on the standard library's http.client.

Why not httpx's own: at apply's scale the HTTP stack's CPU was most of the run's. On the bench box one
POST cost ~1.9 ms of CPU through httpx.Client and its transport (httpcore, h11), ~0.9 ms as an
httpx.Request sent through a transport like this one, 0.6 ms through bare http.client (bench/apply.py
prints the floors), so 10,000 creates spent more in httpx than in all of kcr. So the Kibana client
(reconciler/kibana.py) hands this transport a request as parts (`exchange`: origin, request target,
headers, body) and reads an `Answer`, with no httpx.Client, Request or Response made per request. What
it reads of an answer is `Reply`, which an httpx.Response also is: a transport passed in (the in-process
sandbox, tests) still gets httpx Requests (`handle_request`), and failures are httpx's exception types
with httpcore's wording where it had one, so retries, messages and tests see one set of types. Behind a
proxy kcr uses httpx's Client as before: proxy selection (NO_PROXY, schemes, CONNECT) is httpx's job.

What it does: one keep-alive connection per request in flight, idle ones kept (most recent first) up to
`keepalive` and for at most KEEPALIVE_EXPIRY, an idle connection the server has closed or written to is
dropped before use (as httpcore does); an answer sent before the request's body was all read (a 413) is
the answer, and an informational one (103) is followed by the real one; every connect, TLS handshake,
read and write waits at most what is left of the request's deadline (reconciler/deadline.py) and at most
the request's own timeout; a gzip or deflate answer (kcr asks for them, as httpx does) is decoded, any
other encoding refused.
"""

from __future__ import annotations

import codecs
import http.client
import io
import json
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from reconciler.deadline import WRITE_SLICE, bounded, timed_out

Origin = tuple[str, str, int]  # scheme, host, port: what a connection is to
_DEFAULT_PORTS = {"http": 80, "https": 443}
# An idle connection older than this is closed, not reused (httpx's keepalive_expiry): a NAT or load
# balancer may have dropped it without a word, and a request on it would wait out its whole timeout.
KEEPALIVE_EXPIRY = 5.0


class Reply(Protocol):
    """What kcr reads of an answer: an httpx.Response (a transport passed in, httpx behind a proxy)
    and this module's Answer alike."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    @property
    def is_success(self) -> bool: ...
    def json(self) -> Any: ...


class _Headers(dict[str, str]):
    """An answer's headers by lower-case name, looked up in any case (as httpx.Headers); a repeated
    header's values joined with ", "."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer, read and decoded: an httpx.Response's attributes that kcr reads, without its
    construction (URL, headers and stream objects: a fifth of a create's CPU)."""

    status_code: int
    reason_phrase: str
    headers: _Headers
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """In the charset the answer names (a proxy's latin-1 error page quoting a secret must read as the
        secret, or masking misses it), else UTF-8, as httpx decodes."""
        return self.content.decode(_charset(self.headers.get("content-type")), "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _charset(content_type: str | None) -> str:
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip('"')).name
            except LookupError:
                break
    return "utf-8"


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
    __slots__ = ("http", "idle_since", "key", "sock")

    def __init__(self, key: Origin, sock: _Socket) -> None:
        self.key = key
        self.sock = sock
        self.idle_since = 0.0
        self.http = http.client.HTTPConnection(key[1], key[2])
        self.http.sock = sock
        self.http.auto_open = 0  # never a connection of http.client's own: unbounded, and plain text

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
    """Kibana's requests over pooled http.client connections: `exchange` for kcr's client, and httpx's
    `handle_request` for whoever holds an httpx Request; see the module's docstring."""

    def __init__(self, *, verify: ssl.SSLContext | None, timeout: httpx.Timeout, keepalive: int,
                 keepalive_expiry: float = KEEPALIVE_EXPIRY, clock: Callable[[], float] = time.monotonic) -> None:
        self._ssl = verify  # None: an https:// URL fails to connect rather than go unverified
        self._timeout = timeout
        self._keepalive = keepalive
        self._expiry = keepalive_expiry
        self._clock = clock
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def exchange(self, origin: Origin, method: str, request_target: str, headers: Sequence[tuple[str, str]],
                 body: bytes | None, timeouts: Mapping[str, float | None]) -> Answer:
        """One request, `request_target` the path and query as sent, `headers` all of them (Host
        included); the whole answer, decoded."""
        conn = self._reused(origin) or self._connect(origin, timeouts)
        conn.sock.read_timeout, conn.sock.write_timeout = timeouts.get("read"), timeouts.get("write")
        try:
            answer, reusable = _exchange(conn.http, method, request_target, headers, body)
        except BaseException:
            conn.close()
            raise
        self._release(conn, reusable)
        return answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's interface, for callers that hold httpx Requests."""
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        origin = (url.scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[url.scheme])
        answer = self.exchange(origin, request.method, url.raw_path.decode("ascii"),
                               [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                               request.content or None, _timeouts(request, self._timeout))
        decoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
                   if k not in ("content-encoding", "content-length")]
        return httpx.Response(answer.status_code, headers=decoded, content=answer.content, request=request,
                              extensions={"reason_phrase": answer.reason_phrase.encode("latin-1", "replace")})

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- the pool --------------------------------------------------------------------------------

    def _reused(self, key: Origin) -> _Connection | None:
        while True:
            with self._lock:
                index = next((i for i in range(len(self._idle) - 1, -1, -1) if self._idle[i].key == key), None)
                if index is None:
                    return None
                conn = self._idle.pop(index)
            if self._clock() - conn.idle_since <= self._expiry and not conn.stale():
                return conn
            conn.close()

    def _release(self, conn: _Connection, reusable: bool) -> None:
        if reusable:
            conn.idle_since = self._clock()
            with self._lock:
                if not self._closed and len(self._idle) < self._keepalive:
                    self._idle.append(conn)
                    return
        conn.close()

    def _connect(self, key: Origin, timeouts: Mapping[str, float | None]) -> _Connection:
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


def _exchange(conn: http.client.HTTPConnection, method: str, target: str, headers: Sequence[tuple[str, str]],
              body: bytes | None) -> tuple[Answer, bool]:
    """One request and its whole answer; whether the connection may carry another."""
    unsent: OSError | None = None
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(body)
    except httpx.HTTPError:
        raise
    except TimeoutError as exc:
        raise timed_out(httpx.WriteTimeout, exc) from exc
    except OSError as exc:  # the server may have answered before reading it all (a 413) and closed
        unsent = exc
    try:
        answer = conn.getresponse()
        while 100 < answer.status < 200:  # informational (103 Early Hints): the answer follows
            answer = _following(answer, method)
        raw = answer.read()
    except httpx.HTTPError:
        if unsent is not None:
            raise httpx.WriteError(str(unsent)) from unsent
        raise
    except (OSError, http.client.HTTPException) as exc:
        if unsent is not None:
            raise httpx.WriteError(str(unsent)) from unsent
        raise _read_error(exc) from exc
    fields = _Headers()
    for name, value in answer.getheaders():
        key = name.lower()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    content = _decoded(raw, fields.get("content-encoding"))
    return Answer(answer.status, answer.reason, fields, content), unsent is None and not answer.will_close


def _read_error(exc: OSError | http.client.HTTPException) -> httpx.HTTPError:
    if isinstance(exc, TimeoutError):
        return timed_out(httpx.ReadTimeout, exc)
    if isinstance(exc, http.client.RemoteDisconnected):
        return httpx.RemoteProtocolError("Server disconnected without sending a response.")
    if isinstance(exc, http.client.IncompleteRead):
        return httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body (received {len(exc.partial)} bytes, "
            f"expected {exc.expected})")
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}"[:200])
    return httpx.ReadError(str(exc))


class _Buffered:
    """A socket stand-in whose reader is one already open: what it read ahead belongs to the next answer."""

    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def makefile(self, mode: str) -> Any:
        return self._fp


def _following(informational: http.client.HTTPResponse, method: str) -> http.client.HTTPResponse:
    """The answer after an informational one (http.client skips only 100 Continue), read from the same
    buffered reader. The informational answer is left closed, so the connection can carry the next request."""
    fp = informational.fp
    informational.fp = None  # type: ignore[assignment]  # what http.client itself sets once a body is read
    answer = http.client.HTTPResponse(_Buffered(fp), method=method)  # type: ignore[arg-type]
    answer.begin()
    return answer


def _decoded(body: bytes, encoding: str | None) -> bytes:
    """The body as sent before the Content-Encodings applied to it (gzip, deflate: what kcr asks for), in
    reverse order, as httpx decodes it; an empty body is empty whatever the header says."""
    names = [name.strip().lower() for name in (encoding or "").split(",") if name.strip()]
    for name in reversed(names):
        if not body or name == "identity":
            continue
        try:
            if name == "gzip":
                body = zlib.decompress(body, zlib.MAX_WBITS | 16)
            elif name == "deflate":  # zlib-wrapped as the standard says, or raw as some servers send it
                try:
                    body = zlib.decompress(body)
                except zlib.error:
                    body = zlib.decompress(body, -zlib.MAX_WBITS)
            else:
                raise httpx.DecodingError(f"an answer in Content-Encoding {encoding!r}, which kcr did not ask for")
        except zlib.error as exc:
            raise httpx.DecodingError(f"a {name} body that does not decompress: {exc}") from exc
    return body


__all__ = ["Answer", "Origin", "Reply", "StdlibTransport"]
