"""reaper's outbound transport: per-thread keep-alive connections that survive what servers do to them."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from function.outbound import Endpoint, KeepAliveTransport, environment_proxy
from function.outbound.http11 import MAX_HEAD, MAX_LINE, Connection, ProtocolError, StaleConnectionError
from tests.pki import make_pki

# What the server does with each request on a connection: answer and keep it open, answer and close
# without saying so (an idle timeout), or read the request and close without answering (a lost race).
Script = Callable[[int, int], str]


class RawServer:
    """A loopback HTTP/1.1 server on raw sockets that counts connections and misbehaves on cue."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = None
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            for index in range(100):
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next(
                    (
                        int(h.split(b":")[1])
                        for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length")
                    ),
                    0,
                )
                body = reader.read(length) if length else b""
                self.heads.append(head)
                self.requests.append((number, head.split(b"\r\n")[0] + b" " + body))
                action = self.script(number, index)
                if action == "drop":
                    return
                if action == "hang":
                    self.closed.wait(10)
                    return
                payload = b'{"ok": true}'
                extra = b"Keep-Alive: timeout=1\r\n" if action == "keepalive-1s" else b""
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + extra
                    + b"Content-Length: %d\r\n\r\n" % len(payload)
                    + payload
                )
                if action == "answer-then-close":
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            if reader is not None:
                reader.close()  # the socket only closes (FIN) once its file object is closed too
            conn.close()
            self.closed.set()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(script, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def always(action: str) -> Script:
    return lambda _connection, _index: action


@pytest.fixture
def transport() -> Iterator[KeepAliveTransport]:
    transport = KeepAliveTransport()
    yield transport
    transport.close()


def call(transport: httpx.BaseTransport, method: str, url: str, timeout: float = 5.0) -> httpx.Response:
    client = httpx.Client(transport=transport, timeout=timeout)
    return client.request(method, url, content=b"{}" if method == "POST" else None)


def test_requests_from_one_thread_share_one_connection(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """Follow-up after follow-up goes out on the connection the first call opened."""
    server = serve(always("answer"))
    for _ in range(5):
        assert call(transport, "GET", server.url + "/v1/x").json() == {"ok": True}
    assert server.connections == 1


def test_each_thread_has_its_own_connection(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """Threads never wait for each other's connection: no pool lock on the hot path."""
    server = serve(always("answer"))
    threads = [threading.Thread(target=call, args=(transport, "GET", server.url + "/")) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.connections == 3
    assert len(server.requests) == 3


def test_a_connection_the_server_closed_while_idle_is_replaced_before_use(
    serve: Callable[..., RawServer],
) -> None:
    """The server's idle timeout closed the connection: even a POST goes out on a new one, once."""
    now = [0.0]
    transport = KeepAliveTransport(clock=lambda: now[0])
    server = serve(always("answer-then-close"))
    assert call(transport, "POST", server.url + "/v1/events").status_code == 200
    assert server.closed.wait(5)
    now[0] += 0.1  # every reuse is checked, however young the connection
    assert call(transport, "POST", server.url + "/v1/events").status_code == 200
    transport.close()
    assert server.connections == 2
    assert [number for number, _ in server.requests] == [1, 2]


def test_an_idempotent_request_that_met_a_closing_connection_is_sent_again(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """The close raced our request and nothing came back: a GET or DELETE is repeated on a new connection."""
    server = serve(lambda connection, index: "drop" if (connection, index) == (1, 1) else "answer")
    assert call(transport, "GET", server.url + "/a").status_code == 200
    assert call(transport, "DELETE", server.url + "/a").status_code == 200
    assert server.connections == 2
    assert [line.split(b" ")[0] for _, line in server.requests] == [b"GET", b"DELETE", b"DELETE"]


def test_a_post_that_met_a_closing_connection_is_not_sent_twice(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """A POST may have been acted on: the caller hears of the failure instead of a silent second send."""
    server = serve(lambda connection, index: "drop" if (connection, index) == (1, 1) else "answer")
    assert call(transport, "GET", server.url + "/a").status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        call(transport, "POST", server.url + "/v1/events")
    assert server.connections == 1
    assert call(transport, "POST", server.url + "/v1/events").status_code == 200


def test_a_fresh_connection_that_fails_is_not_retried(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """Only a reused connection can be stale: a new one that drops the request is a real failure."""
    server = serve(always("drop"))
    with pytest.raises(httpx.RemoteProtocolError):
        call(transport, "GET", server.url + "/a")
    assert server.connections == 1


def test_the_servers_keep_alive_timeout_is_honoured(serve: Callable[..., RawServer]) -> None:
    """``Keep-Alive: timeout=1``: a connection idle for longer is not reused (nor probed)."""
    now = [0.0]
    transport = KeepAliveTransport(clock=lambda: now[0])
    server = serve(always("keepalive-1s"))
    try:
        call(transport, "GET", server.url + "/")
        now[0] += 0.3
        call(transport, "GET", server.url + "/")
        assert server.connections == 1
        now[0] += 1.5
        call(transport, "GET", server.url + "/")
        assert server.connections == 2
    finally:
        transport.close()


def test_a_server_that_never_answers_times_out(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """The read timeout is httpx's: a silent server is a ``ReadTimeout``, not a hang."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(httpx.ReadTimeout):
            call(transport, "GET", f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=0.2)
    finally:
        listener.close()


def test_a_reused_connection_takes_each_requests_own_timeout(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """The timeout is set on the socket only when it changes, yet every request gets its own.

    A first request with a long timeout, a second on the same connection with a short one, which the
    server never answers: it times out after the short one. A timeout that did not change costs no syscall.
    """
    server = serve(lambda _connection, index: "keep" if index < 2 else "hang")
    assert call(transport, "GET", server.url + "/", timeout=30.0).status_code == 200
    assert call(transport, "GET", server.url + "/", timeout=30.0).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        call(transport, "GET", server.url + "/", timeout=0.2)
    assert server.connections == 1
    server.closed.set()


def test_a_timeout_that_did_not_change_is_not_set_again() -> None:
    """``settimeout`` is a syscall that lets go of the GIL: an unchanged value is not set again."""

    class Counting(socket.socket):
        calls = 0

        def settimeout(self, value: float | None) -> None:
            Counting.calls += 1
            super().settimeout(value)

    left, right = socket.socketpair()
    sock = Counting(fileno=left.detach())
    connection = Connection(sock)
    try:
        for value in (5.0, 5.0, 5.0, 0.5, 0.5, None, None):
            connection.set_timeout(value)
            assert sock.gettimeout() == value
        assert Counting.calls == 3
    finally:
        connection.close()
        right.close()


def test_a_request_larger_than_the_send_buffer_goes_out_whole(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """The first write takes what the socket buffer holds; the rest follows within the timeout."""
    server = serve(always("keep"))
    body = bytes(range(256)) * (64 * 1024)  # 16 MiB, far past any loopback send buffer
    client = httpx.Client(transport=transport, timeout=30.0)
    assert client.post(server.url + "/", content=body).status_code == 200
    assert client.post(server.url + "/", content=b"small").status_code == 200
    assert server.requests[0][1] == b"POST / HTTP/1.1 " + body
    assert server.requests[1][1] == b"POST / HTTP/1.1 small"
    assert server.connections == 1


def test_nothing_listening_is_a_connect_error(transport: KeepAliveTransport) -> None:
    """A refused connection maps to ``httpx.ConnectError`` as with httpx's own transport."""
    unused = socket.create_server(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    with pytest.raises(httpx.ConnectError):
        call(transport, "GET", f"http://127.0.0.1:{port}/")


def test_connect_retries_try_again(serve: Callable[..., RawServer]) -> None:
    """``connect_retries`` repeats a refused connect, then gives up with the same error."""
    unused = socket.create_server(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    transport = KeepAliveTransport(connect_retries=2)
    with pytest.raises(httpx.ConnectError):
        call(transport, "GET", f"http://127.0.0.1:{port}/")
    transport.close()


def test_close_closes_every_threads_connections(serve: Callable[..., RawServer]) -> None:
    """After ``close`` nothing stays open, and the transport refuses new work."""
    server = serve(always("answer"))
    transport = KeepAliveTransport()
    thread = threading.Thread(target=call, args=(transport, "GET", server.url + "/"))
    thread.start()
    thread.join()
    call(transport, "GET", server.url + "/")
    transport.close()
    with pytest.raises(httpx.ConnectError):
        call(transport, "GET", server.url + "/")


def test_only_http_and_https(transport: KeepAliveTransport) -> None:
    """Another scheme is refused before anything is opened."""
    with pytest.raises(httpx.UnsupportedProtocol):
        transport.handle_request(httpx.Request("GET", "ftp://127.0.0.1/"))


# -- TLS -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (the server's context, the CA file)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_is_verified_with_the_given_context_and_reused(
    serve: Callable[..., RawServer], pki: tuple[ssl.SSLContext, Path]
) -> None:
    """HTTPS through the shared context: verified against its CAs, one handshake for many calls."""
    server_context, ca_file = pki
    server = serve(always("answer"), tls=server_context)
    transport = KeepAliveTransport(ssl_context=lambda: ssl.create_default_context(cafile=str(ca_file)))
    for _ in range(3):
        assert call(transport, "GET", server.url + "/v1/x").json() == {"ok": True}
    assert server.connections == 1
    transport.close()


def test_tls_refuses_a_certificate_its_context_does_not_trust(
    serve: Callable[..., RawServer], pki: tuple[ssl.SSLContext, Path]
) -> None:
    """A server whose CA the context does not hold is a ``ConnectError``: nothing is sent."""
    server_context, _ = pki
    server = serve(always("answer"), tls=server_context)
    transport = KeepAliveTransport(ssl_context=ssl.create_default_context())
    with pytest.raises(httpx.ConnectError, match="certificate verify failed: unable to get local issuer"):
        call(transport, "GET", server.url + "/")
    assert server.requests == []
    transport.close()


def test_endpoint_sends_what_httpx_would_send(serve: Callable[..., RawServer]) -> None:
    """``Endpoint`` joins base URL and path, encodes query and JSON as httpx does, frames, names the host."""
    server = serve(always("answer"))
    endpoint = Endpoint(
        server.url + "/api/", timeout=httpx.Timeout(2.0), headers={"Accept": "application/json"}
    )
    query: dict[str, str | int] = {"instance_id": "a,b c", "limit": 100}
    call = endpoint.call("POST", "/v1/events", query=query, json={"a": "é", "n": 1}, headers={"X-Id": "7"})
    answer = endpoint.send(call)
    assert answer.status == 200
    assert answer.json() == {"ok": True}
    assert answer.headers["content-type"] == "application/json"
    oracle = httpx.Request("POST", server.url + "/api/v1/events", params=query, json={"a": "é", "n": 1})
    assert server.requests[0][1] == b"POST " + oracle.url.raw_path + b" HTTP/1.1 " + oracle.content
    head = server.heads[0].decode("latin-1").lower()
    for line in (
        f"host: 127.0.0.1:{server.port}",
        "user-agent: reaper/0.1",
        "accept: application/json",
        "x-id: 7",
        "content-type: application/json",
        f"content-length: {len(oracle.content)}",
    ):
        assert f"\r\n{line}\r\n" in head  # fmt: skip
    endpoint.send(endpoint.call("DELETE", "/v1/x"))
    assert server.requests[1][1] == b"DELETE /api/v1/x HTTP/1.1 "
    assert "content-length" not in server.heads[1].decode().lower()
    assert server.connections == 1  # kept alive across calls
    endpoint.close()


def test_endpoint_failures_are_httpx_errors(serve: Callable[..., RawServer]) -> None:
    """No listener: ``httpx.ConnectError``; a target that is not ASCII never leaves (LocalProtocolError)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    endpoint = Endpoint(f"http://127.0.0.1:{port}", timeout=httpx.Timeout(2.0))
    with pytest.raises(httpx.ConnectError):
        endpoint.send(endpoint.call("GET", "/"))
    server = serve(always("answer"))
    endpoint = Endpoint(server.url, timeout=httpx.Timeout(2.0))
    with pytest.raises(httpx.LocalProtocolError):
        endpoint.send(endpoint.call("GET", "/ü"))
    with pytest.raises(httpx.LocalProtocolError) as refused:
        endpoint.send(endpoint.call("GET", "/", headers={"X-Auth-Token": "t€k-secret"}))
    assert "secret" not in str(refused.value)
    assert server.requests == []
    endpoint.close()


# -- the wire: what a response may look like ---------------------------------------------------------
def answer_once(raw: bytes, *, close: bool = True) -> str:
    """A server that answers one request with ``raw`` bytes as given (then closes, unless told not to)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as reader:
            while reader.readline() not in (b"\r\n", b""):
                pass
            conn.sendall(raw)
            if not close:
                reader.readline()  # hold the connection open until the client goes
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/"


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;x=1\r\nabcd\r\n2\r\nef\r\n0\r\nT: 1\r\n\r\n",
            b"abcdef",
        ),
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", b"until the end"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", b""),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", b"abc"),
    ],
)
def test_responses_framed_every_way_http_allows_are_read_whole(
    transport: KeepAliveTransport, raw: bytes, body: bytes
) -> None:
    """Content-Length, chunked (extensions, trailers), read-to-close, interim 1xx, bodiless statuses."""
    response = call(transport, "GET", answer_once(raw))
    assert response.content == body


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    ],
)
def test_a_response_that_is_not_http_is_a_protocol_error(transport: KeepAliveTransport, raw: bytes) -> None:
    """Garbage, a broken header, a short or negative body, bad chunks, a header flood: RemoteProtocolError."""
    with pytest.raises(httpx.RemoteProtocolError):
        call(transport, "GET", answer_once(raw))


class Segments:
    """A socket's reading side that hands over the bytes in the segments given, then EOF (b"")."""

    def __init__(self, *segments: bytes) -> None:
        self.segments = list(segments)
        self.asked: list[int] = []

    def gettimeout(self) -> float | None:
        return None

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        return self.segments.pop(0)[:size] if self.segments else b""

    def close(self) -> None:
        self.segments = []


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def one_byte_at_a_time(raw: bytes) -> Segments:
    return Segments(*(raw[i : i + 1] for i in range(len(raw))))


def test_a_response_is_read_whole_however_it_is_split_and_leaves_what_follows() -> None:
    """A head split anywhere (even byte by byte), bare-LF line endings; bytes after a response are kept
    for the reader but make the connection unfit for reuse (nobody asked for them)."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    framed = b"HTTP/1.1 201 Created\nContent-Length: 2\nX-Odd:  spaced \n\nok"
    for sock in (one_byte_at_a_time(chunked + framed), Segments(chunked + framed)):
        connection = Connection(sock)  # type: ignore[arg-type]
        first, second = connection.receive("GET"), connection.receive("POST")
        assert (first.status, first.content) == (200, b"abc")
        assert (second.status, second.reason, second.content) == (201, b"Created", b"ok")
        assert (b"X-Odd", b"spaced") in second.headers
    together = Connection(Segments(chunked + framed)).receive("GET")  # type: ignore[arg-type]
    alone = Connection(Segments(chunked)).receive("GET")  # type: ignore[arg-type]
    assert (together.keep_alive, alone.keep_alive) == (False, True)


@pytest.mark.parametrize(
    ("segments", "error"),
    [
        ((), StaleConnectionError),  # closed before a byte: a kept-alive connection gone stale
        ((b"HTTP/1.1 200 OK\r\nContent-Le",), ProtocolError),  # closed in the middle of the head
        ((b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 10),), ProtocolError),  # a head with no end
        ((CHUNKED + b"1" * (MAX_LINE + 10),), ProtocolError),  # a chunk-size line with no end
        ((CHUNKED + b"3\r\nab",), ProtocolError),  # a chunk cut short
        ((CHUNKED + b"3\r\nabcXY",), ProtocolError),  # a chunk not followed by CRLF
        ((CHUNKED + b"3",), ProtocolError),  # closed in the middle of a chunk-size line
    ],
)
def test_a_response_cut_short_or_too_long_is_refused(
    segments: tuple[bytes, ...], error: type[Exception]
) -> None:
    """Each bound holds however the bytes arrive: nothing past it is buffered or waited for."""
    with pytest.raises(error):
        Connection(Segments(*segments)).receive("GET")  # type: ignore[arg-type]


def test_a_body_read_to_close_is_bounded() -> None:
    """A response framed by the connection's close stops at the body cap, not at the peer's whim."""
    sock = Segments(b"HTTP/1.0 200 OK\r\n\r\n12345", b"67890", b"12345")
    with pytest.raises(ProtocolError):
        Connection(sock).receive("GET", max_body=10)  # type: ignore[arg-type]
    sock = Segments(b"HTTP/1.0 200 OK\r\n\r\n12345", b"67890")
    whole = Connection(sock).receive("GET", max_body=10)  # type: ignore[arg-type]
    assert (whole.content, whole.keep_alive) == (b"1234567890", False)


def test_a_header_that_would_split_the_request_is_never_sent(
    serve: Callable[..., RawServer], transport: KeepAliveTransport
) -> None:
    """A CR or LF smuggled into a header value is refused before a byte leaves (LocalProtocolError)."""
    server = serve(always("answer"))
    request = httpx.Request("GET", server.url + "/", headers={"X-Id": "a"})
    request.headers._list = [(b"x-id", b"X-Id", b"a\r\nX-Evil: 1")]  # httpx itself would refuse to build it
    with pytest.raises(httpx.LocalProtocolError):
        transport.handle_request(request)
    assert server.requests == []


def test_an_origin_behind_the_environments_proxy_goes_through_it(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY / NO_PROXY are honoured as httpx honours them: the proxy sees the absolute-form request."""
    proxy = serve(always("answer"))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "direct.reaper.invalid")
    assert environment_proxy("http://direct.reaper.invalid/") is None
    endpoint = Endpoint("http://clouddc.reaper.invalid", timeout=httpx.Timeout(2.0))
    call = endpoint.call("POST", "/v1/p/instances", query={"limit": 1}, json={"a": 1})
    answer = endpoint.send(call)
    assert (answer.status, answer.json(), answer.headers["content-type"]) == (
        200,
        {"ok": True},
        "application/json",
    )
    expected = b'POST http://clouddc.reaper.invalid/v1/p/instances?limit=1 HTTP/1.1 {"a":1}'
    assert proxy.requests[0][1] == expected
    endpoint.close()
