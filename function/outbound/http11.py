"""HTTP/1.1 on one socket: write a request, read one whole response (RFC 9112), nothing more.

Why not ``http.client``: it parses every response's headers through the ``email`` package, ~0.1 ms of
CPU a call here against ~0.03 ms for this module (measured in docs/performance-notes.md) — a third of
a reaper event's own cost at three calls per event. What reaper needs is small: requests already encoded (by
``endpoint`` or httpx), responses framed by Content-Length, chunked coding or the connection's close.
Limits guard against a misbehaving peer: header lines, header count and body size are bounded.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Final, NamedTuple

MAX_LINE: Final = 65536
MAX_HEADERS: Final = 100
MAX_BODY: Final = 64 * 1024 * 1024
_NO_BODY_STATUS: Final = frozenset({204, 304})
_CRLF: Final = b"\r\n"
_UNSAFE: Final = re.compile(rb"[\r\n\0]")


class ProtocolError(Exception):
    """The peer's bytes are not an HTTP/1.1 response reaper can read (or a request it may not send)."""


class UnsafeRequestError(ValueError):
    """A request reaper must not send: a CR, LF or NUL in its target or a header would split it."""


class StaleConnectionError(ConnectionResetError):
    """The server closed the connection before a byte of the response: a kept-alive connection gone stale."""


class Request(NamedTuple):
    """One request as written: its headers name the host and frame the body (Content-Length)."""

    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Response:
    """One response as read off the wire (header names and values as sent)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    content: bytes
    keep_alive: bool


class Connection:
    """One TCP (optionally TLS) connection to one origin."""

    __slots__ = ("_plain", "_timeout", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self._timeout = sock.gettimeout()
        self._plain = not isinstance(sock, ssl.SSLSocket)

    def set_timeout(self, seconds: float | None) -> None:
        """The timeout of each later read or write.

        Only a change touches the socket: ``settimeout`` is a syscall that lets go of the GIL, and on a
        busy worker every such release hands the GIL to another thread.
        """
        if seconds != self._timeout:
            self.sock.settimeout(seconds)
            self._timeout = seconds

    @classmethod
    def open(
        cls, host: str, port: int, *, timeout: float | None, tls: ssl.SSLContext | None = None
    ) -> Connection:
        """Connect (and complete the TLS handshake, verifying ``host``) within ``timeout``."""
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        """Close the connection."""
        self.reader.close()
        self.sock.close()

    def send(self, request: Request) -> None:
        """Write one request."""
        method, target, headers, body = request
        lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
        for name, value in headers:
            lines.append(name + b": " + value)
        # A CR, LF or NUL smuggled into a header (or the target) would split the request: refuse it.
        if _UNSAFE.search(b"".join(lines)) or b" " in target:
            raise UnsafeRequestError("refusing to send a request line or header with CR, LF or NUL")
        self._write(_CRLF.join(lines) + b"\r\n\r\n" + body)

    def _write(self, data: bytes) -> None:
        """Write all of ``data`` within the write timeout.

        A plain socket with a timeout polls before every send, a syscall that lets go of the GIL; a request
        nearly always fits the empty send buffer, so write first, as TLS sockets already do, and leave
        ``sendall`` (poll, then send, within the timeout) only what did not fit.
        """
        if self._plain:
            try:
                written = os.write(self.sock.fileno(), data)
            except BlockingIOError:
                written = 0
            if written == len(data):
                return
            data = data[written:]
        self.sock.sendall(data)

    def receive(self, method: str) -> Response:
        """Read one whole response to a ``method`` request (interim 1xx answers are skipped)."""
        while True:
            version, status, reason = self._status_line()
            headers = self._headers()
            if not 100 <= status < 200:
                break
            if status == 101:
                raise ProtocolError("the server switched protocols")
        fields = {name.lower(): value for name, value in headers}
        connection = fields.get(b"connection", b"").lower()
        keep_alive = b"close" not in connection and (version == b"HTTP/1.1" or b"keep-alive" in connection)
        if method == "HEAD" or status in _NO_BODY_STATUS:
            content = b""
        elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            content = self._chunked()
        elif b"content-length" in fields:
            content = self._exactly(_length(fields[b"content-length"]))
        else:
            content = self._until_close()
            keep_alive = False
        return Response(status, reason, headers, content, keep_alive)

    # -- reading ----------------------------------------------------------------------------------------
    def _line(self) -> bytes:
        line = self.reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError("response line too long")
        return line

    def _status_line(self) -> tuple[bytes, int, bytes]:
        line = self._line()
        if not line:
            raise StaleConnectionError("the server closed the connection without answering")
        version, _, rest = line.rstrip(_CRLF).partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {line[:40]!r}")
        return version, int(code), reason

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        while True:
            line = self._line()
            if line in (_CRLF, b"\n"):
                return headers
            name, colon, value = line.partition(b":")
            if not line.endswith(b"\n") or not colon or not name or name != name.strip():
                raise ProtocolError(f"malformed header line {line[:40]!r}")
            headers.append((name, value.strip()))
            if len(headers) > MAX_HEADERS:
                raise ProtocolError("too many response headers")

    def _exactly(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            raise ProtocolError(f"the connection closed {size - len(data)} bytes short of the response body")
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                self._headers()  # trailers, ignored
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise ProtocolError("response body too large")
            parts.append(self._exactly(size))
            if self._exactly(2) != _CRLF:
                raise ProtocolError("chunk not followed by CRLF")

    def _until_close(self) -> bytes:
        data = self.reader.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise ProtocolError("response body too large")
        return data


def _length(value: bytes) -> int:
    if not value.isdigit():
        raise ProtocolError(f"bad Content-Length {value[:20]!r}")
    size = int(value)
    if size > MAX_BODY:
        raise ProtocolError("response body too large")
    return size
