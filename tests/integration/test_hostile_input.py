"""Hostile input through the real processes: never a 5xx for a bad request, never a leaked secret."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from function import catalog
from function.secret import Secret
from function.signing import EventSigner
from tests.conftest import (
    EVENT_KEY,
    PROJECT,
    TOKEN,
    Emulator,
    Function,
    FunctionFactory,
    Sink,
    expired,
    new_id,
    per_target,
    wait_until,
)

pytestmark = pytest.mark.integration
SIGNER = EventSigner(Secret(EVENT_KEY))
TARGETS = ("handle", "handle_http")


@pytest.fixture(scope="module")
def small_limit(function_factory: FunctionFactory) -> Any:
    """Functions per target whose body limit is 4 KiB, so limits are cheap to cross."""
    return per_target(function_factory, REAPER_MAX_BODY_BYTES="4096")


def status_check(instance: str, **changes: Any) -> CloudEvent:
    data = {
        "instance_id": instance,
        "project_id": PROJECT,
        "origin_event_id": "ev-" + instance,
        "started_at": catalog.rfc3339(time.time() - 5),
        "deadline_at": catalog.rfc3339(time.time() + 60),
        "deleted_at": catalog.rfc3339(time.time() - 4),
        "checks": 0,
        "delete_attempts": 1,
        "failures": 0,
        "redeletes": 0,
        **changes,
    }
    event = CloudEvent(
        {"type": "instance-status-check", "source": "/reaper", "id": new_id(), "subject": instance}, data
    )
    SIGNER.sign(event)
    return event


@pytest.mark.parametrize(
    "changes",
    [
        {"started_at": "2024-13-45T99:99:99Z"},
        {"started_at": "\u0662\u0660\u0662\u0664-01-01T00:00:00Z"},  # Arabic-Indic digits
        {"deadline_at": "0000-01-01T00:00:00Z"},
        {"deadline_at": "10000-01-01T00:00:00Z"},
        {"deleted_at": "2024-01-01T00:00:00"},  # no zone: not an instant
        {"checks": 10**9},
        {"failures": -1},
    ],
    ids=["month-13", "arabic-indic", "year-0", "year-10000", "no-zone", "huge-counter", "negative"],
)
@pytest.mark.parametrize("target", ["function", "http_function"])
def test_signed_follow_up_with_impossible_values_is_422(
    changes: dict[str, Any], target: str, emulator: Emulator, request: pytest.FixtureRequest
) -> None:
    """Even with a valid signature, dates that are no real instant and counters past their maxima are 422."""
    fn: Function = request.getfixturevalue(target)
    instance = emulator.add(new_id())
    response = fn.send(status_check(instance, **changes))
    assert response.status_code == 422, response.text
    assert emulator.touching(instance) == []


def test_large_but_valid_counter_still_works(emulator: Emulator, function: Function, sink: Sink) -> None:
    """A check number in the thousands (within the schema's maximum) backs off at the cap, no overflow."""
    instance = emulator.add(new_id(), termination_seconds=0.5)
    httpx.delete(f"{emulator.url}/v1/{PROJECT}/instances/{instance}", headers={"X-Auth-Token": TOKEN})
    time.sleep(0.6)
    assert function.send(status_check(instance, checks=5000)).status_code == 200
    assert sink.result(instance)["type"] == "instance-terminated"


@pytest.mark.parametrize("target", TARGETS)
def test_chunked_body_over_the_limit_is_413_and_nothing_happens(
    target: str, small_limit: Any, emulator: Emulator
) -> None:
    """A chunked body past REAPER_MAX_BODY_BYTES is refused whole, not read truncated and acted on."""
    fn = small_limit(target)
    instance = emulator.add(new_id())
    headers, body = to_structured(expired(instance, reason="x" * 8000))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = httpx.post(fn.url, headers=headers, content=chunks(), timeout=10)
    assert response.status_code == 413
    assert "larger than 4096" in response.json()["error"]
    assert emulator.touching(instance) == []


@pytest.mark.parametrize("target", TARGETS)
def test_chunked_body_under_the_limit_is_read_whole(
    target: str, small_limit: Any, emulator: Emulator, sink: Sink
) -> None:
    """A chunked body within the limit is read completely and handled."""
    fn = small_limit(target)
    instance = emulator.add(new_id(), termination_seconds=0.5)
    headers, body = to_binary(expired(instance, note="y" * 2000))
    response = httpx.post(fn.url, headers=headers, content=iter([body[:700], body[700:]]), timeout=10)
    assert response.status_code == 200, response.text
    assert sink.result(instance)["type"] == "instance-terminated"


def test_declared_length_over_the_limit_is_413_and_the_connection_closes(small_limit: Any) -> None:
    """With Content-Length past the limit: a clean 413 that says Connection: close, then the close."""
    fn = small_limit("handle_http")
    port = int(fn.url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 10000000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"{" * 1000)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    assert b" 413 " in status_line
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(body)["status"] == 413


def test_webhook_headers_that_break_parsers_are_401(emulator: Emulator, webhook_function: Function) -> None:
    """Absurd webhook timestamps and signatures are a plain 401, never a 5xx."""
    instance = emulator.add(new_id())
    headers, body = to_binary(expired(instance))
    for extra in (
        {"webhook-id": "m1", "webhook-timestamp": "9" * 400, "webhook-signature": "v1,AAAA"},
        {"webhook-id": "m2", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,***"},
        {"webhook-id": "m3", "webhook-timestamp": "nan", "webhook-signature": "v1"},
        {
            "webhook-id": "m4",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,\u00e9t\u00e9",
        },
    ):
        sent = [(k.encode(), v.encode()) for k, v in {**headers, **extra}.items()]
        response = httpx.post(webhook_function.url, headers=sent, content=body)
        assert response.status_code == 401, (extra, response.text)
    assert emulator.touching(instance) == []


# -- secrets ----------------------------------------------------------------------------------------


def test_503_body_names_no_file_path(
    emulator: Emulator, function_factory: FunctionFactory, tmp_path: Path
) -> None:
    """When the mounted token file disappears, the 503 asks for redelivery without naming the path."""
    token_file = tmp_path / "secret-mount-path" / "token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN)
    fn = function_factory(CLOUDDC_AUTH_TOKEN="", CLOUDDC_AUTH_TOKEN_FILE=str(token_file))
    token_file.unlink()
    response = fn.send(expired(emulator.add(new_id())))
    assert response.status_code == 503
    assert "secret-mount-path" not in response.text


def test_settings_log_masks_url_userinfo(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """User names and passwords inside K_SINK or CLOUDDC_ENDPOINT never reach the start-up log line."""
    sink_url = sink.url.replace("http://", "http://sinkuser:sink-pass-1234@")
    endpoint = emulator.url.replace("http://", "http://apiuser:api-pass-5678@")
    fn = function_factory(K_SINK=sink_url, CLOUDDC_ENDPOINT=endpoint)
    [line] = [entry for entry in fn.log_lines() if entry.get("message") == "settings"]
    text = json.dumps(line)
    for secret in ("sinkuser", "sink-pass-1234", "apiuser", "api-pass-5678"):
        assert secret not in text
    assert "***@127.0.0.1" in line["settings"]["sink_url"]


def test_upstream_echo_of_the_token_is_not_forwarded(
    emulator: Emulator, function: Function, sink: Sink
) -> None:
    """An upstream error message quoting the token reaches the result event and logs redacted."""
    instance = emulator.add(new_id(), faults={"delete": [{"status": 403, "echo": True}]})
    assert function.send(expired(instance)).status_code == 200
    result = sink.result(instance)
    assert result["type"] == "instance-deletion-failed"
    assert TOKEN not in json.dumps(result)
    assert "[REDACTED]" in result["data"]["error_msg"]
    assert TOKEN not in function.log()


def test_request_tokens_neither_evict_nor_choose_what_is_redacted(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """260 distinct X-CFF-Auth-Token values leave the configured token redacted, and a caller cannot make
    a chosen string (a victim's instance id) disappear from later log lines."""
    fn = function_factory(target="handle_http", signature="http", REAPER_TOKEN_FROM_REQUEST="true")
    victim = emulator.add(new_id(), faults={"delete": [{"status": 403, "echo": True}]})
    headers, body = to_structured(expired(victim, project_id="not-allowed-project"))
    with httpx.Client(base_url=fn.url, timeout=10) as client:
        for n in range(260):
            client.post(
                "", headers={**headers, "X-CFF-Auth-Token": f"caller-token-{n:04d}-{'z' * 20}"}, content=body
            )
        client.post("", headers={**headers, "X-CFF-Auth-Token": victim}, content=body)
        # The victim's own event, with no request token: the configured one is used, and echoed upstream.
        headers, body = to_structured(expired(victim))
        assert client.post("", headers=headers, content=body).status_code == 200
    [result] = wait_until(
        lambda: [e for e in sink.for_instance(victim) if e["data"]["project_id"] == PROJECT], 15, "the result"
    )
    assert result["type"] == "instance-deletion-failed"
    log = fn.log()
    assert TOKEN not in log
    assert TOKEN not in json.dumps(result)
    handled = [e for e in fn.log_lines() if e.get("message") == "handled" and e.get("project_id") == PROJECT]
    assert any(e.get("instance_id") == victim for e in handled)


def test_oversized_request_line_and_header_stop_at_the_server(function: Function) -> None:
    """`reaper serve` limits the request line and header sizes: gunicorn refuses before the app runs."""
    long_line = httpx.post(
        function.url + "x" * 20_000, content=b"{}", headers={"content-type": "application/json"}
    )
    assert long_line.status_code in (400, 414)
    assert not long_line.headers.get("content-type", "").startswith("application/json")
    huge_header = httpx.post(
        function.url, content=b"{}", headers={"content-type": "application/json", "x-big": "y" * 20_000}
    )
    assert huge_header.status_code in (400, 431)
    assert not huge_header.headers.get("content-type", "").startswith("application/json")
    tokens_fit = httpx.post(
        function.url,
        content=b"{}",
        headers={"content-type": "application/json", "x-cff-auth-token": "t" * 12_000},
    )
    assert tokens_fit.headers["content-type"].startswith(
        "application/json"
    )  # the app answered (a 400 of its own)
