"""Faults, races and shutdowns through the real processes: every instance is reaped once and every
result is delivered (issue: reliability)."""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reaper.devtools.procs import Process, free_port, function_command
from tests.conftest import (
    PROJECT,
    Emulator,
    FunctionFactory,
    Sink,
    expired,
    function_env,
    new_id,
    serve_collecting_sink,
    wait_until,
)

pytestmark = pytest.mark.integration
EXPIRED_LONG_AGO = {"reaper-expires-at": "2020-01-01T00:00:00Z"}


@pytest.fixture
def own_sink() -> Iterator[Sink]:
    """A sink of this test's own, so its outage touches no other test's chains."""
    yield from serve_collecting_sink()


def deletes(emulator: Emulator, instance: str) -> int:
    return len([c for c in emulator.touching(instance) if c["call"] in ("delete", "batch-delete")])


def test_sink_down_for_10_seconds_every_result_arrives_after_it_returns(
    emulator: Emulator, function_factory: FunctionFactory, own_sink: Sink
) -> None:
    """While the sink answers 503 the finishing step answers 503 too, its source (the delay service)
    redelivers it, and the result arrives once the sink is back: none is left only in a log line."""
    fn = function_factory(K_SINK=own_sink.url)
    instances = [emulator.add(new_id()) for _ in range(10)]
    own_sink.down_until = back = time.time() + 10
    for instance in instances:
        assert fn.send(expired(instance)).status_code == 200
    arrived = {i: own_sink.result(i, timeout=90) for i in instances}
    assert own_sink.refused > 0  # the outage was met, not slept through
    assert all(r["type"] == "instance-terminated" for r in arrived.values())
    for instance in instances:
        assert len({e["id"] for e in own_sink.for_instance(instance)}) == 1
        assert deletes(emulator, instance) == 1
    assert min(r["time"] for r in arrived.values()) >= time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime(back - 1)
    )


def test_overlapping_sweeps_give_one_delete_and_one_result_id_per_instance(
    emulator: Emulator, function_factory: FunctionFactory, own_sink: Sink
) -> None:
    """Two sweeps at once and a third 0.75 s later over the same 18 instances (a timer, Pub/Sub, a
    retry): each instance is deleted once and announced with one result id. Ids and keys derive from
    the instances, not from the sweep that found them, so the transport keeps one chain."""
    project = "proj-" + new_id()[:12]
    fn = function_factory(CLOUDDC_PROJECT_ID=project, K_SINK=own_sink.url)
    instances = [emulator.add(new_id(), project_id=project, metadata=EXPIRED_LONG_AGO) for _ in range(18)]

    def sweep(source: str) -> int:
        event = {"type": "instance-sweep", "source": source, "id": new_id(), "specversion": "1.0"}
        headers = {"Content-Type": "application/cloudevents+json"}
        body = {**event, "data": {"project_id": project}}
        return httpx.post(fn.url, json=body, headers=headers, timeout=10).status_code

    # A slow API (1 s per call) keeps each sweep's read-before-delete from seeing the other's delete:
    # only the transport's de-duplication of the shared batch key stands between them and two DELETEs.
    emulator.configure(latency=1.0)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            assert list(pool.map(sweep, ["/timer", "/pubsub"])) == [200, 200]
        time.sleep(0.75)
        assert sweep("/retry") == 200
        wait_until(lambda: all(deletes(emulator, i) for i in instances), 20, "the batch-delete")
    finally:
        emulator.configure(latency=0.0)
    for instance in instances:
        own_sink.result(instance, timeout=60)
    time.sleep(2)  # a second chain, if any, would announce within this
    for instance in instances:
        ids = collections.Counter(e["id"] for e in own_sink.for_instance(instance))
        assert len(ids) == 1, (instance, ids)
        assert deletes(emulator, instance) == 1
        assert own_sink.for_instance(instance)[0]["type"] == "instance-terminated"


def test_sigterm_under_load_every_answered_event_is_finished(
    emulator: Emulator, delay_service: Process, own_sink: Sink, tmp_path: Path
) -> None:
    """SIGTERM while events stream in: requests in hand finish, no new ones start, and every event
    answered 2xx has its follow-up, so (with a new process on the same address) it ends in a result."""
    port = free_port()
    env = function_env(emulator, delay_service, own_sink.url, port) | {
        "REAPER_CHECK_DELAY": "1",
        "REAPER_DEADLINE": "120",
    }
    log = (tmp_path / "function.log").open("wb")
    first = Process(function_command(port, "handle_http", "http"), port, env=env, stderr=log).start()
    answered: dict[str, int] = {}
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                instance = emulator.add(new_id())
                try:
                    status = client.post(
                        first.url, json={"instance_id": instance, "project_id": PROJECT}
                    ).status_code
                except httpx.HTTPError:
                    status = 0  # refused or reset: the sender's to retry, nothing was promised
                answered[instance] = status
                if status == 0:
                    stop.wait(0.05)

    senders = [threading.Thread(target=stream) for _ in range(4)]
    for sender in senders:
        sender.start()
    wait_until(lambda: sum(s == 200 for s in answered.values()) >= 40, 30, "load")
    assert first.proc is not None
    first.proc.terminate()
    assert first.proc.wait(30) == 0  # a clean, bounded shutdown
    stop.set()
    for sender in senders:
        sender.join(15)
    second = Process(function_command(port, "handle_http", "http"), port, env=env, stderr=log).start()
    try:
        accepted = [i for i, status in answered.items() if status == 200]
        assert all(status in (0, 200) or status >= 500 for status in answered.values()), answered
        for instance in accepted:
            assert own_sink.result(instance, timeout=60)["type"] == "instance-terminated"
    finally:
        second.stop()
        log.close()


def test_a_sweep_goes_on_from_the_page_that_failed(
    emulator: Emulator, function_factory: FunctionFactory, own_sink: Sink
) -> None:
    """250 expired instances (3 pages): the second page answers 500, then 429; the sweep hands on what it
    read, continues from that page's marker with a signed instance-sweep-page, and every instance is
    reaped — no page is lost, none read twice for nothing, and the sweep's own answer is 200."""
    project = "proj-" + new_id()[:12]
    fn = function_factory("handle_http", "http", CLOUDDC_PROJECT_ID=project, K_SINK=own_sink.url)
    instances = [emulator.add(f"i-{n:03d}-{new_id()[:6]}", project_id=project, metadata=EXPIRED_LONG_AGO)
                 for n in range(250)]  # fmt: skip
    emulator.configure(paged_list_faults=[{}, {"status": 500}, {"status": 429, "retry_after": 1}])
    try:
        event = {"type": "instance-sweep", "source": "/timer", "id": new_id(), "specversion": "1.0"}
        answer = httpx.post(
            fn.url,
            json={**event, "data": {"project_id": project}},
            headers={"Content-Type": "application/cloudevents+json"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["outcome"] == "scheduled-sweep-page"
        assert answer.json()["instances"] == 100  # the first page, handed on at once
        for instance in instances:
            assert own_sink.result(instance, timeout=60)["type"] == "instance-terminated"
    finally:
        emulator.configure(paged_list_faults=[])
    paged = [
        c for c in emulator.calls() if c["call"] == "list" and c["project_id"] == project and c["ids"] is None
    ]
    assert [c["status"] for c in paged] == [200, 500, 429, 200, 200]
