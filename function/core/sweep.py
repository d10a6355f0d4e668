"""The pure core of expiry sweeps: pick expired instances, batch them, and follow each batch.

A sweep lists a project's instances, keeps those whose expiry metadata has passed, and hands them
on in batches of at most 50 (the batch-delete limit). Each batch is then followed by one delayed
check that reads all its instances with one ListInstances call (``instance_id=``, at most 100 ids).
A batch is re-read right before its batch-delete, and every id goes through ``gate.judge`` before any
delete or re-delete, so overlapping sweeps find the instance shutting down and leave it alone.
Results stay one per instance. No I/O here: answers, records, ``now`` and ``rand`` are passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from function.core import gate
from function.core.ids import MAX_IDS_PER_BATCH, valid_id
from function.core.records import ApiAnswer, Policy, Rand, Result, failure
from function.core.retry import check_delay, clamp, plan_retry

BatchAction = Literal["batch-delete", "batch-check"]


def expired_ids(
    instances: Iterable[Mapping[str, Any]], project_id: str, now: float, rules: gate.Rules
) -> list[str]:
    """Ids the gate would let a sweep delete (expiry metadata passed), sorted so overlapping sweeps agree."""
    picked = set()
    for instance in instances:
        instance_id = instance.get("id")
        if not isinstance(instance_id, str) or not valid_id(instance_id):
            continue
        verdict = gate.judge(project_id, gate.Sighting.of(instance), None, now, rules, expiry_required=True)
        if verdict in ("delete", "dry-run"):
            picked.add(instance_id)
    return sorted(picked)


def batches(ids: Sequence[str], size: int = MAX_IDS_PER_BATCH) -> list[tuple[str, ...]]:
    """Split ids into consecutive batches of at most ``size``."""
    return [tuple(ids[i : i + size]) for i in range(0, len(ids), size)]


@dataclass(frozen=True)
class BatchJob:
    """A batch of instances followed together; rides in batch follow-ups."""

    project_id: str
    instance_ids: tuple[str, ...]
    origin_id: str
    started_at: float
    deadline_at: float
    deleted_at: float | None = None
    checks: int = 0
    failures: int = 0
    redeletes: int = 0
    throttles: int = 0
    claimant: str | None = None  # this batch's name on its ids' delete claims (the fleet's store)

    def step_key(self, action: BatchAction) -> str:
        """A label unique along one batch's chain."""
        counters = f"c{self.checks}-f{self.failures}-r{self.redeletes}-t{self.throttles}"
        return f"{action}-{counters}-n{len(self.instance_ids)}"


@dataclass(frozen=True)
class SweepPage:
    """Where a sweep goes on listing after a page failed; rides in ``instance-sweep-page`` follow-ups.

    A sweep of a large project lists many pages; one throttled or failed page must not throw away the
    pages already read nor make the whole sweep start over (under a few percent of failed calls, a
    50-page listing would then never finish): the ids found are handed on, and the listing continues
    from the failed page's marker after a backoff (``plan_retry``).
    """

    project_id: str
    marker: str | None
    origin_id: str
    started_at: float
    deadline_at: float
    failures: int = 0
    throttles: int = 0

    def step_key(self) -> str:
        """A label unique along one sweep's continuation chain."""
        return f"page-{self.marker or 'first'}-f{self.failures}-t{self.throttles}"


@dataclass(frozen=True)
class BatchStep:
    """What follows one batch read or call: finished instances, ids the gate cleared for a delete now,
    and the next hop."""

    results: tuple[tuple[str, Result], ...] = ()
    delete: tuple[str, ...] = ()
    action: BatchAction | None = None
    job: BatchJob | None = None
    delay: float = 0.0


def refuse_project(job: BatchJob, now: float, rules: gate.Rules) -> BatchStep | None:
    """Every instance skipped, with no call, when the batch's project is not allowed; else None."""
    if gate.project_allowed(job.project_id, rules):
        return None
    skipped = Result("skipped", "project-not-allowed", at=now)
    return BatchStep(results=tuple((i, skipped) for i in job.instance_ids))


def on_batch_read(
    job: BatchJob,
    answer: ApiAnswer,
    records: Iterable[Mapping[str, Any]],
    now: float,
    policy: Policy,
    rand: Rand,
) -> BatchStep:
    """Decide per instance after the read before a batch-delete: ``delete`` is what the gate cleared."""
    if answer.status != 200:
        return _failed_call("batch-delete", job, answer, now, policy, rand)
    results, delete, waiting = _sort(job, records, now, policy, may_delete=True)
    if not delete and not waiting:
        return BatchStep(results=tuple(results))
    following = dataclasses.replace(job, instance_ids=tuple(delete + waiting))
    if delete:
        return BatchStep(results=tuple(results), delete=tuple(delete), job=following)
    # Nothing to delete, some already going: follow them like an accepted batch.
    accepted = dataclasses.replace(following, deleted_at=job.deleted_at or now)
    return dataclasses.replace(_next_check(accepted, now, policy, rand), results=tuple(results))


