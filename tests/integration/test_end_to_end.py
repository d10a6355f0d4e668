"""The whole mission on loopback: real functions-framework, emulator and delay service processes."""

from __future__ import annotations

import time

import httpx
import pytest

from reaper.devtools.procs import Process, free_port, reaper_command
from tests.conftest import (
    ANY_LOOPBACK,
    PROJECT,
    TOKEN,
    Emulator,
    Function,
    FunctionFactory,
    Sink,
    expired,
    new_id,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_expired_instance_is_deleted_and_followed_to_terminated(
    mode: str, emulator: Emulator, function: Function, sink: Sink
) -> None:
    """An expired event deletes the instance, and delayed checks report it terminated."""
    instance = emulator.add(new_id())
    response = function.send(expired(instance), mode=mode)
    assert response.status_code == 200
    result = sink.result(instance)
    assert result["type"] == "instance-terminated"
    assert result["data"]["project_id"] == PROJECT
    assert result["data"]["already_absent"] is False
    assert result["data"]["checks"] >= 1
    assert emulator.state(instance) == "terminated"
    assert next(c["call"] for c in emulator.calls(instance)) == "delete"


def test_absent_instance_is_reported_already_absent(
    emulator: Emulator, function: Function, sink: Sink
) -> None:
    """An instance the read before the delete does not find ends at once as terminated, already_absent."""
    instance = new_id()
    assert function.send(expired(instance)).status_code == 200
    result = sink.result(instance)
    assert result["type"] == "instance-terminated"
    assert result["data"]["already_absent"] is True
    assert [(c["call"], c["status"]) for c in emulator.touching(instance)] == [("list", 200)]


def test_throttled_delete_is_retried_after_retry_after_without_waiting(
    emulator: Emulator, http_function: Function, sink: Sink
) -> None:
    """429 with Retry-After: 2 becomes a delayed retry; the handler answers well before 2 s."""
    instance = emulator.add(new_id(), faults={"delete": [{"status": 429, "retry_after": 2}]})
    began = time.monotonic()
    response = http_function.send(expired(instance))
    answered_after = time.monotonic() - began
    assert response.status_code == 200
    assert response.json()["outcome"] == "scheduled-delete"
    assert response.json()["delay"] == 2
    assert answered_after < 1.5  # it did not wait for the Retry-After
    assert sink.result(instance)["type"] == "instance-terminated"
    deletes = [c for c in emulator.calls(instance) if c["call"] == "delete"]
    assert [c["status"] for c in deletes] == [429, 204]
    assert deletes[1]["time"] - deletes[0]["time"] >= 2.0


def test_server_error_then_success(emulator: Emulator, function: Function, sink: Sink) -> None:
    """A 500 on DELETE is retried later through a delayed event, then the delete goes through."""
    instance = emulator.add(new_id(), faults={"delete": [{"status": 500}]})
    assert function.send(expired(instance)).status_code == 200
    assert sink.result(instance)["type"] == "instance-terminated"
    assert [c["status"] for c in emulator.calls(instance) if c["call"] == "delete"] == [500, 204]


def test_failing_delete_is_reported(emulator: Emulator, function: Function, sink: Sink) -> None:
    """An instance whose delete ends in 'failed' yields instance-deletion-failed, reason delete-failed."""
    instance = emulator.add(new_id(), outcome="fail")
    assert function.send(expired(instance)).status_code == 200
    result = sink.result(instance)
    assert result["type"] == "instance-deletion-failed"
    assert result["data"]["reason"] == "delete-failed"
    # The cause, as ShowInstanceStatus's error object and operation_state gave it.
    assert (result["data"]["error_code"], result["data"]["error_msg"]) == (
        "CDC.5001",
        "the server did not power off",
    )
    assert result["data"]["operation_state"] == "uninstall-failed"


def test_intermittent_status_endpoint(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """Status checks that fail now and then (500, reset, 503) still end in terminated.

    A function of its own: with other deletes in flight, its checks would share a ListInstances read.
    """
    function = function_factory()
    faults = [{"status": 500}, {"reset": True}, {"status": 503}]
    instance = emulator.add(new_id(), termination_seconds=3, faults={"status": faults})
    assert function.send(expired(instance)).status_code == 200
    assert sink.result(instance, timeout=40)["type"] == "instance-terminated"
    statuses = [c["status"] for c in emulator.calls(instance) if c["call"] == "status"]
    assert statuses[:3] == [500, None, 503]


def test_same_event_twice_gives_one_result(emulator: Emulator, function: Function, sink: Sink) -> None:
    """A redelivered expired event (same id) merges into the same chain: one result event."""
    instance = emulator.add(new_id())
    event = expired(instance, event_id=new_id("dup"))
    assert function.send(event).status_code == 200
    assert function.send(event).status_code == 200
    sink.result(instance)
    time.sleep(3)  # let any stray second chain finish, so a duplicate would show
    assert len({e["id"] for e in sink.for_instance(instance)}) == 1


def test_dry_run_skips_without_delete(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """REAPER_DRY_RUN=true reports instance-deletion-skipped (dry-run) and never calls DELETE."""
    dry = function_factory(REAPER_DRY_RUN="true")
    instance = emulator.add(new_id())
    assert dry.send(expired(instance)).status_code == 200
    result = sink.result(instance)
    assert result["type"] == "instance-deletion-skipped"
    assert result["data"]["reason"] == "dry-run"
    assert emulator.calls(instance) == []
    assert emulator.state(instance) == "running"


def test_delay_service_down_answers_503_so_the_source_redelivers(
    emulator: Emulator, function_factory: FunctionFactory
) -> None:
    """When the follow-up cannot be handed on, the handler answers 5xx (nothing is lost)."""
    cut_off = function_factory(REAPER_DELAY_SERVICE_URL=f"http://127.0.0.1:{free_port()}")
    instance = emulator.add(new_id())
    response = cut_off.send(expired(instance))
    assert response.status_code == 503
    assert "delay service" in response.json()["error"]


def test_delay_service_restart_loses_nothing(
    emulator: Emulator,
    function_factory: FunctionFactory,
    sink: Sink,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Killing the delay service with checks pending and restarting it on the same database loses nothing."""
    workdir = tmp_path_factory.mktemp("restart")
    port = free_port()
    argv = reaper_command(
        "delay-service",
        "--port",
        str(port),
        "--db",
        str(workdir / "d.sqlite3"),
        "--allow-target",
        ANY_LOOPBACK,
    )
    service = Process(argv, port).start()
    fn = function_factory(
        REAPER_DELAY_SERVICE_URL=service.url, REAPER_CHECK_DELAY="3", REAPER_CHECK_MAX_DELAY="4"
    )
    instances = [emulator.add(new_id()) for _ in range(5)]
    try:
        for instance in instances:
            assert fn.send(expired(instance)).status_code == 200
        service.kill()
        time.sleep(3.5)  # the checks fall due while the service is down
        assert all(not sink.for_instance(i) for i in instances)
        service = Process(argv, port).start()
        for instance in instances:
            assert sink.result(instance)["type"] == "instance-terminated"
    finally:
        service.stop()


def test_status_spellings_and_rejected_delete_on_shutting_down(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """An instance already shutting down (spelled shutting_down) is followed, never deleted again.

    A function of its own: with other deletes in flight, its check would share a ListInstances read.
    """
    function = function_factory()
    emulator.configure(delete_in_progress_status=400, shutting_down_spelling="shutting_down")
    try:
        instance = emulator.add(new_id(), termination_seconds=2)
        # Someone else's delete got there first: the instance is shutting down when the event arrives.
        first = httpx.delete(
            f"{emulator.url}/v1/{PROJECT}/instances/{instance}", headers={"X-Auth-Token": TOKEN}
        )
        assert first.status_code == 204
        assert function.send(expired(instance)).status_code == 200
        assert sink.result(instance)["type"] == "instance-terminated"
    finally:
        emulator.configure(delete_in_progress_status=204, shutting_down_spelling="shutting-down")
    calls = [(c["call"], c["status"]) for c in emulator.calls(instance)]
    assert calls[:2] == [("delete", 204), ("status", 200)]  # someone else's DELETE, then reaper's check
    assert [c for c, _ in calls].count("delete") == 1


def test_a_throttle_storm_longer_than_the_retry_budget_still_ends_terminated(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """Five 429s (Retry-After: 1) with REAPER_MAX_RETRIES=2: throttling slows reaper down, never stops it."""
    fn = function_factory(REAPER_MAX_RETRIES="2")
    storm = [{"status": 429, "retry_after": 1}] * 5
    instance = emulator.add(new_id(), faults={"delete": storm})
    assert fn.send(expired(instance)).status_code == 200
    result = sink.result(instance, timeout=30)
    assert result["type"] == "instance-terminated", result["data"]
    deletes = [c["status"] for c in emulator.calls(instance) if c["call"] == "delete"]
    assert deletes == [429] * 5 + [204]
