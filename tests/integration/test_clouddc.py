"""The CloudDC client against the real emulator (in-process server thread, real HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from function.clouddc import CloudDCClient, check_id, parse_retry_after
from function.credentials import TokenSource
from function.errors import BadEventError
from function.secret import Secret
from reaper.devtools.emulator.app import make_emulator_server
from reaper.devtools.emulator.fleet import Config, Fleet
from reaper.devtools.procs import free_port
from tests.conftest import Receiver

TOKEN = "client-test-token"


@pytest.fixture
def served() -> Iterator[tuple[str, Fleet]]:
    server, fleet = make_emulator_server("127.0.0.1", 0, Fleet(Config(token=TOKEN, termination_seconds=60)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", fleet
    server.shutdown()
    server.server_close()


def client(url: str, token: str = TOKEN, timeout: float = 5.0) -> CloudDCClient:
    return CloudDCClient(url, TokenSource(Secret(token)), timeout=timeout)


def test_delete_then_status(served: tuple[str, Fleet]) -> None:
    """DELETE answers 204 and the status then reads shutting-down."""
    url, fleet = served
    fleet.add({"id": "i-1", "project_id": "p"})
    api = client(url)
    assert api.delete_instance("p", "i-1").status == 204
    answer = api.show_status("p", "i-1")
    assert (answer.status, answer.state) == (200, "shutting-down")
    api.close()


def test_error_body_and_retry_after_are_parsed(served: tuple[str, Fleet]) -> None:
    """A throttled answer carries error_code APIG.0308 and the Retry-After seconds."""
    url, fleet = served
    fleet.add({"id": "i-2", "project_id": "p", "faults": {"delete": [{"status": 429, "retry_after": 7}]}})
    answer = client(url).delete_instance("p", "i-2")
    assert (answer.status, answer.error_code, answer.retry_after) == (429, "APIG.0308", 7.0)
    assert answer.transient


def test_unauthorized_and_not_found(served: tuple[str, Fleet]) -> None:
    """A wrong token gets 401; an unknown instance 404 with its error body."""
    url, _ = served
    assert client(url, token="nope-nope").delete_instance("p", "i-x").status == 401
    missing = client(url).show_status("p", "i-x")
    assert missing.status == 404
    assert missing.not_found
    assert missing.error_code == "CDC.0404"


def test_transport_failures_become_answers(served: tuple[str, Fleet]) -> None:
    """Connection resets, refused connections and timeouts are answers with no status, not exceptions."""
    url, fleet = served
    fleet.add({"id": "i-3", "project_id": "p", "faults": {"status": [{"reset": True}, {"delay": 1.0}]}})
    api = client(url, timeout=0.3)
    reset = api.show_status("p", "i-3")
    assert (reset.status, reset.failure) == (None, "connection-error")
    slow = api.show_status("p", "i-3")
    assert (slow.status, slow.failure) == (None, "timeout")
    refused = client(f"http://127.0.0.1:{free_port()}").show_status("p", "i-3")
    assert refused.failure == "connection-error"


def test_non_json_error_body_is_tolerated_and_a_success_body_is_not(receiver: Receiver) -> None:
    """A gateway's HTML error page keeps its status (the core retries a 502); a 200 whose body is not the
    documented object is not believed: the failure ``unreadable-answer``, retried, never a state."""
    receiver.script = [
        (502, b"<html>bad gateway</html>", "text/html"),
        (200, b'["a", "list"]', "application/json"),
    ]
    api = client(receiver.url)
    assert api.delete_instance("p", "i-1").status == 502
    unread = api.show_status("p", "i-1")
    assert (unread.status, unread.state, unread.failure) == (None, None, "unreadable-answer")
    assert unread.transient


@pytest.mark.parametrize("bad", ["a/b", "..", "", "x" * 65, "sp ace", "-x", None, 7])
def test_ids_are_validated(bad: object) -> None:
    """Ids that could escape the path are refused before any request."""
    with pytest.raises(BadEventError):
        check_id("instance_id", bad)


def test_retry_after_forms() -> None:
    """Retry-After is read as seconds or as an HTTP date; junk is ignored."""
    now = 1_800_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after(" ", now) is None
    assert parse_retry_after("soon", now) is None
    http_date = "Fri, 15 Jan 2027 08:00:10 GMT"
    from email.utils import parsedate_to_datetime

    base = parsedate_to_datetime(http_date).timestamp() - 10
    assert parse_retry_after(http_date, base) == pytest.approx(10)
