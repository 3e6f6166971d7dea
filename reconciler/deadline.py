"""One deadline for a whole HTTP request: connect, TLS, send, response headers and body together.

httpx's timeouts bound each network operation, so a server (or a proxy) that trickles one byte per
read keeps a request alive forever and a run hangs instead of failing. kcr therefore sets a deadline
around each request (`deadline()`), and every connect, read and write waits at most what is left of
it (`bounded()`): in kcr's own transport (reconciler/wire.py) directly, under httpx's (behind a
proxy) through the network backend below. Past it, the operation fails as an httpx timeout whose
message names the setting, so the caller's retry policy and error handling apply unchanged.

The deadline lives in a context variable: a sync request runs in the thread that sends it, so
parallel apply threads each see their own, and pooled connections need no per-request state. A
transport passed in by the caller (the in-process sandbox, tests) is left as it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpcore
import httpx

WRITE_SLICE = 16 * 1024  # a large body is sent in slices, so a slow reader cannot stretch one write


@dataclass(frozen=True)
class _Deadline:
    at: float  # time.monotonic()
    name: str  # the setting, e.g. "KCR_TIMEOUT=60s", for the message


_E = TypeVar("_E", bound=Exception)
_current: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar("kcr_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float, name: str) -> Iterator[None]:
    """Every network operation inside the block shares `seconds` from now."""
    token = _current.set(_Deadline(time.monotonic() + seconds, name))
    try:
        yield
    finally:
        _current.reset(token)


def _message(limit: _Deadline) -> str:
    return f"no complete answer within {limit.name} (connect, send, headers and body together)"


def bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """The operation's own timeout, cut to what is left of the deadline; raises `error` once none is
    left (httpcore's types under httpx's transports, httpx's under reconciler/wire.py)."""
    limit = _current.get()
    if limit is None:
        return timeout
    left = limit.at - time.monotonic()
    if left <= 0:
        raise error(_message(limit))
    return left if timeout is None else min(timeout, left)


def _passed() -> _Deadline | None:
    """The deadline in force, if it has passed."""
    limit = _current.get()
    return limit if limit is not None and time.monotonic() >= limit.at else None


def timed_out(error: type[_E], exc: BaseException) -> _E:
    """The error for a socket timeout: named after the deadline if that is what cut it short."""
    limit = _passed()
    return error(_message(limit)) if limit is not None else error(str(exc) or "timed out")


@contextlib.contextmanager
def _named(error: type[httpcore.TimeoutException]) -> Iterator[None]:
    """A socket timeout that fired because the deadline cut it short says so."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        limit = _passed()
        if limit is None:
            raise
        raise error(_message(limit)) from exc


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _named(httpcore.ReadTimeout):
            return self._inner.read(max_bytes, bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _named(httpcore.WriteTimeout):
            for start in range(0, len(buffer), WRITE_SLICE):
                self._inner.write(buffer[start : start + WRITE_SLICE], bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        with _named(httpcore.ConnectTimeout):
            inner = self._inner.start_tls(ssl_context, server_hostname, bounded(timeout, httpcore.ConnectTimeout))
        return _Stream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps httpcore's backend: every stream it opens waits at most what is left of the deadline."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        with _named(httpcore.ConnectTimeout):
            stream = self._inner.connect_tcp(
                host, port, bounded(timeout, httpcore.ConnectTimeout), local_address, socket_options
            )
        return _Stream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        with _named(httpcore.ConnectTimeout):
            stream = self._inner.connect_unix_socket(path, bounded(timeout, httpcore.ConnectTimeout), socket_options)
        return _Stream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _install(transport: httpx.BaseTransport) -> httpx.BaseTransport:
    """Puts the deadline under one of httpx's own transports (direct or through a proxy). httpx has
    no public hook for a network backend, so this reaches its pool; if a new httpx moved it, kcr
    refuses to start rather than run without a bound."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, httpcore.NetworkBackend):
        raise RuntimeError(
            f"httpx {httpx.__version__} / httpcore {httpcore.__version__}: cannot bound requests by a deadline "
            "(the transport's network backend is not where kcr expects it); install a supported httpx"
        )
    if not isinstance(backend, DeadlineBackend):
        setattr(pool, "_network_backend", DeadlineBackend(backend))  # noqa: B010 - a private attribute
    return transport


class DeadlineClient(httpx.Client):
    """An httpx.Client whose own transports, including those httpx makes for HTTP(S)_PROXY/ALL_PROXY,
    honour `deadline()`. A transport passed in is used as given."""

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx.BaseTransport:
        if kwargs.get("transport") is not None:
            return super()._init_transport(*args, **kwargs)
        return _install(super()._init_transport(*args, **kwargs))

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx.BaseTransport:
        return _install(super()._init_proxy_transport(*args, **kwargs))


__all__ = ["WRITE_SLICE", "DeadlineBackend", "DeadlineClient", "bounded", "deadline", "timed_out"]
