"""``reaper explain``: one timeline per instance from reaper's JSON log lines ("why is X still running?").

Reads what the function logged (a file, several, or stdin; plain JSON lines or Cloud Logging exports
with ``jsonPayload``), keeps the ``handled``, shared-read and ``result`` lines, and prints, per instance,
each step in order: when, its position in the chain, the event, what was decided, the delay to the next step
and the CloudDC answers, then the result. Steps of a sweep's batch name no single instance: they are
tied to an instance through the trace they share with its result.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TextIO

from function.jsonlog import SHARED_READ_ANNOUNCED, STEP_HANDLED

# The lines that are steps of an instance: its own events, and a shared read that found it gone.
_STEPS: Final = frozenset({STEP_HANDLED, SHARED_READ_ANNOUNCED})


@dataclass
class Timeline:
    """What the log says about one instance."""

    instance_id: str
    project_id: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None

    def started(self) -> float:
        """When its first line was written (seconds since the epoch)."""
        times = [_seconds(line) for line in [*self.steps, *([self.result] if self.result else [])]]
        return min(times, default=0.0)


@dataclass
class Reading:
    """What ``timelines`` made of a log: the timelines, and how many JSON lines it could not read."""

    timelines: list[Timeline]
    skipped: int = 0


def records(lines: Iterable[str], skipped: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """reaper's JSON log records in ``lines``; text that is not JSON (gunicorn's own lines, blanks) is passed
    over, and a line that looks like JSON but cannot be read is counted in ``skipped[0]``."""
    for text in lines:
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("jsonPayload"), dict):
            record = record["jsonPayload"]  # a Cloud Logging export
        if isinstance(record, dict):
            yield record
        elif skipped is not None:
            skipped[0] += 1


def timelines(lines: Iterable[str]) -> list[Timeline]:
    """Every instance the log mentions, with its steps and result, in the order they began."""
    return read(lines).timelines


def read(lines: Iterable[str]) -> Reading:
    """The timelines in ``lines`` and the count of lines passed over: a line of another program that
    reuses reaper's message names (``{"message": "result", "result": "ok"}``) is one of them, not a crash."""
    by_instance: dict[str, Timeline] = {}
    shared: dict[str, list[dict[str, Any]]] = defaultdict(list)  # batch steps by trace id
    skipped = [0]
    for record in records(lines, skipped):
        message = record.get("message")
        if message == "result":
            data = record.get("result")
            instance = data.get("instance_id") if isinstance(data, dict) else None
            if not isinstance(data, dict) or not isinstance(instance, str) or not _readable(record):
                skipped[0] += 1
                continue
            timeline = by_instance.setdefault(instance, Timeline(instance))
            timeline.project_id = timeline.project_id or _text(data.get("project_id"))
            timeline.result = record
        elif message in _STEPS:
            if not _readable(record):
                skipped[0] += 1
                continue
            instance = record.get("instance_id")
            if isinstance(instance, str):
                timeline = by_instance.setdefault(instance, Timeline(instance))
                timeline.project_id = timeline.project_id or _text(record.get("project_id"))
                timeline.steps.append(record)
            elif isinstance(record.get("trace_id"), str):
                shared[record["trace_id"]].append(record)
    for timeline in by_instance.values():
        traces = {line.get("trace_id") for line in [*timeline.steps, timeline.result or {}]}
        for trace_id in traces - {None}:
            timeline.steps.extend(shared.get(str(trace_id), []))
        timeline.steps.sort(key=_seconds)
    return Reading(sorted(by_instance.values(), key=Timeline.started), skipped[0])


def _readable(record: dict[str, Any]) -> bool:
    """True when the fields ``render`` lays out have the types reaper writes them with."""
    calls = record.get("calls")
    if calls is not None and not (isinstance(calls, list) and all(isinstance(c, str) for c in calls)):
        return False
    step, event_type = record.get("step"), record.get("event_type")
    return isinstance(step, int | str | None) and isinstance(event_type, str | None)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def render(timeline: Timeline) -> str:
    """One instance's timeline as text."""
    origin = timeline.started()
    result = timeline.result
    if result is None:
        ending = "no result yet (still being reaped, or its result is in a log not read here)"
    else:
        data = result.get("result") or {}
        reason = f" ({data['reason']})" if data.get("reason") else ""
        ending = f"{result.get('result_type')}{reason} after {_seconds(result) - origin:.1f} s"
    lines = [f"{timeline.instance_id}  project {timeline.project_id or '?'}  {ending}"]
    for step in timeline.steps:
        position = step.get("step", "?")
        decided = str(step.get("outcome") or "")
        if step.get("delay") is not None:
            decided += f" in {step['delay']} s"
        if step.get("reason"):
            decided += f" ({step['reason']})"
        calls = ", ".join(step.get("calls") or []) or "-"
        lines.append(
            f"  {_offset(step, origin)}  step {position:<3} {step.get('event_type', '?'):<24} "
            f"-> {decided:<40} {calls}"
        )
    if result is not None:
        data = result.get("result") or {}
        shown = ("http_status", "error_code", "error_msg", "state")
        detail = ", ".join(f"{key} {data[key]}" for key in shown if data.get(key))
        trace = f"  trace {result['trace_id']}" if result.get("trace_id") else ""
        detail = f"  {detail}" if detail else ""
        lines.append(f"  {_offset(result, origin)}  result   {result.get('result_type')}{detail}{trace}")
    return "\n".join(lines)


def explain(
    sources: Iterable[TextIO], out: TextIO, instance: str | None = None, err: TextIO | None = None
) -> int:
    """Print the timelines found in ``sources``; 1 when there is none (or not the one asked for).

    How many lines were passed over as unreadable is said on ``err`` (standard error), apart from the
    timelines.
    """
    reading = read(line for source in sources for line in source)
    found = reading.timelines
    if instance is not None:
        found = [t for t in found if t.instance_id == instance]
    for timeline in found:
        out.write(render(timeline) + "\n\n")
    if not found:
        out.write("no reaper steps found (expected the function's JSON log lines)\n")
    if reading.skipped:
        (err or sys.stderr).write(f"reaper explain: skipped {reading.skipped} line(s) it could not read\n")
    return 0 if found else 1


def _offset(record: dict[str, Any], origin: float) -> str:
    return f"+{_seconds(record) - origin:.2f}s".rjust(10)


def _seconds(record: dict[str, Any]) -> float:
    stamp = record.get("time")
    if not isinstance(stamp, str):
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
