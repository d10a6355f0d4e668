"""Issue 24: a step that ends in 5xx still leaves its record — every call it made, in its span and in one
``handled`` line with its trace context — and ``reaper explain`` shows it and survives foreign lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary

from reaper.devtools.procs import Process, free_port, function_command
from tests.conftest import PROJECT, Emulator, Function, Sink, expired, function_env, new_id
from tests.integration.test_tracing import console_records

pytestmark = pytest.mark.integration


def test_a_step_that_deleted_and_then_could_not_hand_on_says_so(
    emulator: Emulator, sink: Sink, tmp_path: Path
) -> None:
    """The delay service is down: the step reads, DELETEs (204), then answers 503. Its span and its one
    ``handled`` line name the instance, the project, the event type and both calls with their statuses, with
    the step's trace context; ``reaper explain`` starts at that step, not at the retry."""
    port, closed = free_port(), free_port()
    down = Process(["true"], closed)  # nothing listens on ``closed``: the delay service is down
    assert down.proc is None
    env = function_env(emulator, down, sink.url, port) | {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
    }
    instance = emulator.add(new_id("handoff"))
    stdout, log = tmp_path / "stdout.txt", tmp_path / "function.log"
    with stdout.open("wb") as out, log.open("wb") as err:
        function = Process(
            function_command(port, "handle_http", "http"), port, env=env, stdout=out, stderr=err
        )
        function.start()
        try:
            headers, body = to_binary(expired(instance))
            answer = httpx.post(function.url, headers=headers, content=body, timeout=15)
        finally:
            function.stop()
    assert answer.status_code == 503, answer.text
    lines = [line for line in _json_lines(log) if line.get("instance_id") == instance]
    handled = [line for line in lines if line["message"] == "handled"]
    assert len(handled) == 1, lines
    step = handled[0]
    assert step["outcome"] == "redeliver"
    assert step["http_status"] == 503
    assert step["calls"] == ["READ 200 running", "DELETE 204"]
    assert (step["event_type"], step["project_id"], step["step"]) == ("instance-expired", PROJECT, 1)
    assert step["trace_id"]
    assert step["span_id"]
    assert "could not hand on" in step["reason"]
    untraced = [line for line in _json_lines(log) if "could not hand on" in line["message"]]
    assert untraced == [], "the 503 is logged once, inside its step"
    spans = [d for d in console_records(stdout) if d.get("name") == "reaper instance-expired"]
    attributes = [s["attributes"] for s in spans if s["attributes"].get("reaper.instance_id") == instance]
    assert len(attributes) == 1, spans
    assert attributes[0]["reaper.clouddc.calls"] == ["READ 200 running", "DELETE 204"]
    assert attributes[0]["reaper.clouddc.status_codes"] == [200, 204]
    assert attributes[0]["reaper.decision"] == "redeliver"
    assert (attributes[0]["reaper.event_type"], attributes[0]["reaper.project_id"]) == (
        "instance-expired",
        PROJECT,
    )
    explained = _explain(log, instance)
    assert explained.returncode == 0, explained.stderr
    assert "redeliver" in explained.stdout
    assert "READ 200 running, DELETE 204" in explained.stdout


def test_a_bad_event_inside_the_step_is_a_4xx_not_a_failed_step(http_function: Function) -> None:
    """An event refused inside the step (no instance named, an impossible date: 422) is the request's
    fault: no ``handled`` line calls it a failed step."""
    event_id = new_id("bad")
    event = expired(new_id(), event_id=event_id, expired_at="2024-13-45T99:99:99Z")
    answer = http_function.send(event)
    assert answer.status_code == 422, answer.text
    lines = [line for line in http_function.log_lines() if line.get("event_id") == event_id]
    assert [line for line in lines if line["message"] == "handled"] == []


def test_explain_skips_lines_it_cannot_read_and_says_how_many(tmp_path: Path) -> None:
    """A line of another program reusing reaper's message names, broken JSON and a step whose fields have
    other types are passed over and counted; the timelines around them are printed whole."""
    log = tmp_path / "mixed.log"
    good_step = (
        '{"time":"2026-01-01T00:00:00.000Z","message":"handled","instance_id":"i-1","project_id":"p",'
        '"step":1,"event_type":"instance-expired","outcome":"scheduled-status","calls":["READ 200 running"]}'
    )
    good_result = (
        '{"time":"2026-01-01T00:00:05.000Z","message":"result","result_type":"instance-terminated",'
        '"result":{"instance_id":"i-1","project_id":"p"}}'
    )
    foreign = [
        '{"message":"result","result":"ok"}',
        '{"message":"handled","instance_id":"i-2","step":{"nested":true},"calls":"READ"}',
        '{"message": "handled", "instance_id": ',
        "plain text from gunicorn",
    ]
    log.write_text("\n".join([foreign[0], good_step, foreign[1], foreign[2], foreign[3], good_result]) + "\n")
    explained = _explain(log)
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith("i-1  project p  instance-terminated after 5.0 s")
    assert "READ 200 running" in explained.stdout
    assert "i-2" not in explained.stdout
    assert "skipped 3 line(s)" in explained.stderr


def _explain(log: Path, instance: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "reaper.cli", "explain", str(log)]
    if instance:
        argv += ["--instance", instance]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if text.startswith("{"):
            found.append(json.loads(text))
    return found
