"""Issue 26: three function instances sharing one Redis behave as one — one DELETE, one result, one use.

Each instance is a real functions-framework process; the store is the real ``redis-server`` (a private one
on its own port where the test kills it). The same event arriving at every instance at once is what an
at-least-once trigger in front of an autoscaled service does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from reaper.devtools.procs import Process, free_port
from tests.conftest import (
    PROJECT,
    REDIS_URL,
    WEBHOOK_SECRET,
    Emulator,
    Function,
    FunctionFactory,
    Sink,
    expired,
    new_id,
    wait_until,
    webhook_signed,
)

pytestmark = pytest.mark.integration
Fleet = list[Function]


def deletes(emulator: Emulator, instance: str) -> list[dict[str, Any]]:
    """The DELETE and batch-delete calls that named ``instance``."""
    return [c for c in emulator.touching(instance) if c["call"] in ("delete", "batch-delete")]


def at_once(calls: list[Callable[[], object]]) -> None:
    """Run every call at the same moment, each on its own thread."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        call()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def sending(fn: Function, event: CloudEvent, answers: list[dict[str, Any]]) -> Callable[[], None]:
    """A call that sends ``event`` to ``fn`` and keeps its JSON answer."""
    return lambda: answers.append(fn.send(event).json())


def sweeping_fleet(function_factory: FunctionFactory, project: str) -> Fleet:
    """Three instances allowed in ``project`` alone, sharing the real Redis."""
    return [
        function_factory(
            target="handle_http",
            signature="http",
            REAPER_STATE_URL=REDIS_URL,
            REAPER_ALLOWED_PROJECTS=project,
        )
        for _ in range(3)
    ]


def sweep_of(project: str) -> CloudEvent:
    """An ``instance-sweep`` of ``project``, as a scheduler sends it."""
    return CloudEvent({"type": "instance-sweep", "source": "/tests/cron"}, {"project_id": project})


@pytest.fixture
def fleet(function_factory: FunctionFactory, redis_up: None) -> Fleet:
    """Three instances of the HTTP target, as an autoscaler runs them, sharing the real Redis."""
    return [
        function_factory(target="handle_http", signature="http", REAPER_STATE_URL=REDIS_URL) for _ in range(3)
    ]


def test_one_event_at_three_instances_at_once_and_again_deletes_once(
    emulator: Emulator, fleet: Fleet, sink: Sink
) -> None:
    """Ten events, each delivered to all three instances at once, then again 2 s later: one DELETE and one
    delivered result (one id) per instance."""
    instances = [emulator.add(new_id("fleet"), termination_seconds=2) for _ in range(10)]
    events = [expired(instance) for instance in instances]
    answers: list[int] = []

    def deliver(fn: Function, event: CloudEvent) -> Callable[[], None]:
        return lambda: answers.append(fn.send(event).status_code)

    def deliver_everywhere() -> None:
        at_once([deliver(fn, event) for event in events for fn in fleet])

    deliver_everywhere()
    time.sleep(2)
    deliver_everywhere()
    assert answers == [200] * 60
    wait_until(lambda: all(sink.for_instance(i) for i in instances), 60, "a result per instance")
    time.sleep(3)  # the duplicate chains' own last checks land meanwhile
    for instance in instances:
        assert len(deletes(emulator, instance)) == 1, instance
        results = sink.for_instance(instance)
        assert [r["type"] for r in results] == ["instance-terminated"], instance


def test_three_overlapping_sweeps_of_a_drifting_listing_delete_each_instance_once(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink, redis_up: None
) -> None:
    """Three sweeps on three instances while expiries keep falling due: their batches differ (new ids sort
    first and shift every batch), and each batch-delete takes 1.5 s to land, so every sweep's read before
    its DELETE finds the instances running. Each expired instance is still deleted exactly once."""
    project = f"fleet-{uuid.uuid4().hex[:8]}"
    past = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def add(count: int, prefix: str) -> list[str]:
        specs = [
            {"id": f"{prefix}{n:03d}", "project_id": project, "metadata": {"reaper-expires-at": past},
             "termination_seconds": 2, "faults": {"batch-delete": [{"delay": 1.5}]}}
            for n in range(count)
        ]  # fmt: skip
        emulator.http.post("/admin/instances", json=specs).raise_for_status()
        return [str(s["id"]) for s in specs]

    sweepers = sweeping_fleet(function_factory, project)
    sweep = sweep_of(project)
    expired_ids = add(120, "c")
    for sweeper, prefix in zip(sweepers, ("b", "a", ""), strict=True):
        assert sweeper.send(sweep).status_code == 200
        if prefix:
            expired_ids += add(10, prefix)  # the listing drifts before the next sweep lists it
    wait_until(lambda: all(sink.for_instance(i) for i in expired_ids), 90, "140 results")
    counts = {i: len(deletes(emulator, i)) for i in expired_ids}
    assert {i: n for i, n in counts.items() if n != 1} == {}


