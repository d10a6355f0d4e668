"""The pure core of expiry sweeps: pick expired instances, batch them, and follow each batch.

A sweep lists a project's instances, keeps those whose expiry metadata has passed, and hands them
on in batches of at most 50 (the batch-delete limit). Each batch is then followed by one delayed
check that reads all its instances with one ListInstances call (``instance_id=``, at most 100 ids).
Results stay one per instance. No I/O here: answers, records, ``now`` and ``rand`` are passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from function import core
from function.clouddc import ID_PATTERN

BATCH_DELETE_MAX: Final = 50
LIST_IDS_MAX: Final = 100
BatchAction = Literal["batch-delete", "batch-check"]


def expires_at(metadata: Mapping[str, Any] | None, key: str) -> float | None:
    """The expiry time an instance's metadata declares, or None when absent or unreadable."""
    raw = (metadata or {}).get(key)
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        when = datetime.fromisoformat(raw.strip().replace("z", "Z"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def expired_ids(instances: Iterable[Mapping[str, Any]], key: str, now: float) -> list[str]:
    """Ids of deletable instances whose expiry has passed, sorted (so overlapping sweeps agree)."""
    picked = set()
    for instance in instances:
        instance_id = instance.get("id")
        if not isinstance(instance_id, str) or not ID_PATTERN.fullmatch(instance_id):
            continue
        if core.normalise_state(instance.get("state")) not in core.DELETABLE_STATES:
            continue
        expiry = expires_at(instance.get("metadata"), key)
        if expiry is not None and expiry <= now:
            picked.add(instance_id)
    return sorted(picked)


def batches(ids: Sequence[str], size: int = BATCH_DELETE_MAX) -> list[tuple[str, ...]]:
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

    def step_key(self, action: BatchAction) -> str:
        """A label unique along one batch's chain."""
        return f"{action}-c{self.checks}-f{self.failures}-r{self.redeletes}-n{len(self.instance_ids)}"


@dataclass(frozen=True)
class BatchStep:
    """What follows one batch call: finished instances, ids to delete again now, and the next hop."""

    results: tuple[tuple[str, core.Result], ...] = ()
    redelete: tuple[str, ...] = ()
    action: BatchAction | None = None
    job: BatchJob | None = None
    delay: float = 0.0


def on_batch_delete(
    job: BatchJob, answer: core.ApiAnswer, now: float, policy: core.Policy, rand: core.Rand
) -> BatchStep:
    """Decide what follows a batch-delete answer (202 accepted, else retry or give up)."""
    if answer.status in (200, 202, 204):
        accepted = dataclasses.replace(job, deleted_at=job.deleted_at or now, failures=0)
        return _next_check(accepted, now, policy, rand)
    if answer.status == 400:
        # Like the single DELETE: read the states before judging (some may already be going).
        return BatchStep(action="batch-check", job=dataclasses.replace(job, deleted_at=job.deleted_at or now))
    if answer.transient:
        return _retry("batch-delete", job, answer, now, policy, rand)
    reason = "unauthorized" if answer.status == 401 else "rejected"
    return _fail_all(job, reason, answer, now)


def on_batch_list(
    job: BatchJob,
    answer: core.ApiAnswer,
    records: Iterable[Mapping[str, Any]],
    now: float,
    policy: core.Policy,
    rand: core.Rand,
) -> BatchStep:
    """Decide per instance after reading the batch through ListInstances."""
    if answer.status != 200:
        if answer.transient:
            return _retry("batch-check", job, answer, now, policy, rand)
        reason = "unauthorized" if answer.status == 401 else "rejected"
        return _fail_all(job, reason, answer, now)
    states = {str(r.get("id")): core.normalise_state(r.get("state")) for r in records}
    results: list[tuple[str, core.Result]] = []
    waiting: list[str] = []
    redelete: list[str] = []
    for instance_id in job.instance_ids:
        state = states.get(instance_id)
        if instance_id not in states or state == core.TERMINATED:
            results.append((instance_id, core.Result("terminated", at=now, state=state)))
        elif state in core.FAILED_STATES:
            failed = core.ApiAnswer(200, state=state)
            results.append((instance_id, core.failure("delete-failed", failed, now, state)))
        elif state in core.DELETABLE_STATES and job.redeletes < policy.max_redeletes:
            redelete.append(instance_id)
        elif state in core.DELETABLE_STATES:
            results.append((instance_id, core.failure("delete-failed", answer, now, state)))
        else:
            waiting.append(instance_id)
    checked = dataclasses.replace(job, checks=job.checks + 1, failures=0)
    remaining = tuple(waiting + redelete)
    if not remaining:
        return BatchStep(results=tuple(results))
    if now >= job.deadline_at:
        late = [(i, core.failure("deadline-exceeded", answer, now, states.get(i))) for i in remaining]
        return BatchStep(results=tuple(results + late))
    following = dataclasses.replace(
        checked, instance_ids=remaining, redeletes=checked.redeletes + (1 if redelete else 0)
    )
    step = _next_check(following, now, policy, rand)
    return dataclasses.replace(step, results=tuple(results), redelete=tuple(redelete))


def _next_check(job: BatchJob, now: float, policy: core.Policy, rand: core.Rand) -> BatchStep:
    delay = core.check_delay(job.checks, policy, rand)
    return BatchStep(action="batch-check", job=job, delay=_clamp(delay, job, now, policy))


def _retry(
    action: BatchAction,
    job: BatchJob,
    answer: core.ApiAnswer,
    now: float,
    policy: core.Policy,
    rand: core.Rand,
) -> BatchStep:
    failures = job.failures + 1
    if failures > policy.max_retries:
        return _fail_all(job, "retries-exhausted", answer, now)
    if now >= job.deadline_at:
        return _fail_all(job, "deadline-exceeded", answer, now)
    delay = core.retry_delay(answer, failures, policy, rand)
    failed = dataclasses.replace(job, failures=failures)
    return BatchStep(action=action, job=failed, delay=_clamp(delay, job, now, policy))


def _clamp(delay: float, job: BatchJob, now: float, policy: core.Policy) -> float:
    return max(policy.min_delay, min(delay, job.deadline_at - now))


def _fail_all(job: BatchJob, reason: str, answer: core.ApiAnswer, now: float) -> BatchStep:
    return BatchStep(results=tuple((i, core.failure(reason, answer, now)) for i in job.instance_ids))
