"""HTTP/1.1 on one socket: write a request, read one whole response (RFC 9112), nothing more.

Why not ``http.client``: it parses every response's headers through the ``email`` package, ~0.1 ms of
CPU a call here against ~0.03 ms for this module (measured in docs/performance-notes.md) — a third of
a reaper event's own cost at three calls per event. What reaper needs is small: requests already encoded (by
``endpoint`` or httpx), responses framed by Content-Length, chunked coding or the connection's close.
Limits guard against a misbehaving peer: the head, its lines, header count and body size are bounded.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Final, NamedTuple

MAX_LINE: Final = 65536
MAX_HEAD: Final = 256 * 1024
MAX_HEADERS: Final = 100
MAX_BODY: Final = 64 * 1024 * 1024
_NO_BODY_STATUS: Final = frozenset({204, 304})
_CRLF: Final = b"\r\n"
_RECV_SIZE: Final = 65536


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


class Response(NamedTuple):
    """One response as read off the wire (header names and values as sent; ``fields`` by lower-case name).

    A NamedTuple, as ``Request``: immutable, and built in C (a frozen dataclass sets each field through
    ``object.__setattr__``, ~1,300 instructions a field, three responses an event).
    """

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    content: bytes
    keep_alive: bool
    fields: dict[bytes, bytes]


class Connection:
    """One TCP (optionally TLS) connection to one origin.

    It reads with ``recv`` into a buffer of its own rather than through a ``makefile`` reader: a response
    nearly always arrives in one segment, and one ``recv`` and one split of its head cost a fraction of a
    ``readline`` per line through ``socket.SocketIO``, Python code on every call.
    """

    __slots__ = ("_buffer", "_plain", "_timeout", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""  # bytes received and not yet consumed
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
        self.sock.close()

    def send(self, request: Request) -> None:
        """Write one request."""
        method, target, headers, body = request
        lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
        for name, value in headers:
            lines.append(name + b": " + value)
        # A CR, LF or NUL smuggled into a header (or the target) would split the request: refuse it.
        head = b"".join(lines)
        if b"\r" in head or b"\n" in head or b"\0" in head or b" " in target:
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
            version, status, reason, headers = self._head()
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
        return Response(status, reason, headers, content, keep_alive, fields)

    # -- reading ----------------------------------------------------------------------------------------
    def _fill(self) -> bool:
        """Add what the peer sends next to the buffer; False when it has closed the connection."""
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            return False
        self._buffer += data
        return True

    def _head(self) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
        """The next response's status line and headers, read up to and including the blank line."""
        searched = 0
        while True:
            end = _end_of_head(self._buffer, searched)
            if end:
                break
            if len(self._buffer) > MAX_HEAD:
                raise ProtocolError("response head too long")
            searched = max(0, len(self._buffer) - 2)
            if not self._fill():
                if not self._buffer:
                    raise StaleConnectionError("the server closed the connection without answering")
                raise ProtocolError("the connection closed in the middle of a response head")
        head, self._buffer = self._buffer[:end], self._buffer[end:]
        status_line, *lines = head.split(b"\n")[:-2]
        version, _, rest = status_line.rstrip(b"\r").partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
        if len(lines) > MAX_HEADERS:
            raise ProtocolError("too many response headers")
        headers: list[tuple[bytes, bytes]] = []
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or len(line) > MAX_LINE:
                raise ProtocolError(f"malformed header line {line[:40]!r}")
            headers.append((name, value.strip()))
        return version, int(code), reason, headers

    def _line(self) -> bytes:
        """The next line (a chunk size or a trailer), with its line ending."""
        searched = 0
        while (end := self._buffer.find(b"\n", searched)) < 0:
            if len(self._buffer) > MAX_LINE:
                raise ProtocolError("response line too long")
            searched = len(self._buffer)
            if not self._fill():
                raise ProtocolError("the connection closed in the middle of a line")
        line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
        return line

    def _exactly(self, size: int) -> bytes:
        parts, held = [self._buffer], len(self._buffer)
        while held < size:
            data = self.sock.recv(_RECV_SIZE)
            if not data:
                raise ProtocolError(f"the connection closed {size - held} bytes short of the response body")
            parts.append(data)
            held += len(data)
        whole = parts[0] if len(parts) == 1 else b"".join(parts)
        self._buffer = whole[size:]
        return whole[:size]

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
                while self._line() not in (_CRLF, b"\n"):
                    pass  # trailers, ignored
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise ProtocolError("response body too large")
            parts.append(self._exactly(size))
            if self._exactly(2) != _CRLF:
                raise ProtocolError("chunk not followed by CRLF")

    def _until_close(self) -> bytes:
        parts, held = [self._buffer], len(self._buffer)
        while data := self.sock.recv(_RECV_SIZE):
            parts.append(data)
            held += len(data)
            if held > MAX_BODY:
                raise ProtocolError("response body too large")
        self._buffer = b""
        return b"".join(parts)


def _end_of_head(data: bytes, start: int) -> int:
    """Where the head in ``data`` ends, just past its blank line (CRLF or a bare LF); 0 if not yet."""
    crlf, lf = data.find(b"\n\r\n", start), data.find(b"\n\n", start)
    if crlf < 0:
        return lf + 2 if lf >= 0 else 0
    return crlf + 3 if lf < 0 or crlf < lf else lf + 2


def _length(value: bytes) -> int:
    if not value.isdigit():
        raise ProtocolError(f"bad Content-Length {value[:20]!r}")
    size = int(value)
    if size > MAX_BODY:
        raise ProtocolError("response body too large")
    return size
