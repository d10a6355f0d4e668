"""Issue 24: reaper's HTTP/1.1 response reader reads what h11 (the parser httpx uses) reads, or refuses.

A differential property test: generated responses — valid, mutated and hostile, split into arbitrary
segments — go to both ``function.outbound.http11.Connection`` and an ``h11.Connection`` client; each must
give the same status, headers, body and reusability, or both must refuse. Where reaper is stricter on
purpose, ``stricter`` names the case and the RFC 9112 sentence that allows it, and reaper must refuse:

- Transfer-Encoding and Content-Length together: §6.3, "ought to be handled as an error" (h11 lets
  Transfer-Encoding win);
- a version other than HTTP/1.0 or HTTP/1.1: §2.3, a recipient of HTTP/1.1 reads major version 1 (h11
  takes any ``DIGIT.DIGIT``);
- more than ``MAX_INTERIM`` interim (1xx) answers before the final one (h11 has no bound; a server that
  sends 100 Continue for ever must not hold a handler thread).

Reusable means: the server kept the connection open (not ``close``, not HTTP/1.0, not framed by its
close) and nothing was left after the response (h11: ``their_state`` DONE and no trailing data).
"""

from __future__ import annotations

import re
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from function.outbound import http11
from function.outbound.http11 import MAX_INTERIM, Connection, ProtocolError, StaleConnectionError

Outcome = tuple[Any, ...]
REFUSED: Outcome = ("refused",)


class Segments:
    """A socket's reading side: the segments given, then EOF."""

    def __init__(self, segments: list[bytes]) -> None:
        self.segments = list(segments)

    def gettimeout(self) -> float | None:
        return None

    def recv(self, size: int) -> bytes:
        if not self.segments:
            return b""
        head = self.segments.pop(0)
        if len(head) > size:
            self.segments.insert(0, head[size:])
        return head[:size]


def _headers(pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Names lower-cased; framing headers' values left out (each reader normalises them in its own way)."""
    return [
        (name.lower(), b"" if name.lower() in (b"content-length", b"transfer-encoding") else value)
        for name, value in pairs
    ]


def ours(segments: list[bytes], method: str) -> Outcome:
    sock = Segments(segments)
    try:
        answer = Connection(sock).receive(method)  # type: ignore[arg-type]
    except (ProtocolError, StaleConnectionError):
        return REFUSED
    # Bytes still on the socket: the transport drops the connection before its next use (``dropped``).
    reusable = answer.keep_alive and not sock.segments
    return ("ok", answer.status, answer.reason, _headers(answer.headers), answer.content, reusable)


def theirs(segments: list[bytes], method: str) -> Outcome:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "clouddc.test")]))
    client.send(h11.EndOfMessage())
    pending, final, body, closed = list(segments), None, b"", False
    try:
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                closed = not pending  # the message needed the close to end: not reusable
                client.receive_data(pending.pop(0) if pending else b"")
            elif isinstance(event, h11.Response):
                final = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return REFUSED
    except h11.ProtocolError:
        return REFUSED
    assert final is not None
    client.receive_data(b"".join(pending))
    leftover = client.trailing_data[0]
    reusable = client.their_state is h11.DONE and not leftover and not closed
    return ("ok", final.status_code, final.reason, _headers(list(final.headers.raw_items())), body, reusable)


def stricter(raw: bytes) -> str | None:
    """Why reaper refuses ``raw`` where h11 may read it (None: both must agree)."""
    heads = re.split(rb"\n\r?\n", raw)
    interim = sum(1 for head in heads if head.startswith(b"HTTP/1.1 1"))
    if interim > MAX_INTERIM:
        return "more interim answers than MAX_INTERIM"
    for head in heads:
        first = head.split(b"\n", 1)[0]
        if first.startswith(b"HTTP/") and not first.startswith((b"HTTP/1.0 ", b"HTTP/1.1 ")):
            return "a version other than HTTP/1.0 or 1.1 (RFC 9112 §2.3)"
        names = {line.split(b":", 1)[0].strip().lower() for line in head.split(b"\n")[1:]}
        if {b"content-length", b"transfer-encoding"} <= names:
            return "Transfer-Encoding with Content-Length (RFC 9112 §6.3)"
    return None


def check(raw: bytes, cuts: list[int], method: str = "GET") -> None:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    segments = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True) if raw[a:b]]
    mine = ours(segments, method)
    why = stricter(raw)
    if why is not None:
        h11_says = theirs(segments, method)
        assert mine in (REFUSED, h11_says), (why, raw, mine)
        return
    assert mine == theirs(segments, method), raw


# -- generated responses ----------------------------------------------------------------------------------
EOL = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.x", b"http/1.1"])
CODES = st.one_of(
    st.sampled_from([b"200", b"201", b"202", b"204", b"304", b"400", b"404", b"429", b"503"]),
    st.sampled_from([b"20", b"2000", b"abc", b"099", b"600", b"999"]),
)
REASONS = st.sampled_from(
    [b" OK", b"", b" ", b" Not  Found ", b" Bad\x00Byte", b" caf\xc3\xa9", b" tab\there"]
)
NAMES = st.sampled_from(
    [
        b"Content-Type",
        b"X-Request-Id",
        b"Connection",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Keep-Alive",
        b"Bad Name",
        b"",
        b" Lead",
        b"X-\xff",
        b"Trail ",
        b"Set-Cookie",
    ]
)
VALUES = st.one_of(
    st.sampled_from([b"application/json", b"close", b"keep-alive", b"Keep-Alive, Close", b"timeout=5"]),
    st.sampled_from([b"5", b"0", b"05", b"5, 5", b"5,6", b"-1", b"0x5", b"", b" 5 ", b"1" * 21]),
    st.sampled_from([b"chunked", b"Chunked", b"gzip", b"gzip, chunked", b"chunked, chunked"]),
    st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)


