"""Observability: one trace per chain, log lines the platforms parse, OpenTelemetry only when configured."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured

from function import jsonlog
from function.tracing import context
from reaper.devtools.procs import Process, free_port, function_command
from tests.conftest import EVENT_KEY, PROJECT, TOKEN, Emulator, Sink, expired, function_env, new_id

INBOUND_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INBOUND_SPAN = "00f067aa0ba902b7"


# -- the pure context --------------------------------------------------------------------------
def test_traceparent_parsing() -> None:
    """Valid version-00 values parse; malformed, all-zero and version ff ones are ignored."""
    assert context.parse_traceparent(f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-01") == (
        INBOUND_TRACE,
        INBOUND_SPAN,
        True,
    )
    assert context.parse_traceparent(f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-00") == (
        INBOUND_TRACE,
        INBOUND_SPAN,
        False,
    )
    bad = [
        None,
        "",
        "garbage",
        f"ff-{INBOUND_TRACE}-{INBOUND_SPAN}-01",
        f"00-{'0' * 32}-{INBOUND_SPAN}-01",
        f"00-{INBOUND_TRACE}-{'0' * 16}-01",
        f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-01-extra",
    ]
    assert [context.parse_traceparent(value) for value in bad] == [None] * len(bad)


def test_a_step_continues_its_parent_or_starts_a_root() -> None:
    """A step keeps the inbound trace and names its parent; its follow-ups are the next step."""
    parent = context.Parent(f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-01", "vendor=x", "3")
    step = context.start(parent)
    assert (step.trace_id, step.parent_span_id, step.state, step.step) == (
        INBOUND_TRACE,
        INBOUND_SPAN,
        "vendor=x",
        3,
    )
    assert step.span_id != INBOUND_SPAN
    root = context.start(context.Parent("nonsense", "vendor=x", "-1"))
    assert (root.parent_span_id, root.state, root.step) == (None, None, 1)
    assert len(root.trace_id) == 32
    assert context.outgoing(next_step=True) == {}  # outside a step
    with context.active(step):
        follow_up = context.outgoing(next_step=True)
        result = context.outgoing(next_step=False)
    assert follow_up == {"traceparent": step.traceparent, "reaperstep": "4", "tracestate": "vendor=x"}
    assert result["reaperstep"] == "3"
    assert context.current() is None


def test_log_lines_carry_severity_and_the_step(capsys: pytest.CaptureFixture[str]) -> None:
    """Every line has Cloud Logging's ``severity``; inside a step, its trace, span and position, and with
    a Google project, Cloud Logging's own trace fields."""
    jsonlog.configure("INFO", google_project="my-project")
    logger = logging.getLogger("reaper.test")
    try:
        logger.warning("outside")
        step = context.start(context.Parent(f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-01", step="2"))
        with context.active(step):
            logger.info("inside")
        outside, inside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    finally:
        jsonlog.configure("INFO")
    assert (outside["severity"], outside["level"]) == ("WARNING", "warning")
    assert "trace_id" not in outside
    assert (inside["severity"], inside["trace_id"], inside["span_id"], inside["step"]) == (
        "INFO",
        INBOUND_TRACE,
        step.span_id,
        2,
    )
    assert inside["logging.googleapis.com/trace"] == f"projects/my-project/traces/{INBOUND_TRACE}"
    assert inside["logging.googleapis.com/spanId"] == step.span_id


# -- through the real processes ------------------------------------------------------------------
def console_records(path: Path) -> list[dict[str, Any]]:
    """The JSON documents the console exporters wrote (spans and metrics, concatenated)."""
    text, found, decoder, at = path.read_text(), [], json.JSONDecoder(), 0
    while (start := text.find("{", at)) != -1:
        try:
            document, at = decoder.raw_decode(text, start)
        except ValueError:
            at = start + 1
            continue
        found.append(document)
    return found


def test_one_trace_per_chain_with_its_spans(
    emulator: Emulator, delay_service: Process, sink: Sink, tmp_path: Path
) -> None:
    """With OTEL_* set (console exporters), every step of an instance's reaping is a span of the inbound
    trace: the first parented by the inbound traceparent (a CloudEvent extension, or the HTTP header),
    each next one by the step before; the result carries the trace; counters are exported."""
    port = free_port()
    env = function_env(emulator, delay_service, sink.url, port) | {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "console",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_SERVICE_NAME": "reaper-test",
    }
    out = tmp_path / "stdout.txt"
    with out.open("wb") as stdout, (tmp_path / "stderr.txt").open("wb") as stderr:
        process = Process(
            function_command(port, "handle_http", "http"), port, env=env, stdout=stdout, stderr=stderr
        )
        process.start()
        try:
            by_extension, by_header = emulator.add(new_id(), termination_seconds=1), emulator.add(new_id())
            event = expired(by_extension)
            event["traceparent"] = f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-01"
            headers, body = to_binary(event)
            assert httpx.post(process.url, headers=headers, content=body).status_code == 200
            header_trace = "0af7651916cd43dd8448eb211c80319c"
            headers, body = to_structured(expired(by_header))
            headers["traceparent"] = f"00-{header_trace}-b7ad6b7169203331-01"
            assert httpx.post(process.url, headers=headers, content=body).status_code == 200
            results = {i: sink.result(i) for i in (by_extension, by_header)}
            time.sleep(1.5)  # one more metrics export after the last step
        finally:
            process.stop()
    documents = console_records(out)
    spans = [d for d in documents if "context" in d and "name" in d]
    for instance, trace_id, parent in ((by_extension, INBOUND_TRACE, INBOUND_SPAN),
                                       (by_header, header_trace, "b7ad6b7169203331")):  # fmt: skip
        chain = sorted(
            (s for s in spans if s["attributes"].get("reaper.instance_id") == instance),
            key=lambda s: s["start_time"],
        )
        assert len(chain) >= 2, chain
        assert {s["context"]["trace_id"] for s in chain} == {"0x" + trace_id}
        assert chain[0]["parent_id"] == "0x" + parent
        for before, after in itertools.pairwise(chain):
            assert after["parent_id"] == before["context"]["span_id"]
        assert [s["attributes"]["reaper.step"] for s in chain] == list(range(1, len(chain) + 1))
        first, last = chain[0]["attributes"], chain[-1]["attributes"]
        assert first["reaper.project_id"] == PROJECT
        assert first["reaper.event_type"] == "instance-expired"
        assert 204 in first["reaper.clouddc.status_codes"]
        assert last["reaper.decision"] == "terminated"
        assert chain[0]["name"] == "reaper instance-expired"
        assert results[instance]["traceparent"].split("-")[1] == trace_id
        # From the chain's last step, or from the step before it when a ListInstances read shared with the
        # other delete in flight found this one gone first.
        assert results[instance]["traceparent"].split("-")[2] in {s["context"]["span_id"][2:] for s in chain}
    metrics = {
        metric["name"]
        for document in documents
        for resource in document.get("resource_metrics", [])
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
    }
    assert {"reaper.instances", "reaper.clouddc.calls", "reaper.follow_ups"} <= metrics


def test_no_opentelemetry_module_is_imported_without_otel_settings(emulator: Emulator) -> None:
    """With no OTEL_* set, building the function and handling an event imports no OpenTelemetry module."""
    script = """
import json, sys
import functions_framework
from reaper.devtools.procs import FUNCTION_SOURCE
app = functions_framework.create_app("handle_http", str(FUNCTION_SOURCE), "http")
answer = app.test_client().post("/", json={"instance_id": sys.argv[1]})
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
print(json.dumps({"status": answer.status_code, "otel": loaded}))
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "CLOUDDC_ENDPOINT": emulator.url,
        "CLOUDDC_PROJECT_ID": PROJECT,
        "CLOUDDC_AUTH_TOKEN": TOKEN,
        "REAPER_EVENT_KEY": EVENT_KEY,
        "REAPER_INBOUND_AUTH": "platform",
        "REAPER_DRY_RUN": "true",
    }
    argv = [sys.executable, "-c", script, emulator.add(new_id())]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"status": 200, "otel": []}
    with_otel = subprocess.run(
        [sys.executable, "-c", script, emulator.add(new_id())],
        env={**env, "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "opentelemetry.sdk.trace" in json.loads(with_otel.stdout.strip().splitlines()[-1])["otel"]
