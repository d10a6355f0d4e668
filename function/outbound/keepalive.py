"""An httpx transport on per-thread keep-alive connections (``http11``: HTTP/1.1 on a socket).

Why not httpx's own transport: httpcore's pool takes one lock per request for every thread of a worker
and parses with h11, which made two thirds of reaper's CPU per event (issue 13's profile); and its
``keepalive_expiry`` (5 s) drops every pooled connection between follow-ups that come 15 s or more
apart, so each check paid a new connection (a TLS handshake in production). Here each thread keeps one
connection per origin and reuses it for as long as the server keeps it open.

Reuse is safe by construction: a pooled connection idle for more than ``FRESH`` is checked for a close
from the server before it is used again (a readable idle socket means EOF or junk), and dropped once
past the server's ``Keep-Alive: timeout`` or ``max_idle``. If a request still meets a connection the
server closed (the close raced the send), it is sent again on a new connection only when nothing came
back and the method is idempotent (RFC 9110 §9.2.2).
"""

from __future__ import annotations

import functools
import select
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from function.outbound.http11 import Connection, ProtocolError, Request, Response, StaleConnectionError

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# An origin that sent no Keep-Alive timeout: idle connections older than this are not trusted (load
# balancers commonly drop idle flows after 60 s without telling either side).
MAX_IDLE: Final = 55.0
# A connection answered on less than this long ago is reused without the readability check (a syscall,
# 4.5 % of a busy worker's CPU): no server closes a keep-alive connection that young, and should one,
# an idempotent request is sent again and anything else fails and is redelivered.
FRESH: Final = 0.5
_FAILURES: Final = (OSError, ProtocolError, ValueError)
# What a reused connection the server had closed raises (StaleConnectionError is a ConnectionResetError).
_STALE: Final = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

