"""An httpx transport on per-thread keep-alive connections (``http11``: HTTP/1.1 on a socket).

Why not httpx's own transport: httpcore's pool takes one lock per request for every thread of a worker
and parses with h11, which made two thirds of reaper's CPU per event (issue 13's profile); and its
``keepalive_expiry`` (5 s) drops every pooled connection between follow-ups that come 15 s or more
apart, so each check paid a new connection (a TLS handshake in production). Here each thread keeps one
connection per origin and reuses it for as long as the server keeps it open.

Reuse is safe by construction: a connection is pooled only when its response accounted for every byte
on it (no body after a 204, nothing after the body) and the server did not say ``close``; a pooled
connection is checked for a close or junk from the server before every reuse (a readable idle socket
means EOF or bytes nobody asked for), and dropped once past the server's ``Keep-Alive: timeout`` or
``max_idle``. If a request still meets a connection the server closed (the close raced the send), it is
sent again on a new connection only when nothing came back and the method is idempotent (RFC 9110
§9.2.2). Every call has a deadline for connect and the whole answer, besides each read's timeout, and a
cap on its body. An origin the environment routes through a proxy (``*_PROXY``, ``NO_PROXY``) goes
through httpx's own transport, as an ``httpx.Client`` would.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from function.outbound.http11 import (
    MAX_BODY,
    Connection,
    ProtocolError,
    Request,
    Response,
    StaleConnectionError,
)

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# An origin that sent no Keep-Alive timeout: idle connections older than this are not trusted (load
# balancers commonly drop idle flows after 60 s without telling either side).
MAX_IDLE: Final = 55.0
# A call's connect and whole answer, by default (REAPER_HTTP_DEADLINE): a peer that drips its answer a
# byte at a time passes every read's timeout, and must not hold a handler thread for longer.
DEADLINE: Final = 30.0
_FAILURES: Final = (OSError, ProtocolError, ValueError)
# What a reused connection the server had closed raises (StaleConnectionError is a ConnectionResetError).
_STALE: Final = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

Origin = tuple[str, str, int]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process-wide verifying TLS context: the CAs httpx would trust, plus ``REAPER_CA_BUNDLE``.

    As httpx: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, else certifi's bundle; ``REAPER_CA_BUNDLE``
    adds a private CA (Huawei Cloud Stack, a proxy's own) to whichever it is. Building one (loading the CA
    bundle) costs ~30 ms; it is built on the first HTTPS connection, not at import.
    """
    cafile, capath = os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        import certifi

        cafile = certifi.where()
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    extra = os.environ.get("REAPER_CA_BUNDLE")
    if extra:
        context.load_verify_locations(cafile=extra)
    return context


def keep_alive(
    *, connect_retries: int = 0, deadline: float = DEADLINE, max_body: int = MAX_BODY
) -> KeepAliveTransport:
    """reaper's transport: per-thread keep-alive connections, TLS verified with the shared context."""
    return KeepAliveTransport(
        ssl_context=tls_context, connect_retries=connect_retries, deadline=deadline, max_body=max_body
    )


@dataclass(slots=True)
class _Pooled:
    """One thread's connection to one origin, and when it stops being trusted."""

    connection: Connection
    usable_until: float