def test_overlapping_sweeps_of_one_project_list_it_once(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink, redis_up: None
) -> None:
    """Three sweeps of one project at once on three instances, the listing slow (4 s): one lists, the
    other two are skipped (``sweep-in-progress``) and list nothing; the lease is given back at the end."""
    project = f"fleet-{uuid.uuid4().hex[:8]}"
    past = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    specs = [
        {"id": f"l{n:03d}", "project_id": project, "metadata": {"reaper-expires-at": past}} for n in range(30)
    ]
    emulator.http.post("/admin/instances", json=specs).raise_for_status()
    sweepers = sweeping_fleet(function_factory, project)
    sweep = sweep_of(project)
    elsewhere = sweep_of("not-ours")
    for fn in sweepers:  # warm: each process has loaded its sweep code before the race
        assert fn.send(elsewhere).json()["reason"] == "project-not-allowed"
    emulator.http.post("/admin/config", json={"paged_list_faults": [{"delay": 4.0}]}).raise_for_status()
    answers: list[dict[str, Any]] = []
    at_once([sending(fn, sweep, answers) for fn in sweepers])
    assert sorted(a["outcome"] for a in answers) == ["skipped", "skipped", "swept"], answers
    assert {a.get("reason") for a in answers if a["outcome"] == "skipped"} == {"sweep-in-progress"}

    def listings() -> int:
        return len(
            [
                c
                for c in emulator.calls()
                if c["project_id"] == project and c["call"] == "list" and not c["ids"]
            ]
        )

    assert listings() == 1
    assert sweepers[1].send(sweep).json()["outcome"] == "swept"  # the lease was given back
    assert listings() == 2
    wait_until(lambda: all(sink.for_instance(str(s["id"])) for s in specs), 60, "30 results")


def test_a_signed_request_replayed_to_the_other_instances_is_refused(
    emulator: Emulator, function_factory: FunctionFactory, redis_up: None
) -> None:
    """A Standard Webhooks request accepted by one instance is a replay at the other two: 401 each."""
    signed_fleet = [
        function_factory(
            target="handle_http",
            signature="http",
            REAPER_STATE_URL=REDIS_URL,
            REAPER_INBOUND_AUTH="webhook",
            REAPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
        )
        for _ in range(3)
    ]
    instance = emulator.add(new_id("fleet"))
    headers, body = to_binary(expired(instance))
    signed = webhook_signed(headers, body)
    assert httpx.post(signed_fleet[0].url, headers=signed, content=body).status_code == 200
    for other in signed_fleet[1:]:
        replay = httpx.post(other.url, headers=signed, content=body)
        assert replay.status_code == 401
        assert "replay" in replay.json()["error"]
    assert len(deletes(emulator, instance)) == 1


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that the test may kill and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = Process(argv, self.port).start()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    if server.process is not None:
        server.process.stop()


def test_with_the_store_down_nothing_is_deleted_or_accepted_and_it_recovers_without_a_restart(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink, private_redis: PrivateRedis
) -> None:
    """kill -9 of redis-server: an expiry and a signed request get 503 (redeliver), no DELETE; the same
    requests after redis-server is back: handled, one DELETE, one result, by the same processes."""
    plain = function_factory(target="handle_http", signature="http", REAPER_STATE_URL=private_redis.url)
    signed = function_factory(
        target="handle_http",
        signature="http",
        REAPER_STATE_URL=private_redis.url,
        REAPER_INBOUND_AUTH="webhook",
        REAPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    first, second = emulator.add(new_id("down")), emulator.add(new_id("down"))
    event = expired(first)
    headers, body = to_binary(expired(second))
    signed_headers = webhook_signed(headers, body)
    private_redis.kill()
    down = plain.send(event)
    assert down.status_code == 503, down.text
    assert "state store" in down.json()["error"]
    assert httpx.post(signed.url, headers=signed_headers, content=body).status_code == 503
    assert deletes(emulator, first) == []
    assert deletes(emulator, second) == []
    private_redis.start()
    assert plain.send(event).status_code == 200
    assert httpx.post(signed.url, headers=signed_headers, content=body).status_code == 200
    wait_until(lambda: sink.for_instance(first) and sink.for_instance(second), 30, "both results")
    assert len(deletes(emulator, first)) == len(deletes(emulator, second)) == 1
    assert PROJECT in {c["project_id"] for c in deletes(emulator, first)}
