"""Issue 24: a broken or hostile CloudDC, IAM or delay service, one event each, through the real function.

An answer reaper cannot read is a retry, never "gone" (design §10): no ``instance-terminated`` unless the
instance was read as gone, no DELETE after an ambiguous read, every call answered within its deadline,
memory bounded whatever the upstream streams, and the next event after a poisoned answer served normally.

The upstreams are raw sockets (``tests/hostile.py``); the function is ``reaper serve`` on loopback with one
thread (so consecutive events share its keep-alive connections, as a busy thread's do) and a delay service
that accepts every follow-up and delivers none: each case is one step, and what that step did is the test.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary

from tests.conftest import (
    Function,
    FunctionFactory,
    Sink,
    expired,
    new_id,
)
from tests.hostile import HostileServer, Reply, Seen, gzipped, listing, record, response

pytestmark = pytest.mark.integration
Behaviour = Callable[[Seen], Reply]
GONE = response(404, {"error_code": "CDC.0404", "error_msg": "instance not found"})
_INSTANCE_IN_PATH = re.compile(r"/v1/[^/]+/instances/([^/]+)")


class Upstream:
    """The hostile CloudDC: each instance's reads answered as its test says; DELETE 204; status terminated."""

    def __init__(self) -> None:
        self.reads: dict[str, Behaviour] = {}
        self.server = HostileServer(self._answer)

    def _answer(self, seen: Seen) -> Reply:
        if seen.method == "GET" and seen.path.endswith("/instances"):
            first = (seen.query.get("instance_id") or "").split(",")[0]
            behaviour = self.reads.get(first)
            return behaviour(seen) if behaviour else Reply(response(200, listing()))
        if seen.method == "DELETE":
            return Reply(response(204, b"", length=False))
        if seen.path.endswith("/status"):
            return Reply(response(200, {"state": "terminated"}))
        return Reply(GONE)

    def deletes(self, instance: str) -> list[Seen]:
        return self.server.requests("DELETE", instance)


class DroppingDelayService:
    """Accepts every follow-up (202) and delivers none; optionally closes each connection soon after."""

    def __init__(self) -> None:
        self.close_after: float | None = None
        self.drip = False
        self.server = HostileServer(self._answer)

    def _answer(self, seen: Seen) -> Reply:
        if self.drip:
            return drip(response(202, {"scheduled": True}), pause=0.2)
        return Reply(response(202, {"scheduled": True}), close_after=self.close_after)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    served = Upstream()
    yield served
    served.server.close()


@pytest.fixture(scope="module")
def delays() -> Iterator[DroppingDelayService]:
    served = DroppingDelayService()
    yield served
    served.server.close()


@pytest.fixture(scope="module")
def hostile(function_factory: FunctionFactory, upstream: Upstream, delays: DroppingDelayService) -> Function:
    """The function against the hostile CloudDC: each read may take 1 s, a whole call 2 s."""
    return function_factory(
        target="handle_http",
        signature="http",
        CLOUDDC_ENDPOINT=upstream.server.url,
        REAPER_DELAY_SERVICE_URL=delays.server.url,
        REAPER_HTTP_TIMEOUT="1",
        REAPER_HTTP_DEADLINE="2",
        THREADS="1",
    )


def reap(function: Function, instance: str, timeout: float = 30.0) -> tuple[dict[str, Any], float]:
    """Send one instance-expired event; the function's answer and how long it took."""
    headers, body = to_binary(expired(instance))
    started = time.monotonic()
    answer = httpx.post(function.url, headers=headers, content=body, timeout=timeout)
    assert answer.status_code == 200, answer.text
    return answer.json(), time.monotonic() - started


def drip(data: bytes, pause: float = 0.1) -> Reply:
    """``data`` a byte at a time: each read is quick, the whole takes ``len(data) * pause``."""
    return Reply(pieces=[(data[i : i + 1], pause) for i in range(len(data))])