class KeepAliveTransport(httpx.BaseTransport):
    """Sends each request on the calling thread's own keep-alive connection to the request's origin."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        max_idle: float = MAX_IDLE,
        connect_retries: int = 0,
        clock: Callable[[], float] = time.monotonic,
        deadline: float | None = DEADLINE,
        max_body: int = MAX_BODY,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._connect_retries = connect_retries
        self._clock = clock
        self._deadline = deadline
        self._max_body = max_body
        self._local = threading.local()
        self._lock = threading.Lock()
        self._every: set[Connection] = set()
        self._proxied: dict[str, httpx.HTTPTransport] = {}
        # Each origin's proxy (None: direct), read from the environment once, as Endpoint reads it.
        self._routes: dict[Origin, str | None] = {}
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read the whole answer (reaper's answers are small JSON bodies)."""
        try:
            origin = origin_of(request.url)
            if origin not in self._routes:  # a race writes the same answer twice: no lock needed
                self._routes[origin] = environment_proxy(request.url)
            proxy = self._routes[origin]
            if proxy is not None:
                return self._through(proxy).handle_request(request)
            wire = Request(request.method, request.url.raw_path, request.headers.raw, request.read())
            response = self.exchange(origin, wire, request.extensions.get("timeout", {}))
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

        Failures raise ``httpx.TransportError``s; past the deadline, ``httpx.ReadTimeout``.
        """
        deadline = time.monotonic() + self._deadline if self._deadline is not None else None
        pooled = self._take(origin)
        connection = pooled or self._open(origin, timeouts, deadline)
        while True:
            try:
                return self._exchange(connection, origin, request, timeouts, deadline)
            except BaseException as exc:
                self._discard(connection)
                if not isinstance(exc, _FAILURES):
                    raise
                stale = connection is pooled and isinstance(exc, _STALE) and request.method in IDEMPOTENT
                if not stale:
                    raise _mapped(exc, connecting=False) from exc
            # The server closed a kept-alive connection as we reused it, and nothing was answered: once
            # more, on a new connection (which is never ``pooled``, so this happens at most once).
            connection = self._open(origin, timeouts, deadline)

    def close(self) -> None:
        """Close every connection any thread opened."""
        with self._lock:
            self._closed = True
            connections, self._every = self._every, set()
            proxied, self._proxied = self._proxied, {}
        for connection in connections:
            connection.close()
        for transport in proxied.values():
            transport.close()

    def _through(self, proxy: str) -> httpx.HTTPTransport:
        """httpx's transport through ``proxy`` (one per proxy, made on first use)."""
        with self._lock:
            transport = self._proxied.get(proxy)
            if transport is None:
                transport = self._proxied[proxy] = httpx.HTTPTransport(
                    proxy=proxy, verify=self._tls(), retries=self._connect_retries
                )
        return transport

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
        if self._clock() < pooled.usable_until and not pooled.connection.dropped():
            return pooled.connection
        self._discard(pooled.connection)
        return None

    def _open(
        self, origin: Origin, timeouts: Mapping[str, float | None], deadline: float | None
    ) -> Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        for attempt in range(self._connect_retries + 1):
            timeout = timeouts.get("connect")
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise httpx.ConnectTimeout("no connection within the call's deadline")
                timeout = left if timeout is None else min(timeout, left)
            try:
                connection = Connection.open(host, port, timeout=timeout, tls=tls)
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
        self,
        connection: Connection,
        origin: Origin,
        request: Request,
        timeouts: Mapping[str, float | None],
        deadline: float | None,
    ) -> Response:
        connection.set_timeout(timeouts.get("write"))
        connection.send(request)
        response = connection.receive(
            request.method, read_timeout=timeouts.get("read"), deadline=deadline, max_body=self._max_body
        )
        if response.keep_alive:
            self._pool()[origin] = _Pooled(connection, self._clock() + self._idle_limit(response.fields))
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


def environment_proxy(url: httpx.URL | str) -> str | None:
    """The proxy the environment names for ``url`` (``*_PROXY`` / ``NO_PROXY``, as httpx reads them)."""
    target = httpx.URL(url) if isinstance(url, str) else url
    proxies = urllib.request.getproxies()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(target.host):
        return None
    return proxy


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _mapped(exc: BaseException, *, connecting: bool) -> httpx.TransportError:
    """The httpx exception a caller of httpx expects for a low-level failure."""
    error: httpx.TransportError
    if isinstance(exc, TimeoutError):
        error = httpx.ConnectTimeout(_describe(exc)) if connecting else httpx.ReadTimeout(_describe(exc))
    elif isinstance(exc, ssl.SSLCertVerificationError):
        error = httpx.ConnectError(f"certificate verify failed: {exc.verify_message}")
    elif connecting or isinstance(exc, ssl.SSLError):
        error = httpx.ConnectError(_describe(exc))
    elif isinstance(exc, ProtocolError | StaleConnectionError):
        error = httpx.RemoteProtocolError(_describe(exc))
    elif isinstance(exc, OSError):
        error = httpx.ReadError(_describe(exc))
    else:  # ValueError: a method or target that is not ASCII
        error = httpx.LocalProtocolError(_describe(exc))
    return error
