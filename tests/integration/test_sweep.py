"""Expiry sweeps: pick what has expired, delete in batches, follow through batched reads."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cloudevents.http import CloudEvent

from function import core
from function.core import gate, sweep
from tests.conftest import Emulator, FunctionFactory, Sink, wait_until

POLICY = core.Policy(check_delay=10, check_max_delay=60, deadline=600, max_retries=2)
NOW = 1_800_000_000.0
RAND = lambda: 0.5  # noqa: E731 - a fixed draw


def stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def test_expired_ids_picks_deletable_expired_instances() -> None:
    """Only running/stopped instances whose expiry has passed are picked; bad metadata is ignored."""
    past, future = "2026-01-01T00:00:00Z", "2999-01-01T00:00:00+00:00"
    records: list[dict[str, Any]] = [
        {"id": "a", "state": "running", "metadata": {"k": past}},
        {"id": "b", "state": "stopped", "metadata": {"k": past}},
        {"id": "c", "state": "shutting-down", "metadata": {"k": past}},
        {"id": "d", "state": "running", "metadata": {"k": future}},
        {"id": "e", "state": "running", "metadata": {"k": "next tuesday"}},
        {"id": "f", "state": "running", "metadata": {"k": "2026-01-01T00:00:00"}},  # no zone: ambiguous
        {"id": "g", "state": "running"},
        {"id": "../x", "state": "running", "metadata": {"k": past}},
    ]
    rules = gate.Rules(allowed_projects=None, expiry_key="k")
    assert sweep.expired_ids(records, "p", NOW, rules) == ["a", "b"]
    protected = [{**records[0], "metadata": {"k": past, "reaper-protected": "true"}}, records[1]]
    assert sweep.expired_ids(protected, "p", NOW, rules) == ["b"]
    assert sweep.expired_ids(records, "p", NOW, gate.Rules(allowed_projects=frozenset({"q"}))) == []
    assert sweep.batches([str(i) for i in range(120)])[-1] == tuple(str(i) for i in range(100, 120))


def test_batch_list_decides_per_instance() -> None:
    """One read of a batch finishes some instances, keeps others, re-deletes those back to running."""
    job = sweep.BatchJob("p", ("a", "b", "c", "d", "e"), "o", NOW - 60, NOW + 600, deleted_at=NOW - 50)
    records: list[dict[str, Any]] = [
        {"id": "a", "state": "terminated"},
        {"id": "c", "state": "error"},
        {"id": "d", "state": "shutting_down"},
        {"id": "e", "state": "running", "metadata": {"reaper-expires-at": "2026-01-01T00:00:00Z"}},
    ]
    step = sweep.on_batch_list(job, core.ApiAnswer(200), records, NOW, POLICY, lambda: 0.0)
    assert {i: r.kind for i, r in step.results} == {"a": "terminated", "b": "terminated", "c": "failed"}
    assert step.delete == ("e",)
    assert step.action == "batch-check"
    assert step.job is not None
    assert step.job.instance_ids == ("d", "e")
    late = sweep.on_batch_list(job, core.ApiAnswer(200), records[2:3], NOW + 700, POLICY, lambda: 0.0)
    assert {r.reason for _, r in late.results if r.kind == "failed"} == {"deadline-exceeded"}


def test_batch_failures() -> None:
    """Transient failures retry the same hop, bounded; 401 and other 4xx finish every instance."""
    job = sweep.BatchJob("p", ("a", "b"), "o", NOW, NOW + 600)
    retry = sweep.on_batch_delete(job, core.ApiAnswer(503), NOW, POLICY, lambda: 0.0)
    assert retry.action == "batch-delete"
    assert retry.job is not None
    exhausted = sweep.on_batch_delete(
        sweep.BatchJob("p", ("a",), "o", NOW, NOW + 600, failures=2),
        core.ApiAnswer(503),
        NOW,
        POLICY,
        lambda: 0,
    )
    assert [r.reason for _, r in exhausted.results] == ["retries-exhausted"]
    denied = sweep.on_batch_list(job, core.ApiAnswer(401), [], NOW, POLICY, lambda: 0.0)
    assert [r.reason for _, r in denied.results] == ["unauthorized", "unauthorized"]
    rejected = sweep.on_batch_delete(job, core.ApiAnswer(403), NOW, POLICY, lambda: 0.0)
    assert [r.reason for _, r in rejected.results] == ["rejected", "rejected"]
    read_first = sweep.on_batch_delete(job, core.ApiAnswer(400), NOW, POLICY, lambda: 0.0)
    assert (read_first.action, read_first.delay) == ("batch-check", 0.0)
    past_deadline = sweep.on_batch_list(job, core.ApiAnswer(500), [], NOW + 601, POLICY, lambda: 0.0)
    assert [r.reason for _, r in past_deadline.results] == ["deadline-exceeded"] * 2


@pytest.mark.integration
def test_sweep_of_1000_instances_with_300_expired(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """300 of 1,000 expired: all reach terminated with at most 6 batch-deletes and batched reads;
    two more sweeps overlapping each other cause no extra DELETE."""
    project = f"sweep-{uuid.uuid4().hex[:8]}"
    past, future = stamp(timedelta(minutes=-5)), stamp(timedelta(days=1))
    specs: list[dict[str, Any]] = []
    for n in range(1000):
        metadata = (
            {"reaper-expires-at": past}
            if n % 10 < 3
            else {"reaper-expires-at": future}
            if n % 10 == 3
            else {}
        )
        specs.append(
            {"id": f"s{n:04d}", "project_id": project, "metadata": metadata, "termination_seconds": 2}
        )
    emulator.http.post("/admin/instances", json=specs).raise_for_status()
    expired = {s["id"] for s in specs if s["metadata"].get("reaper-expires-at") == past}
    assert len(expired) == 300
    fn = function_factory(
        target="handle_http", signature="http", REAPER_CHECK_DELAY="1", REAPER_ALLOWED_PROJECTS=project
    )

    def fire() -> httpx.Response:
        event = CloudEvent({"type": "instance-sweep", "source": "/tests/cron"}, {"project_id": project})
        return fn.send(event)

    answers: list[httpx.Response] = []
    overlapping = [threading.Thread(target=lambda: answers.append(fire())) for _ in range(2)]
    for thread in overlapping:
        thread.start()
    for thread in overlapping:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200]
    # The second lists too, or, while the first holds the project's sweep lease, is skipped.
    assert {a.json()["outcome"] for a in answers} in ({"swept"}, {"swept", "skipped"})
    skipped = {a.json().get("reason") for a in answers if a.json()["outcome"] == "skipped"}
    assert skipped <= {"sweep-in-progress"}
    assert max(a.json()["instances"] for a in answers) == 300
    late = fire()  # a third sweep while the deletes are under way
    assert late.status_code == 200

    def finished() -> bool:
        return all(sink.for_instance(i) for i in expired)

    wait_until(finished, 60, "300 results")
    calls = [c for c in emulator.calls() if c["project_id"] == project]
    batch_deletes = [c for c in calls if c["call"] == "batch-delete"]
    assert len(batch_deletes) <= 6
    deleted = Counter(i for c in batch_deletes for i in c["ids"])
    assert set(deleted) == expired
    assert max(deleted.values()) == 1  # no instance deleted twice
    assert not [c for c in calls if c["call"] in ("delete", "status")]
    reads = [c for c in calls if c["call"] == "list" and c["ids"]]
    assert reads
    assert all(len(c["ids"]) <= 100 for c in reads)
    for instance in expired:
        results = {e["id"]: e for e in sink.for_instance(instance)}
        assert len(results) == 1
        assert next(iter(results.values()))["type"] == "instance-terminated"
    states = {
        i["id"]: i["state"]
        for i in emulator.http.get("/admin/instances").json()
        if i["project_id"] == project
    }
    assert {states[i] for i in expired} == {"terminated"}
    assert {s for i, s in states.items() if i not in expired} == {"running"}


def test_a_failed_page_continues_from_its_marker() -> None:
    """A sweep page that failed is retried from its marker: 429s count as throttles (bounded by the
    deadline), 5xx as failures (bounded by REAPER_MAX_RETRIES); each retry has a step key of its own."""
    page = sweep.SweepPage("p", "i-0100", "sweep-1", 1000.0, 1600.0)
    throttled, delay = core.plan_retry(page, core.ApiAnswer(429, retry_after=4.0), 1001.0, POLICY, RAND)
    assert (throttled.throttles, throttled.failures, throttled.marker, delay) == (1, 0, "i-0100", 4.0)
    failed = page
    for _ in range(POLICY.max_retries):
        failed, plan = core.plan_retry(failed, core.ApiAnswer(500), 1001.0, POLICY, RAND)
        assert isinstance(plan, float)
    _, gave_up = core.plan_retry(failed, core.ApiAnswer(500), 1001.0, POLICY, RAND)
    assert gave_up == "retries-exhausted"
    _, late = core.plan_retry(page, core.ApiAnswer(429), 1600.0, POLICY, RAND)
    assert late == "deadline-exceeded"
    keys = {page.step_key(), throttled.step_key(), failed.step_key()}
    assert len(keys) == 3