def chunked(*lines: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"".join(lines)


def _records_text(instance: str, inner: str) -> bytes:
    return ('{"instances": [{"id": "' + instance + '", ' + inner + '}], "page_info": {}}').encode()


# A valid listing that does not name the instance, padded to 60 MB: read whole, it says "absent".
SIXTY_MB_NOT_LISTED = b'{"instances": [], "page_info": {}, "padding": "' + b" " * (60 * 1024 * 1024) + b'"}'

# Each case: the answer to the read before the DELETE. All are unreadable; each, on the main of issue 24,
# was believed (a running server reported terminated, or deleted through an ambiguous read) or held the
# handler past any deadline.
UNREADABLE: dict[str, Callable[[str], Reply]] = {
    "html-maintenance-page": lambda i: Reply(
        response(200, "<html><body>Service under maintenance</body></html>", content_type="text/html")
    ),
    "gzip-that-does-not-decode": lambda i: Reply(
        response(200, b"\x1f\x8b\x08\x00not gzip at all", headers=[("Content-Encoding", "gzip")])
    ),
    "gzip-cut-short": lambda i: Reply(
        response(200, gzipped(listing(record(i)))[:-12], headers=[("Content-Encoding", "gzip")])
    ),
    "an-encoding-not-asked-for": lambda i: Reply(
        response(200, b"\x0b\x02\x80{}\x03", headers=[("Content-Encoding", "br")])
    ),
    "json-cut-short": lambda i: Reply(response(200, json.dumps(listing(record(i)))[:40])),
    "body-shorter-than-its-length": lambda i: Reply(
        response(200, json.dumps(listing()), headers=[]).replace(b"Content-Length: ", b"Content-Length: 9"),
        close=True,
    ),
    "another-instance-with-next-marker": lambda i: Reply(
        response(200, listing(record("i-someone-else"), next_marker="i-someone-else"))
    ),
    "a-page-that-always-names-a-next": lambda i: Reply(response(200, listing(next_marker="again"))),
    "state-twice": lambda i: Reply(
        response(200, _records_text(i, '"state": "running", "state": "terminated"'))
    ),
    "protected-true-then-false": lambda i: Reply(
        response(
            200,
            _records_text(
                i,
                '"state": "running", "metadata": {"reaper-expires-at": "2020-01-01T00:00:00Z", '
                '"reaper-protected": "true", "reaper-protected": "false"}',
            ),
        )
    ),
    "metadata-not-an-object": lambda i: Reply(
        response(200, _records_text(i, '"state": "running", "metadata": ["reaper-protected", "true"]'))
    ),
    "a-record-without-state": lambda i: Reply(response(200, {"instances": [{"id": i}]})),
    "a-gateway-404-page": lambda i: Reply(response(404, "<html>no route</html>", content_type="text/html")),
    "a-redirect": lambda i: Reply(response(302, b"", headers=[("Location", "http://127.0.0.1:1/")])),
    "duplicate-differing-content-length": lambda i: Reply(
        response(200, json.dumps(listing()), headers=[("Content-Length", "2")])
    ),
    "chunk-size-0x": lambda i: Reply(chunked(b"0x10\r\n", b'{"instances":[]}', b"\r\n0\r\n\r\n")),
    "negative-chunk-size": lambda i: Reply(chunked(b"-FFFFFFFFFFFF\r\n", b"{}\r\n0\r\n\r\n")),
    "chunked-and-content-length": lambda i: Reply(
        response(200, b"0\r\n\r\n", headers=[("Transfer-Encoding", "chunked")])
    ),
    "sixty-megabytes": lambda i: Reply(response(200, SIXTY_MB_NOT_LISTED)),
    "100-continue-for-ever": lambda i: Reply(pieces=[(b"HTTP/1.1 100 Continue\r\n\r\n", 0.05)] * 600),
    "trailers-for-ever": lambda i: Reply(
        chunked(b"2\r\n{}\r\n0\r\n"), pieces=[(b"X-Trailer: " + b"t" * 200 + b"\r\n", 0.005)] * 6000
    ),
    "headers-a-byte-at-a-time": lambda i: drip(response(200, listing(record(i)))),
    "body-a-byte-at-a-time": lambda i: Reply(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 300\r\n\r\n",
        pieces=[(b" ", 0.1)] * 300,
    ),
}


def running_reply(instance: str) -> Behaviour:
    """Answer every read of ``instance`` with its record, running."""

    def reply(_seen: Seen) -> Reply:
        return Reply(response(200, listing(record(instance))))

    return reply


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unreadable_read_is_retried_never_gone_and_never_deleted(
    case: str, hostile: Function, upstream: Upstream, sink: Sink
) -> None:
    """The read before the DELETE answered badly: the step schedules a retry of the delete (the read
    comes again), makes no DELETE, announces no result, and answers within the call's deadline."""
    instance = new_id(case[:20])
    upstream.reads[instance] = lambda seen: UNREADABLE[case](instance)
    outcome, took = reap(hostile, instance)
    assert outcome["outcome"] == "scheduled-delete", outcome
    assert outcome["calls"][0].split()[1] in {"unreadable-answer", "connection-error", "timeout"}, outcome
    assert upstream.deletes(instance) == []
    assert sink.for_instance(instance) == []
    # A deadline of 2 s per call (REAPER_HTTP_DEADLINE): the drips would take 30 s or more without it.
    assert took < 15, took


def test_a_listing_that_names_a_next_page_is_followed(hostile: Function, upstream: Upstream) -> None:
    """A first page without the instance but with ``next_marker``: the next page is read, not "absent"."""
    instance = new_id("paged")

    def pages(seen: Seen) -> Reply:
        if seen.query.get("marker") == "m-1":
            return Reply(response(200, listing(record(instance))))
        return Reply(response(200, listing(next_marker="m-1")))

    upstream.reads[instance] = pages
    outcome, _ = reap(hostile, instance)
    assert outcome["outcome"] == "scheduled-status", outcome
    assert len(upstream.deletes(instance)) == 1


def test_a_complete_listing_without_the_instance_is_believed(
    hostile: Function, upstream: Upstream, sink: Sink
) -> None:
    """The contrast: a whole, well-formed page (gzip-encoded, as a gateway may send it) that does not list
    the instance is "already absent" — the one way to an ``instance-terminated`` without a DELETE."""
    instance = new_id("absent")
    upstream.reads[instance] = lambda seen: Reply(
        response(200, gzipped(listing()), headers=[("Content-Encoding", "gzip")])
    )
    outcome, _ = reap(hostile, instance)
    assert outcome["outcome"] == "terminated", outcome
    result = sink.result(instance)
    assert (result["type"], result["data"]["already_absent"]) == ("instance-terminated", True)
    assert upstream.deletes(instance) == []


@pytest.mark.parametrize(
    "poison",
    [
        pytest.param(lambda: response(200, listing()), id="bytes-after-the-body"),
        pytest.param(lambda: b"junk that is no response", id="junk-after-the-body"),
    ],
)
def test_the_next_event_after_a_poisoned_answer_is_served_normally(
    poison: Callable[[], bytes], hostile: Function, upstream: Upstream, sink: Sink
) -> None:
    """A read answered with more bytes than its response (here: a whole second response saying "not
    listed"): the connection is not reused, so the next call is answered by the server, not by the bytes."""
    first, second = new_id("poisoner"), new_id("victim")
    upstream.reads[first] = lambda seen: Reply(response(200, listing(record(first))) + poison())
    upstream.reads[second] = lambda seen: Reply(response(200, listing(record(second))))
    outcome, _ = reap(hostile, first)
    assert outcome["calls"] == ["READ 200 running", "DELETE 204"], outcome
    outcome, _ = reap(hostile, second)
    assert outcome["calls"] == ["READ 200 running", "DELETE 204"], outcome
    assert len(upstream.deletes(second)) == 1
    assert sink.for_instance(second) == []


def test_a_204_with_a_body_does_not_answer_the_next_call(
    hostile: Function, upstream: Upstream, sink: Sink
) -> None:
    """A DELETE answered 204 with a body that is a whole "not listed" response: the next event's read is
    not answered by those bytes (it would report a running server terminated)."""
    first, second = new_id("body204"), new_id("victim")
    upstream.reads[first] = lambda seen: Reply(response(200, listing(record(first))))
    upstream.reads[second] = lambda seen: Reply(response(200, listing(record(second))))
    original = upstream.server.script

    def delete_with_body(seen: Seen) -> Reply:
        if seen.method == "DELETE" and first in seen.path:
            return Reply(b"HTTP/1.1 204 No Content\r\n\r\n" + response(200, listing()))
        return original(seen)

    upstream.server.script = delete_with_body
    try:
        reap(hostile, first)
        outcome, _ = reap(hostile, second)
    finally:
        upstream.server.script = original
    assert outcome["calls"] == ["READ 200 running", "DELETE 204"], outcome
    assert sink.for_instance(second) == []


def test_a_post_after_the_server_closed_the_connection_is_not_a_503(
    hostile: Function, upstream: Upstream, delays: DroppingDelayService
) -> None:
    """The delay service closes each connection 50 ms after answering, without saying so: the next
    follow-up, 0.3 s later, goes on a new connection instead of failing as stale (a 503 after a DELETE)."""
    delays.close_after = 0.05
    try:
        for _ in range(3):
            instance = new_id("stale")
            upstream.reads[instance] = running_reply(instance)
            outcome, _ = reap(hostile, instance)
            assert outcome["outcome"] == "scheduled-status", outcome
            time.sleep(0.3)
    finally:
        delays.close_after = None


def test_a_delay_service_that_drips_its_answer_is_cut_at_the_deadline(
    hostile: Function, upstream: Upstream, delays: DroppingDelayService
) -> None:
    """The hand-off's answer is bounded like CloudDC's: a delay service that answers a byte every 0.2 s
    makes the step 503 (the source redelivers) within the deadline, not after the whole drip."""
    instance = new_id("slow-delay")
    upstream.reads[instance] = lambda seen: Reply(response(200, listing(record(instance))))
    delays.drip = True
    try:
        headers, body = to_binary(expired(instance))
        started = time.monotonic()
        answer = httpx.post(hostile.url, headers=headers, content=body, timeout=30)
    finally:
        delays.drip = False
    assert answer.status_code == 503, answer.text
    assert time.monotonic() - started < 15


def test_an_iam_endpoint_that_drips_is_cut_at_the_deadline(
    function_factory: FunctionFactory, upstream: Upstream, delays: DroppingDelayService
) -> None:
    """The one IAM refresh every request waits behind is bounded like any call: the event is answered
    503 (redeliver) within the deadline, not held for as long as IAM drips."""
    token = {"token": {"expires_at": "2099-01-01T00:00:00Z"}}
    iam = HostileServer(lambda seen: drip(response(201, token), pause=0.2))
    try:
        function = function_factory(
            target="handle_http",
            signature="http",
            CLOUDDC_ENDPOINT=upstream.server.url,
            REAPER_DELAY_SERVICE_URL=delays.server.url,
            CLOUDDC_AUTH_TOKEN=None,
            CLOUDDC_IAM_ENDPOINT=iam.url,
            CLOUDDC_IAM_DOMAIN="domain",
            CLOUDDC_IAM_USER="user",
            CLOUDDC_IAM_PASSWORD="iam-password-" + new_id(),
            REAPER_HTTP_TIMEOUT="1",
            REAPER_HTTP_DEADLINE="2",
        )
        headers, body = to_binary(expired(new_id("iam")))
        started = time.monotonic()
        answer = httpx.post(function.url, headers=headers, content=body, timeout=30)
        assert answer.status_code == 503, answer.text
        assert time.monotonic() - started < 15
    finally:
        iam.close()


def _worker_rss(function: Function) -> int:
    """Resident memory (bytes) of the function's gunicorn worker."""
    assert function.process.proc is not None
    master = function.process.proc.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    pid = int(children[0]) if children else master
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_four_gigabyte_streams_at_once_leave_memory_bounded(
    function_factory: FunctionFactory, delays: DroppingDelayService
) -> None:
    """Four reads answered at once with 1 GB bodies each (framed by the connection's close): each is
    refused at the body cap (4 MiB), and the worker's resident memory grows by less than 50 MB."""
    stop = threading.Event()

    def stream(seen: Seen) -> Reply:
        if seen.query.get("instance_id", "").startswith("warm"):
            return Reply(response(200, listing()))
        block = b" " * 65536
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
        return Reply(head, pieces=[(block, 0.0)] * (1024**3 // len(block)), close=True)

    server = HostileServer(stream)
    try:
        function = function_factory(
            target="handle_http",
            signature="http",
            CLOUDDC_ENDPOINT=server.url,
            REAPER_DELAY_SERVICE_URL=delays.server.url,
            THREADS="8",
        )
        reap(function, new_id("warm"))
        before, peak = _worker_rss(function), [0]

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _worker_rss(function))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        outcomes: list[dict[str, Any]] = []
        readers = [
            threading.Thread(target=lambda: outcomes.append(reap(function, new_id("gb"))[0]))
            for _ in range(4)
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout=60)
        stop.set()
        sampler.join()
        assert [o["outcome"] for o in outcomes] == ["scheduled-delete"] * 4, outcomes
        assert peak[0] - before < 50 * 1024 * 1024, (before, peak[0])
    finally:
        stop.set()
        server.close()