def on_batch_delete(job: BatchJob, answer: ApiAnswer, now: float, policy: Policy, rand: Rand) -> BatchStep:
    """Decide what follows a batch-delete answer (202 accepted, else retry or give up)."""
    if answer.status in (200, 202, 204):
        accepted = dataclasses.replace(job, deleted_at=job.deleted_at or now, failures=0, throttles=0)
        return _next_check(accepted, now, policy, rand)
    if answer.status == 400:
        # Like the single DELETE: read the states before judging (some may already be going).
        return BatchStep(action="batch-check", job=dataclasses.replace(job, deleted_at=job.deleted_at or now))
    return _failed_call("batch-delete", job, answer, now, policy, rand)


def on_batch_claimed_elsewhere(job: BatchJob, now: float, policy: Policy, rand: Rand) -> BatchStep:
    """Other instances hold the delete claims of every id the gate cleared: check on them, no DELETE."""
    following = dataclasses.replace(job, deleted_at=job.deleted_at or now)
    return _next_check(following, now, policy, rand)


def on_batch_list(
    job: BatchJob,
    answer: ApiAnswer,
    records: Iterable[Mapping[str, Any]],
    now: float,
    policy: Policy,
    rand: Rand,
) -> BatchStep:
    """Decide per instance after reading the batch through ListInstances (a check after the delete)."""
    if answer.status != 200:
        return _failed_call("batch-check", job, answer, now, policy, rand)
    may_delete = job.redeletes < policy.max_redeletes
    results, delete, waiting = _sort(job, records, now, policy, may_delete=may_delete)
    checked = dataclasses.replace(job, checks=job.checks + 1, failures=0, throttles=0)
    remaining = tuple(waiting + delete)
    if not remaining:
        return BatchStep(results=tuple(results))
    if now >= job.deadline_at:
        late = [(i, failure("deadline-exceeded", answer, now)) for i in remaining]
        return BatchStep(results=tuple(results + late))
    following = dataclasses.replace(
        checked, instance_ids=remaining, redeletes=checked.redeletes + (1 if delete else 0)
    )
    step = _next_check(following, now, policy, rand)
    return dataclasses.replace(step, results=tuple(results), delete=tuple(delete))


def _sort(
    job: BatchJob, records: Iterable[Mapping[str, Any]], now: float, policy: Policy, *, may_delete: bool
) -> tuple[list[tuple[str, Result]], list[str], list[str]]:
    """Judge each instance of the batch: (finished results, ids cleared for a delete, ids to follow)."""
    seen = {str(r.get("id")): gate.Sighting.of(r) for r in records}
    results: list[tuple[str, Result]] = []
    delete: list[str] = []
    waiting: list[str] = []
    for instance_id in job.instance_ids:
        sighting = seen.get(instance_id)
        state = sighting.state if sighting else None
        verdict = gate.judge(job.project_id, sighting, None, now, policy.rules, expiry_required=True)
        if verdict == "delete" and may_delete:
            delete.append(instance_id)
        elif verdict in ("delete", "failed"):  # re-deletes used up, or the delete failed
            failed = failure("delete-failed", ApiAnswer(200, state=state), now, state)
            results.append((instance_id, failed))
        elif verdict in ("absent", "terminated"):
            absent = job.deleted_at is None
            results.append((instance_id, Result("terminated", at=now, state=state, already_absent=absent)))
        elif verdict in gate.SKIP_VERDICTS:
            results.append((instance_id, Result("skipped", verdict, at=now, state=state)))
        else:
            waiting.append(instance_id)
    return results, delete, waiting


def _failed_call(
    action: BatchAction,
    job: BatchJob,
    answer: ApiAnswer,
    now: float,
    policy: Policy,
    rand: Rand,
) -> BatchStep:
    if answer.transient:
        return _retry(action, job, answer, now, policy, rand)
    reason = "unauthorized" if answer.status == 401 else "rejected"
    return _fail_all(job, reason, answer, now)


def _next_check(job: BatchJob, now: float, policy: Policy, rand: Rand) -> BatchStep:
    delay = check_delay(job.checks, policy, rand)
    return BatchStep(action="batch-check", job=job, delay=clamp(delay, job, now, policy))


def _retry(
    action: BatchAction,
    job: BatchJob,
    answer: ApiAnswer,
    now: float,
    policy: Policy,
    rand: Rand,
) -> BatchStep:
    retried, plan = plan_retry(job, answer, now, policy, rand)
    if isinstance(plan, str):
        return _fail_all(job, plan, answer, now)
    return BatchStep(action=action, job=retried, delay=plan)


def _fail_all(job: BatchJob, reason: str, answer: ApiAnswer, now: float) -> BatchStep:
    return BatchStep(results=tuple((i, failure(reason, answer, now)) for i in job.instance_ids))
