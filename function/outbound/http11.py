"""HTTP/1.1 on one socket: write a request, read one whole response (RFC 9112), nothing more.

Why not h11, the parser httpx uses: measured on a typical CloudDC answer, h11 costs ~180 µs of CPU an
exchange against ~20 µs here (three exchanges an event: it would double reaper's own cost per event;
docs/performance-notes.md). So this reader takes h11's rules instead of its machinery: the same grammar
for the status line, header lines (obs-fold joined), Content-Length (one value, however often repeated)
and chunk headers, the same framing choice and keep-alive rule. ``tests/unit/test_http11_vs_h11.py``
feeds generated and hostile responses to both and requires the same answer or a refusal from both. Where
this reader is stricter, the test names the RFC 9112 sentence that allows it: a response with both
Transfer-Encoding and Content-Length, a version other than HTTP/1.0 or 1.1, trailers over their bound,
more than ``MAX_INTERIM`` interim answers.

Limits guard against a misbehaving peer: the head, its lines, header count, trailers and the body are
bounded, and ``receive`` stops at a deadline for the whole answer, not only per read.
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import time
from typing import Final, NamedTuple

MAX_LINE: Final = 65536
MAX_HEAD: Final = 256 * 1024
MAX_HEADERS: Final = 100
MAX_TRAILERS: Final = 16 * 1024  # h11's bound on any incomplete event
MAX_INTERIM: Final = 16  # 1xx answers before the final one
MAX_BODY: Final = 4 * 1024 * 1024  # the default body cap: a ListInstances page of 1,000 records fits
MAX_CONTENT_LENGTH_DIGITS: Final = 20
_NO_BODY_STATUS: Final = frozenset({204, 304})
_CRLF: Final = b"\r\n"
_RECV_SIZE: Final = 65536

# h11's grammar (h11/_abnf.py), compiled once: RFC 9110 §5.5 field values, RFC 9112 §4 status lines.
_FIELD_CHAR: Final = rb"[^\x00\s]"
_HEADER_FIELD: Final = re.compile(
    rb"(?P<name>[-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*(?P<value>(?:"
    + _FIELD_CHAR
    + rb"+(?:[ \t]+"
    + _FIELD_CHAR
    + rb"+)*)?)[ \t]*"
)
_STATUS_LINE: Final = re.compile(
    rb"HTTP/(?P<version>[0-9]\.[0-9]) (?P<code>[0-9]{3})(?: (?P<reason>(?:[ \t]|[^\x00\s])*))?"
)
_CHUNK_HEADER: Final = re.compile(rb"(?P<size>[0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*\r\n")
_OBS_FOLD: Final = re.compile(rb"[ \t]+")
_DIGITS: Final = re.compile(rb"[0-9]+")
_VERSIONS: Final = frozenset({b"1.0", b"1.1"})


class ProtocolError(Exception):
    """The peer's bytes are not an HTTP/1.1 response reaper can read (or a request it may not send)."""


class BodyTooLargeError(ProtocolError):
    """The answer's body is larger than the cap set for this endpoint."""


