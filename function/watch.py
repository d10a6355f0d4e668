"""The accepted deletes one process is waiting on, so that one ListInstances read can check many of them.

A cache, not a store: each delete's own chain of follow-ups stays the guarantee. Losing this (a restart,
another worker) costs reads, never a result.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from function import core
from function.core.ids import MAX_IDS_PER_READ
from function.tracing import StepContext

# Bounds, so that a flood of accepted deletes cannot grow the process: past them, the oldest are dropped
# (their chains go on alone).
MAX_WATCHED: Final = 1000
MAX_ANNOUNCED: Final = 1000


@dataclass(slots=True)
class _Watched:
    job: core.Job
    due_at: float
    step: StepContext | None  # the step that scheduled the check: a result announced for it continues it
    seen_at: float | None = None  # the last shared read that found it still running


@dataclass(frozen=True)
class Reading:
    """One ListInstances read of watched deletes: the ids asked for and the state of each one listed."""

    at: float
    ids: frozenset[str]
    states: dict[str, str | None]

    def answer(self, instance_id: str) -> core.ApiAnswer:
        """What this read says of one instance, as ShowInstanceStatus would (not listed: 404)."""
        if instance_id in self.states:
            return core.ApiAnswer(200, state=self.states[instance_id])
        return core.ApiAnswer(404, error_code="CDC.0404", error_msg="not listed by ListInstances")

    def gone(self, instance_id: str) -> bool:
        """True when this read found the instance terminated, or did not list it."""
        listed = instance_id in self.states
        return not listed or core.normalise_state(self.states[instance_id]) == core.TERMINATED


@dataclass
class _Project:
    """One project's watched deletes, and a heap of their due times (stale entries dropped as met)."""

    watched: OrderedDict[str, _Watched] = field(default_factory=OrderedDict)
    due: list[tuple[float, str]] = field(default_factory=list)
    reading: Reading | None = None

    def current(self, due_at: float, instance_id: str) -> bool:
        entry = self.watched.get(instance_id)
        return entry is not None and entry.due_at == due_at

    def soonest(self) -> float | None:
        while self.due and not self.current(*self.due[0]):
            heapq.heappop(self.due)
        return self.due[0][0] if self.due else None


class Watch:
    """Per project: the deletes waiting on a status check, the last shared read, and what was announced.

    Thread-safe; every operation but ``batch`` (once per shared read) costs O(log n) or less.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: dict[str, _Project] = {}
        self._announced: OrderedDict[tuple[str, str], None] = OrderedDict()

    def wait_for(self, job: core.Job, due_at: float, step: StepContext | None = None) -> None:
        """Watch ``job`` (an accepted delete) until its next status check, due at ``due_at``.

        ``step``: the trace step that scheduled the check (a result announced for the job continues it).
        """
        with self._lock:
            project = self._projects.setdefault(job.project_id, _Project())
            project.watched[job.instance_id] = _Watched(job, due_at, step)
            project.watched.move_to_end(job.instance_id)
            if len(project.watched) > MAX_WATCHED:
                project.watched.popitem(last=False)
            heapq.heappush(project.due, (due_at, job.instance_id))
            if len(project.due) > 2 * len(project.watched) + 64:
                project.due = [(w.due_at, i) for i, w in project.watched.items()]
                heapq.heapify(project.due)

    def forget(self, project_id: str, instance_id: str) -> None:
        """Stop watching one instance (its check is being handled, or its chain left the status checks)."""
        with self._lock:
            project = self._projects.get(project_id)
            if project is not None:
                project.watched.pop(instance_id, None)

    def peers(self, project_id: str, now: float) -> core.Peers:
        """The project's watched deletes and when the soonest of their checks is due."""
        with self._lock:
            project = self._projects.get(project_id)
            if project is None or not project.watched:
                return core.Peers()
            soonest = project.soonest()
            return core.Peers(len(project.watched), None if soonest is None else max(0.0, soonest - now))

    def batch(self, project_id: str, instance_id: str) -> tuple[str, ...]:
        """The ids one read should ask for: this one, then the watched ones due soonest (<= 100 in all)."""
        with self._lock:
            project = self._projects.get(project_id)
            if project is None:
                return (instance_id,)
            due = (e for e in project.due if e[1] != instance_id and project.current(*e))
            others = dict.fromkeys(i for _, i in heapq.nsmallest(MAX_IDS_PER_READ - 1, due))
        return (instance_id, *others)

    def gone(self, project_id: str, reading: Reading, but: str) -> list[tuple[core.Job, StepContext | None]]:
        """Take the watched deletes other than ``but`` that ``reading`` found gone (no concurrent read takes
        them too), each with the step that scheduled its check; note the ones it found running as seen."""
        found: list[tuple[core.Job, StepContext | None]] = []
        with self._lock:
            project = self._projects.get(project_id)
            if project is None:
                return found
            watched = project.watched
            for instance_id in sorted(reading.ids):
                entry = watched.get(instance_id)
                if entry is None or instance_id == but:
                    continue
                if not reading.gone(instance_id):
                    entry.seen_at = reading.at
                    continue
                del watched[instance_id]
                job = entry.job
                if entry.seen_at is not None and entry.seen_at > (job.seen_at or 0.0):
                    job = core.evolved(job, seen_at=entry.seen_at)
                found.append((job, entry.step))
        return found

    def reading(self, project_id: str, instance_id: str, now: float, max_age: float) -> Reading | None:
        """The project's last shared read if it asked for ``instance_id`` at most ``max_age`` s ago."""
        with self._lock:
            project = self._projects.get(project_id)
            reading = project.reading if project is not None else None
        if reading is None or instance_id not in reading.ids or not now - max_age <= reading.at <= now:
            return None
        return reading

    def remember(self, project_id: str, reading: Reading) -> None:
        """Keep a shared read for the checks that follow it."""
        with self._lock:
            self._projects.setdefault(project_id, _Project()).reading = reading

    def announced(self, project_id: str, instance_id: str) -> None:
        """Note that the instance's result went out, so that its own pending check makes no call."""
        with self._lock:
            project = self._projects.get(project_id)
            if project is not None:
                project.watched.pop(instance_id, None)
            self._announced[(project_id, instance_id)] = None
            if len(self._announced) > MAX_ANNOUNCED:
                self._announced.popitem(last=False)

    def was_announced(self, project_id: str, instance_id: str) -> bool:
        """True when this process announced the instance's result."""
        with self._lock:
            return (project_id, instance_id) in self._announced