@st.composite
def header_lines(draw: st.DrawFn) -> bytes:
    lines = b""
    for _ in range(draw(st.integers(0, 6))):
        name, value, eol = draw(NAMES), draw(VALUES), draw(EOL)
        separator = draw(st.sampled_from([b": ", b":", b" : ", b":\t"]))
        lines += name + separator + value + eol
        if draw(st.integers(0, 9)) == 0:
            lines += draw(st.sampled_from([b" folded", b"\tfolded", b"  "])) + eol  # obs-fold
    return lines


@st.composite
def chunked_body(draw: st.DrawFn) -> bytes:
    body = b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(st.binary(min_size=1, max_size=20))
        size = draw(
            st.sampled_from(
                [
                    format(len(data), "x").encode(),
                    format(len(data), "X").encode(),
                    b"0x" + format(len(data), "x").encode(),
                    b"-" + format(len(data), "x").encode(),
                    b"+" + format(len(data), "x").encode(),
                    format(len(data), "x").encode() + b";ext=1",
                    format(len(data), "x").encode() + b" ",
                    b" " + format(len(data), "x").encode(),
                    format(len(data) + 1, "x").encode(),
                ]
            )
        )
        body += size + draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"])) + data
        body += draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"XY"]))
    body += b"0" + draw(st.sampled_from([b"\r\n", b"\n", b";last\r\n"]))
    body += draw(header_lines()) + draw(EOL)
    return body


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    raw = b""
    for _ in range(draw(st.integers(0, 2))):
        raw += b"HTTP/1.1 100 Continue" + draw(EOL) + draw(header_lines()) + draw(EOL)
    raw += draw(VERSIONS) + b" " + draw(CODES) + draw(REASONS) + draw(EOL)
    framing = draw(st.sampled_from(["length", "chunked", "close", "none"]))
    content = draw(st.binary(max_size=40))
    if framing == "length":
        stated = draw(
            st.sampled_from([len(content), len(content), max(0, len(content) - 3), len(content) + 3])
        )
        raw += b"Content-Length: " + str(stated).encode() + draw(EOL)
    elif framing == "chunked":
        raw += b"Transfer-Encoding: chunked" + draw(EOL)
    elif framing == "close":
        raw += b"Connection: close" + draw(EOL)
    raw += draw(header_lines()) + draw(EOL)
    raw += draw(chunked_body()) if framing == "chunked" else content
    return raw + draw(st.sampled_from([b"", b"", b"HTTP/1.1 200 OK\r\n\r\n", b"junk"]))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), st.lists(st.integers(0, 400), max_size=6), st.sampled_from(["GET", "GET", "HEAD"]))
def test_reaper_reads_what_h11_reads_or_refuses(raw: bytes, cuts: list[int], method: str) -> None:
    """Every generated response, however split: the same reading as h11's, or refused by both (or by
    reaper alone, where ``stricter`` says why)."""
    check(raw, cuts, method)


# -- the hostile cases of issue 24, by name ---------------------------------------------------------------
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
HOSTILE = {
    "duplicate-differing-content-length": OK_HEAD + b"Content-Length: 2\r\nContent-Length: 4\r\n\r\n{}{}",
    "content-length-list-that-disagrees": OK_HEAD + b"Content-Length: 2, 4\r\n\r\n{}{}",
    "chunk-size-0x": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
    "negative-chunk-size": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n-FFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n",
    "chunk-size-with-plus": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n+2\r\n{}\r\n0\r\n\r\n",
    "chunk-size-over-20-digits": OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"0" * 21 + b"2\r\n{}\r\n",
    "two-transfer-encodings": OK_HEAD
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "gzip-transfer-encoding": OK_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "header-with-space-before-colon": OK_HEAD + b"Content-Length : 2\r\n\r\n{}",
    "header-with-nul": OK_HEAD + b"X-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    "continuation-first": b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n",
    "bare-cr-in-reason": b"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
    "204-with-a-body": b"HTTP/1.1 204 No Content\r\n\r\n" + OK_HEAD + b"Content-Length: 2\r\n\r\n{}",
    "bytes-after-the-body": OK_HEAD + b"Content-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n\r\n",
    "folded-header": OK_HEAD + b"X-Folded: one\r\n  two\r\nContent-Length: 2\r\n\r\n{}",
    "bare-lf-everywhere": b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}",
    "status-without-reason": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n{}",
    "status-below-100": b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    "chunked-and-content-length": OK_HEAD
    + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "http-2-status-line": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "http-1.0-keep-alive": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}",
    "many-100-continues": b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_INTERIM + 1) + b"HTTP/1.1 200 OK\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_response_is_read_as_h11_reads_it(name: str) -> None:
    """The named hostile shapes, whole and a byte at a time."""
    raw = HOSTILE[name]
    check(raw, [])
    check(raw, list(range(1, len(raw))))


def test_the_oracle_catches_a_reader_that_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not vacuous: a reader that lets the last of two differing Content-Lengths win (main before issue
    24) fails the comparison."""

    def last_wins(headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], int | None, bool]:
        fields = {name.lower(): value for name, value in headers}
        length = fields.get(b"content-length")
        return fields, int(length) if length is not None else None, False

    monkeypatch.setattr(http11, "_framing", last_wins)
    with pytest.raises(AssertionError):
        check(HOSTILE["duplicate-differing-content-length"], [])