class DeadlineError(TimeoutError):
    """The whole answer did not arrive within the call's deadline (each read may still have been quick)."""


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

    ``keep_alive``: the connection may carry the next request (the server did not close it, and nothing
    but this response was on it). A NamedTuple, as ``Request``: immutable, and built in C.
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

    __slots__ = ("_buffer", "_deadline", "_plain", "_poller", "_read_timeout", "_timeout", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._poller: select.poll | None = None
        self._buffer = b""  # bytes received and not yet consumed
        self._timeout = sock.gettimeout()
        self._read_timeout = self._timeout
        self._deadline: float | None = None
        self._plain = not isinstance(sock, ssl.SSLSocket)

    def set_timeout(self, seconds: float | None) -> None:
        """The timeout of each later read or write.

        Only a change touches the socket: ``settimeout`` is a syscall that lets go of the GIL, and on a
        busy worker every such release hands the GIL to another thread.
        """
        if seconds != self._timeout:
            self.sock.settimeout(seconds)
            self._timeout = seconds

    def dropped(self) -> bool:
        """True when an idle connection is unfit for the next request: bytes nobody asked for are buffered
        (here or in TLS), or the socket is readable (the server closed it, or sent junk), or it is gone.

        ``poll``, not ``select``: a descriptor >= 1024 (THREADS=256 keeps one per thread and origin) is
        beyond ``select``'s reach. One poll object per connection, registered once.
        """
        sock = self.sock
        if self._buffer or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            return True
        try:
            if self._poller is None:
                self._poller = select.poll()
                self._poller.register(sock, select.POLLIN | select.POLLPRI)
            return bool(self._poller.poll(0))
        except (OSError, ValueError):
            return True

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

    def receive(
        self,
        method: str,
        *,
        read_timeout: float | None = None,
        deadline: float | None = None,
        max_body: int = MAX_BODY,
    ) -> Response:
        """Read one whole response to a ``method`` request (interim 1xx answers are skipped).

        ``deadline``: a ``time.monotonic()`` instant by which the whole answer must have arrived
        (``DeadlineError`` past it); ``read_timeout`` bounds each read; ``max_body``: the body's cap.
        """
        self._read_timeout, self._deadline = read_timeout, deadline
        self.set_timeout(read_timeout)
        for _ in range(MAX_INTERIM + 1):
            version, status, reason, headers = self._head()
            if status >= 200:
                break
            if status < 100:
                raise ProtocolError(f"status {status} is no HTTP status")
            if status == 101:
                raise ProtocolError("the server switched protocols")
            _framing(headers)  # an interim answer's fields are held to the same rules (as h11 holds them)
        else:
            raise ProtocolError(f"more than {MAX_INTERIM} interim (1xx) answers")
        fields, length, chunked = _framing(headers)
        keep_alive = version == b"1.1" and b"close" not in _tokens(fields.get(b"connection", b""))
        if method == "HEAD" or status in _NO_BODY_STATUS:
            content = b""
        elif chunked:
            content = self._chunked(max_body)
        elif length is not None:
            if length > max_body:
                raise BodyTooLargeError(f"response body of {length} bytes is over the cap of {max_body}")
            content = self._exactly(length)
        else:
            content = self._until_close(max_body)
            keep_alive = False
        # Bytes the response did not account for (a 204 with a body, junk after it): never reuse.
        return Response(status, reason, headers, content, keep_alive and not self._buffer, fields)

    # -- reading ----------------------------------------------------------------------------------------
    def _recv(self) -> bytes:
        """What the peer sends next (b"" when it closed), within the read timeout and the deadline."""
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise DeadlineError("the answer did not complete within the call's deadline")
            read = self._read_timeout
            self.set_timeout(left if read is None or left < read else read)
        try:
            return self.sock.recv(_RECV_SIZE)
        except TimeoutError:
            if self._deadline is not None and self._deadline - time.monotonic() <= 0:
                raise DeadlineError("the answer did not complete within the call's deadline") from None
            raise

    def _fill(self) -> bool:
        """Add what the peer sends next to the buffer; False when it has closed the connection."""
        data = self._recv()
        if not data:
            return False
        self._buffer += data
        return True

    def _lines(self, limit: int, what: str) -> list[bytes]:
        """The lines up to the next blank line (CRLF or bare LF, as h11 splits them), consumed."""
        searched = 0
        while True:
            buffer = self._buffer
            if buffer[:1] == b"\n" or buffer[:2] == _CRLF:  # a blank line at once: no lines
                self._buffer = buffer[1:] if buffer[:1] == b"\n" else buffer[2:]
                return []
            end = _end_of_head(buffer, searched)
            if end:
                break
            if len(buffer) > limit:
                raise ProtocolError(f"response {what} too long")
            searched = max(0, len(buffer) - 2)
            if not self._fill():
                raise ProtocolError(f"the connection closed in the middle of a response {what}")
        if end > limit:
            raise ProtocolError(f"response {what} too long")
        block, self._buffer = self._buffer[:end], self._buffer[end:]
        lines = [line[:-1] if line.endswith(b"\r") else line for line in block.split(b"\n")]
        return lines[:-2]

    def _head(self) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
        """The next response's status line and headers, read up to and including the blank line."""
        if not self._buffer and not self._fill():
            raise StaleConnectionError("the server closed the connection without answering")
        lines = self._lines(MAX_HEAD, "head")
        if not lines:
            raise ProtocolError("no status line: the response begins with a blank line")
        status_line = lines[0]
        matched = _STATUS_LINE.fullmatch(status_line)
        if matched is None or matched["version"] not in _VERSIONS:
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
        if len(lines) > MAX_HEADERS + 1:
            raise ProtocolError("too many response headers")
        return matched["version"], int(matched["code"]), matched["reason"] or b"", _fields(lines[1:])

    def _crlf_line(self) -> bytes:
        """The next line ending in CRLF (a chunk header), with its line ending."""
        searched = 0
        while (end := self._buffer.find(_CRLF, searched)) < 0:
            if len(self._buffer) > MAX_LINE:
                raise ProtocolError("response line too long")
            searched = max(0, len(self._buffer) - 1)
            if not self._fill():
                raise ProtocolError("the connection closed in the middle of a line")
        line, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
        return line

    def _exactly(self, size: int) -> bytes:
        parts, held = [self._buffer], len(self._buffer)
        while held < size:
            data = self._recv()
            if not data:
                raise ProtocolError(f"the connection closed {size - held} bytes short of the response body")
            parts.append(data)
            held += len(data)
        whole = parts[0] if len(parts) == 1 else b"".join(parts)
        self._buffer = whole[size:]
        return whole[:size]

    def _chunked(self, max_body: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self._crlf_line()
            matched = _CHUNK_HEADER.fullmatch(line)
            if matched is None:
                raise ProtocolError(f"bad chunk header {line[:20]!r}")
            size = int(matched["size"], 16)
            if size == 0:
                _fields(self._lines(MAX_TRAILERS, "trailer"))  # read, checked and dropped
                return b"".join(parts)
            total += size
            if total > max_body:
                raise BodyTooLargeError(f"response body over the cap of {max_body} bytes")
            parts.append(self._exactly(size))
            if self._exactly(2) != _CRLF:
                raise ProtocolError("chunk not followed by CRLF")

    def _until_close(self, max_body: int) -> bytes:
        parts, held = [self._buffer], len(self._buffer)
        while data := self._recv():
            parts.append(data)
            held += len(data)
            if held > max_body:
                raise BodyTooLargeError(f"response body over the cap of {max_body} bytes")
        self._buffer = b""
        return b"".join(parts)


def _fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Header lines as (name, value) pairs, checked by h11's grammar; obs-fold lines joined with a space."""
    headers: list[tuple[bytes, bytes]] = []
    last: bytes | None = None
    for line in lines:
        fold = _OBS_FOLD.match(line)
        if fold:
            if last is None:
                raise ProtocolError("a continuation line at the start of the headers")
            last += b" " + line[fold.end() :]
            continue
        if last is not None:
            headers.append(_field(last))
        last = line
    if last is not None:
        headers.append(_field(last))
    return headers


def _field(line: bytes) -> tuple[bytes, bytes]:
    if len(line) > MAX_LINE or (matched := _HEADER_FIELD.fullmatch(line)) is None:
        raise ProtocolError(f"malformed header line {line[:40]!r}")
    return matched["name"], matched["value"]


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], int | None, bool]:
    """The fields by lower-case name, the body's Content-Length and whether it is chunked.

    As h11: repeated Content-Length values must agree, one Transfer-Encoding and only ``chunked``. Both
    together are refused: RFC 9112 §6.3 says such a message "ought to be handled as an error".
    """
    fields: dict[bytes, bytes] = {}
    length: bytes | None = None
    chunked = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            values = {part.strip() for part in value.split(b",")}
            if len(values) != 1:
                raise ProtocolError("conflicting Content-Length values")
            single = values.pop()
            if not _DIGITS.fullmatch(single) or len(single) > MAX_CONTENT_LENGTH_DIGITS:
                raise ProtocolError(f"bad Content-Length {single[:20]!r}")
            if length is not None and length != single:
                raise ProtocolError("conflicting Content-Length headers")
            length = value = single
        elif lower == b"transfer-encoding":
            if chunked:
                raise ProtocolError("more than one Transfer-Encoding header")
            if value.lower() != b"chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {value[:20]!r}")
            chunked = True
        if lower in fields and lower != b"content-length":
            fields[lower] = fields[lower] + b", " + value  # RFC 9110 §5.3: one list, in order
        else:
            fields[lower] = value
    if chunked and length is not None:
        raise ProtocolError("both Transfer-Encoding and Content-Length (RFC 9112 §6.3)")
    return fields, int(length) if length is not None else None, chunked


def _tokens(value: bytes) -> set[bytes]:
    """A comma-separated header's values, lower-case (``Connection: keep-alive, Close``)."""
    return {part.strip().lower() for part in value.split(b",")}


def _end_of_head(data: bytes, start: int) -> int:
    """Where the head in ``data`` ends, just past its blank line (CRLF or a bare LF); 0 if not yet."""
    crlf, lf = data.find(b"\n\r\n", start), data.find(b"\n\n", start)
    if crlf < 0:
        return lf + 2 if lf >= 0 else 0
    return crlf + 3 if lf < 0 or crlf < lf else lf + 2