Origin = tuple[str, str, int]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process-wide verifying TLS context (certifi's CA bundle, as httpx uses by default).

    Building one (loading the CA bundle) costs ~30 ms; httpx builds one per client unless given one. It
    is built on the first HTTPS connection, not at import: a cold start pays only for what it uses.
    """
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def keep_alive(*, connect_retries: int = 0) -> KeepAliveTransport:
    """reaper's transport: per-thread keep-alive connections, TLS verified with the shared context."""
    return KeepAliveTransport(ssl_context=tls_context, connect_retries=connect_retries)


@dataclass(slots=True)
class _Pooled:
    """One thread's connection to one origin: when it was last answered on, when it stops being trusted."""

    connection: Connection
    usable_until: float
    idle_since: float


class KeepAliveTransport(httpx.BaseTransport):
    """Sends each request on the calling thread's own keep-alive connection to the request's origin."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        max_idle: float = MAX_IDLE,
        connect_retries: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._connect_retries = connect_retries
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._every: set[Connection] = set()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read the whole answer (reaper's answers are small JSON bodies)."""
        try:
            wire = Request(request.method, request.url.raw_path, request.headers.raw, request.read())
            response = self.exchange(origin_of(request.url), wire, request.extensions.get("timeout", {}))
        except httpx.TransportError as exc:
            exc.request = request
            raise
        return httpx.Response(
            response.status,
            headers=response.headers,
            content=response.content,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
        )

    def exchange(self, origin: Origin, request: Request, timeouts: Mapping[str, float | None]) -> Response:
        """Send ``request`` to ``origin`` on this thread's connection and read the whole response.

        Failures raise ``httpx.TransportError``s.
        """
        pooled = self._take(origin)
        connection = pooled or self._open(origin, timeouts)
        while True:
            try:
                return self._exchange(connection, origin, request, timeouts)
            except BaseException as exc:
                self._discard(connection)
                if not isinstance(exc, _FAILURES):
                    raise
                stale = connection is pooled and isinstance(exc, _STALE) and request.method in IDEMPOTENT
                if not stale:
                    raise _mapped(exc, connecting=False) from exc
            # The server closed a kept-alive connection as we reused it, and nothing was answered: once
            # more, on a new connection (which is never ``pooled``, so this happens at most once).
            connection = self._open(origin, timeouts)

    def close(self) -> None:
        """Close every connection any thread opened."""
        with self._lock:
            self._closed = True
            connections, self._every = self._every, set()
        for connection in connections:
            connection.close()

    # -- connections ------------------------------------------------------------------------------
    def _pool(self) -> dict[Origin, _Pooled]:
        pool: dict[Origin, _Pooled] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _take(self, origin: Origin) -> Connection | None:
        """This thread's idle connection to ``origin``, if it is still trustworthy."""
        pooled = self._pool().pop(origin, None)
        if pooled is None or self._closed:
            return None
        now = self._clock()
        if now < pooled.usable_until and (now - pooled.idle_since < FRESH or not _dropped(pooled.connection)):
            return pooled.connection
        self._discard(pooled.connection)
        return None

    def _open(self, origin: Origin, timeouts: Mapping[str, float | None]) -> Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        for attempt in range(self._connect_retries + 1):
            try:
                connection = Connection.open(host, port, timeout=timeouts.get("connect"), tls=tls)
                break
            except OSError as exc:
                if attempt == self._connect_retries:
                    raise _mapped(exc, connecting=True) from exc
        with self._lock:
            if self._closed:
                connection.close()
                raise httpx.ConnectError("transport is closed")
            self._every.add(connection)
        return connection

    def _tls(self) -> ssl.SSLContext:
        """The TLS context, built on the first HTTPS connection (a cold start that needs none skips it)."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        elif not isinstance(self._ssl_context, ssl.SSLContext):
            self._ssl_context = self._ssl_context()
        return self._ssl_context

    def _discard(self, connection: Connection) -> None:
        with self._lock:
            self._every.discard(connection)
        connection.close()

    def _exchange(
        self, connection: Connection, origin: Origin, request: Request, timeouts: Mapping[str, float | None]
    ) -> Response:
        connection.set_timeout(timeouts.get("write"))
        connection.send(request)
        connection.set_timeout(timeouts.get("read"))
        response = connection.receive(request.method)
        if response.keep_alive:
            now = self._clock()
            self._pool()[origin] = _Pooled(connection, now + self._idle_limit(response.fields), now)
        else:
            self._discard(connection)
        return response

    def _idle_limit(self, fields: dict[bytes, bytes]) -> float:
        """How long the connection may idle: the server's Keep-Alive timeout less a margin, if it said."""
        return _stated_idle(fields.get(b"keep-alive", b""), self._max_idle)


@functools.lru_cache(maxsize=64)
def _stated_idle(stated: bytes, max_idle: float) -> float:
    """The idle limit a ``Keep-Alive`` value allows (parsed once per value: a server repeats its own)."""
    for part in stated.split(b","):
        name, _, value = part.strip().partition(b"=")
        if name.strip().lower() == b"timeout":
            try:
                seconds = float(value)
            except ValueError:
                break
            return max(0.0, min(max_idle, seconds - min(1.0, seconds / 2)))
    return max_idle


def origin_of(url: httpx.URL) -> Origin:
    """The (scheme, host, port) a URL's connections go to; only http and https are spoken."""
    scheme = url.scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
    return scheme, url.host, url.port or _DEFAULT_PORTS[scheme]


def _dropped(connection: Connection) -> bool:
    """True when an idle connection is closed or unusable: its socket is readable (EOF) or gone."""
    try:
        readable, _, _ = select.select([connection.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _mapped(exc: BaseException, *, connecting: bool) -> httpx.TransportError:
    """The httpx exception a caller of httpx expects for a low-level failure."""
    error: httpx.TransportError
    if isinstance(exc, TimeoutError):
        error = httpx.ConnectTimeout(_describe(exc)) if connecting else httpx.ReadTimeout(_describe(exc))
    elif connecting or isinstance(exc, ssl.SSLError):
        error = httpx.ConnectError(_describe(exc))
    elif isinstance(exc, ProtocolError | StaleConnectionError):
        error = httpx.RemoteProtocolError(_describe(exc))
    elif isinstance(exc, OSError):
        error = httpx.ReadError(_describe(exc))
    else:  # ValueError: a method or target that is not ASCII
        error = httpx.LocalProtocolError(_describe(exc))
    return error
