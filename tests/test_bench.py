"""The benchmark harness itself: its load generator counts right and its report has every table."""

from __future__ import annotations

from bench import load
from bench.__main__ import THROUGHPUT_POINTS, report
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
    """The rendered page has the rows the benchmark issue asks for."""
    row = {"busy_ms": 20.0, "calls": 4.0, "lag_median": 30.0, "lag_p95": 40.0, "lag_max": 45.0}
    cost = {
        "reaper": row,
        "naive": {**row, "busy_ms": 60_000.0, "calls": 13.0},
        "ideal": {**row, "busy_ms": 1.5},
    }
    tp = [
        {
            "label": label,
            "threads": threads,
            "latency_ms": latency * 1000,
            "rate": 100.0,
            "p50": 1.0,
            "p99": 2.0,
            "cpu_ms": 1.0,
            "errors": 0,
        }
        for label, _, threads, latency in THROUGHPUT_POINTS
    ]
    cold = {"no-op": {"start_ms": 100.0, "import_ms": 50.0}, "reaper": {"start_ms": 150.0, "import_ms": 80.0}}
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
    text = report(cost, tp, cold, mem, trans, sweep, "make bench", 300.0, 0.0)
    for needle in (
        "| no-op |",
        "| naive |",
        "| ideal |",
        "| cold start",
        "| RSS",
        "| busy",
        "| API calls",
        "1/3,000",
    ):
        assert needle in text, needle
