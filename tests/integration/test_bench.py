"""The benchmark harness itself: its load generator counts right and its report has every table."""

from __future__ import annotations

import json

from bench import load
from bench.plot import plot
from bench.report import report
from bench.scenarios import FLEETS, THROUGHPUT_POINTS
from bench.stub_upstream import answer
from tests.conftest import Receiver


def test_load_generator_counts_answers(receiver: Receiver) -> None:
    """Every event is sent once; non-2xx answers are sent but not counted ok (reconnecting as needed)."""
    receiver.script = [503, 503]
    result = load.run(receiver.url, [f"i{n}" for n in range(40)], "p", concurrency=4, max_seconds=20)
    assert result.sent == 40
    assert result.ok == 38
    assert len(receiver.ids()) == 38
    assert receiver.headers[0]["ce-type"] == "instance-expired"


def test_report_has_every_table_and_row() -> None:
    """The rendered page has the rows issue 13 asks for, each figure beside its target, and the plot."""
    row = {
        "busy_ms": 20.0,
        "calls": 2.2,
        "reads": 1.0,
        "events": 2.0,
        "lag_median": 3.0,
        "lag_p95": 4.0,
        "lag_max": 4.5,
        "lag_p95_share": 0.07,
        "finished": 100,
        "count": 100,
    }
    rows = [
        {"schedule": schedule, "fleet": label, "T": seconds, **row, "cold": row}
        for label, seconds, _ in FLEETS
        for schedule in ("learned", "fixed")
    ]
    rows[-1] = {**rows[-1], "calls": 4.0, "lag_p95_share": 0.6}
    rows.append(
        {"schedule": "naive", "fleet": "T = 60 s", "T": 60.0, **row, "busy_ms": 60_000.0, "calls": 13.0}
    )
    tp = [
        {
            "label": label,
            "threads": threads,
            "latency_ms": latency * 1000,
            "rate": 100.0 if label == "reaper" else 400.0,
            "p50": 1.0,
            "p99": 2.0,
            "cpu_ms": 1.0 if label == "reaper" else 0.5,
            "upstream_ms": 2.0,
            "errors": 0,
            "own_cpu": True,
        }
        for label, _, threads, latency in THROUGHPUT_POINTS
    ]
    cold = {
        "no-op": {"start_ms": 100.0, "import_ms": 50.0},
        "reaper": {"start_ms": 120.0, "import_ms": 80.0},
        "pairs": 11,
        "pair_ratio_median": 1.2,
        "pair_ratio_range": [1.1, 1.4],
    }
    mem = {"noop_idle": 20.0, "idle": 30.0, "after_2000": 40.0, "after_10000": 41.0, "events": 12_000}
    trans = [
        {"name": "local", "against": "x", "p50": 1.0, "p99": 2.0},
        {"name": "qstash", "against": "y", "p50": None, "p99": None},
    ]
    sweep = {
        "sweep_ms": 50.0,
        "busy_per_instance_ms": 3.0,
        "calls_per_instance": 0.1,
        "batch_deletes": 6,
        "lists": 22,
        "finished": 300,
    }
    results = {
        "cost": {"rows": rows, "ideal": {"busy_ms": 1.5}},
        "throughput": tp,
        "doubles": {
            "no-op": {"rate": 1000.0, "cpu_ms": 0.5, "upstream_ms": 0.1, "errors": 0},
            "reaper": {"rate": 300.0, "cpu_ms": 1.1, "upstream_ms": 2.4, "errors": 0},
        },
        "placement": {
            "no-op, own CPU": {"rate": 2000.0, "cpu_ms": 0.45, "errors": 0},
            "reaper, own CPU": {"rate": 900.0, "cpu_ms": 1.0, "errors": 0},
            "no-op, every CPU": {"rate": 1500.0, "cpu_ms": 0.7, "errors": 0},
            "reaper, every CPU": {"rate": 500.0, "cpu_ms": 2.0, "errors": 0},
        },
        "cold": cold,
        "memory": mem,
        "transports": trans,
        "sweep": sweep,
        "instructions": {
            "no-op": 1_000_000.0,
            "reaper": 2_500_000.0,
            "reaper, CloudEvent target": 2_700_000.0,
            "no-op, HTTP": 800_000.0,
        },
    }
    text = report(results, "make bench", 300.0, 0.0)
    for needle in (
        "| learned | T = 20 s | 2.20 |",
        "| fixed |",
        "| naive |",
        "| ideal |",
        "| cold start vs a no-op, median of 11 interleaved pairs | 1.20x | ≤ 1.3x | met |",
        "| server CPU per event, THREADS=16 (§2) | 1.00 ms (no-op 0.50) | ≤ 1.2 ms | met |",
        "| the same, in no-ops (this machine's speed divided out) | 2.00x | ≤ 2.67x",
        "| 1.00 | 2.00 | 0 |",
        "| the same, in no-ops (vs the no-op's events/s) | 25% | ≥ 20%",
        "= 25% | ≥ 40 % | **missed** |",
        "upstream (§2b) | 300 / 1000 = 30% | — | the test doubles' own CPU, 2.4 ms per event",
        "| reaper | 300 | 1.10 | 2.40 | 0 |",
        "| reaper | every CPU | 500 | 2.00 | 0 |",
        "on every CPU: 2.00x that on a CPU of its own",
        "worker runs on a CPU of its own (taskset)",
        "2.50 M (no-op 1.00 M = 2.50x) | ≤ 2.67x the no-op | met |",
        "| reaper, CloudEvent target | 2,700,000 | 2.70x |",
        "| no-op, HTTP | 800,000 | 0.80x |",
        "shipped target (`handle_http`",
        "grows 10.0 MB over its first 2,000 events",
        "| RSS",
        "schedule.svg",
        "`make bench`",
    ):
        assert needle in text, needle
    svg = plot(rows)
    assert svg.startswith("<svg")
    assert svg.count("<circle") == 2  # T = 20 s, learned and fixed
    assert svg.count("<polygon") == 2  # the mixed fleet


def test_the_stub_upstream_answers_as_the_emulator_would() -> None:
    """The ceiling's stub lists the asked ids under their project, accepts DELETEs and schedules."""
    template = {"id": "t", "name": "t", "state": "running", "metadata": {}, "project_id": "t"}
    status, body = answer("GET", "/v1/p-1/instances?limit=100&instance_id=i-1", template)
    listed = json.loads(body)
    assert status == b"200 OK"
    assert listed["instances"] == [
        {**template, "id": "i-1", "name": "i-1", "server_id": "srv-i-1", "project_id": "p-1"}
    ]
    assert listed["page_info"]["next_marker"] is None
    assert answer("DELETE", "/v1/p-1/instances/i-1", template) == (b"204 No Content", b"")
    assert answer("POST", "/v1/events", template)[0] == b"202 Accepted"
    assert answer("GET", "/v1/p-1/instances/i-1/status", template)[0] == b"404 Not Found"


def test_the_soak_fails_when_anything_is_lost_doubled_or_a_fault_never_came() -> None:
    """``make soak`` passes only when every instance has one result id and every planned fault happened."""
    from bench.soak import passed

    good = {"lost": 0, "instances_with_more_than_one_result_id": 0, "chaos": ["a", "b"], "chaos_planned": 2}
    assert passed(good)
    assert not passed({**good, "lost": 1})
    assert not passed({**good, "instances_with_more_than_one_result_id": 1})
    assert not passed({**good, "chaos": ["a"]})  # the run ended before the second fault
