"""``reaper explain``: one timeline per instance from reaper's JSON log lines ("why is X still running?").

Reads what the function logged (a file, several, or stdin; plain JSON lines or Cloud Logging exports
with ``jsonPayload``), keeps the ``handled``, shared-read and ``result`` lines, and prints, per instance,
each step in order: when, its position in the chain, the event, what was decided, the delay to the next step
and the CloudDC answers, then the result. Steps of a sweep's batch name no single instance: they are
tied to an instance through the trace they share with its result.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TextIO

# The log line of a result announced from a status read another check made (``function.reaping``).
SHARED_READ_ANNOUNCED: Final = "announced from a shared read"
# The lines that are steps of an instance: its own events, and a shared read that found it gone.
_STEPS: Final = frozenset({"handled", SHARED_READ_ANNOUNCED})


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


def records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """reaper's JSON log records in ``lines``; anything else (gunicorn's own lines, blanks) is skipped."""
    for text in lines:
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("jsonPayload"), dict):
            record = record["jsonPayload"]  # a Cloud Logging export
        if isinstance(record, dict):
            yield record


def timelines(lines: Iterable[str]) -> list[Timeline]:
    """Every instance the log mentions, with its steps and result, in the order they began."""
    by_instance: dict[str, Timeline] = {}
    shared: dict[str, list[dict[str, Any]]] = defaultdict(list)  # batch steps by trace id
    for record in records(lines):
        message = record.get("message")
        if message == "result":
            data = record.get("result") or {}
            instance = data.get("instance_id")
            if isinstance(instance, str):
                timeline = by_instance.setdefault(instance, Timeline(instance))
                timeline.project_id = timeline.project_id or data.get("project_id")
                timeline.result = record
        elif message in _STEPS:
            instance = record.get("instance_id")
            if isinstance(instance, str):
                timeline = by_instance.setdefault(instance, Timeline(instance))
                timeline.project_id = timeline.project_id or record.get("project_id")
                timeline.steps.append(record)
            elif isinstance(record.get("trace_id"), str):
                shared[record["trace_id"]].append(record)
    for timeline in by_instance.values():
        traces = {line.get("trace_id") for line in [*timeline.steps, timeline.result or {}]}
        for trace_id in traces - {None}:
            timeline.steps.extend(shared.get(str(trace_id), []))
        timeline.steps.sort(key=_seconds)
    return sorted(by_instance.values(), key=Timeline.started)


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


def explain(sources: Iterable[TextIO], out: TextIO, instance: str | None = None) -> int:
    """Print the timelines found in ``sources``; 1 when there is none (or not the one asked for)."""
    found = timelines(line for source in sources for line in source)
    if instance is not None:
        found = [t for t in found if t.instance_id == instance]
    for timeline in found:
        out.write(render(timeline) + "\n\n")
    if not found:
        out.write("no reaper steps found (expected the function's JSON log lines)\n")
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
