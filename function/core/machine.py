"""The pure decision core: given a step and what the CloudDC API answered, decide what happens next.

No I/O, no clock reads, no environment: ``now`` (epoch seconds), the policy and a ``rand``
function in [0, 1) are passed in. The shell (``function.reaping``) performs the calls the decisions
ask for and feeds the answers back until a decision hands the work on (``Schedule``) or ends it
(``Finish``).

Every DELETE is preceded by a read (``CallRead``: ListInstances with the instance id) whose answer
goes through ``gate.judge``; ``CallDelete`` is only ever decided from a ``delete`` verdict:

    start/resume ──► CallRead ──judge──► CallDelete ──204──► Schedule(status) ──► CallStatus ──► ...
                        │                    └─429/5xx──► Schedule(delete) ──► CallRead (again)
                        └─ absent / protected / not-expired / not allowed / failed ──► Finish
"""

from __future__ import annotations

from typing import Any, Final

from function.core import gate
from function.core.budget import OVER_BUDGET
from function.core.gate import DELETABLE_STATES, FAILED_STATES, SHUTTING_DOWN, TERMINATED, normalise_state
from function.core.records import (
    Action,
    ApiAnswer,
    CallDelete,
    CallRead,
    CallStatus,
    Decision,
    Finish,
    Job,
    Policy,
    Rand,
    ReloadToken,
    Result,
    Schedule,
    evolved,
    failure,
)
from function.core.retry import check_delay, clamp, plan_retry
from function.core.schedule import next_check

_ACCEPTED: Final = frozenset({200, 202, 204})


def start(job: Job, now: float, policy: Policy) -> Decision:
    """Decide the first step for an expired instance: read it, unless its project is off limits."""
    return resume("delete", job, now, policy)


def resume(action: Action, job: Job, now: float, policy: Policy) -> Decision:
    """Decide the step for a delivered follow-up (or a new job: ``delete``)."""
    if not gate.project_allowed(job.project_id, policy.rules):
        # Answered, not retried: no CloudDC call for a project reaper may not touch.
        return Finish(job, Result("skipped", "project-not-allowed", at=now))
    if action == "status":
        # A late check still reads the status: the instance may have terminated meanwhile.
        return CallStatus(job)
    if now >= job.deadline_at:
        return Finish(job, Result("failed", "deadline-exceeded", at=now))
    return CallRead(job)


def on_read_answer(
    job: Job,
    answer: ApiAnswer,
    sighting: gate.Sighting | None,
    now: float,
    policy: Policy,
    rand: Rand,
    *,
    token_reloaded: bool,
) -> Decision:
    """Decide what follows the read before a delete (``sighting`` None: the instance is not listed)."""
    if answer.status == 401:
        return _unauthorized(CallRead(job), job, answer, now, token_reloaded=token_reloaded)
    if answer.status != 200:
        if answer.transient:
            return _retry("delete", job, answer, now, policy, rand)
        return Finish(job, failure("rejected", answer, now))
    verdict = gate.judge(job.project_id, sighting, job.expired_at, now, policy.rules)
    state = sighting.state if sighting else None
    match verdict:
        case "delete":
            return CallDelete(job)
        case "absent" | "terminated":
            return Finish(
                job, Result("terminated", at=now, state=state, already_absent=job.deleted_at is None)
            )
        case "shutting-down":
            accepted = evolved(job, deleted_at=job.deleted_at if job.deleted_at is not None else now)
            return _schedule_check(accepted, now, policy, rand, "already shutting down")
        case "failed":
            return Finish(job, failure("delete-failed", ApiAnswer(200, state=state), now, state=state))
        case "not-ready":
            if now >= job.deadline_at:
                return Finish(
                    job, failure("deadline-exceeded", ApiAnswer(200, state=state), now, state=state)
                )
            waited = evolved(job, checks=job.checks + 1)
            delay = clamp(check_delay(job.checks, policy, rand), job, now, policy)
            return Schedule("delete", waited, delay, f"state {state}: not deletable yet")
        case _:
            return Finish(job, Result("skipped", verdict, at=now, state=state))


def on_delete_answer(
    job: Job, answer: ApiAnswer, now: float, policy: Policy, rand: Rand, *, token_reloaded: bool
) -> Decision:
    """Decide what follows a DeleteInstance answer."""
    if answer.status == 401:
        return _unauthorized(CallDelete(job), job, answer, now, token_reloaded=token_reloaded)
    if answer.status in _ACCEPTED:
        accepted = evolved(
            job,
            delete_attempts=job.delete_attempts + 1,
            deleted_at=job.deleted_at if job.deleted_at is not None else now,
            failures=0,
            throttles=0,
        )
        return _schedule_check(accepted, now, policy, rand, "delete accepted")
    attempted = evolved(job, delete_attempts=job.delete_attempts + 1)
    if answer.status == 404:
        return Finish(attempted, Result("terminated", at=now, already_absent=job.deleted_at is None))
    if answer.status == 400:
        # An instance already shutting down may answer 400 (design §2): read before judging.
        return CallStatus(attempted, rejected=answer)
    if answer.transient:
        return _retry("delete", attempted, answer, now, policy, rand)
    return Finish(attempted, failure("rejected", answer, now))


def on_delete_claimed_elsewhere(job: Job, now: float, policy: Policy, rand: Rand) -> Decision:
    """Another instance holds this instance's delete claim: follow its delete with checks, never DELETE."""
    following = evolved(job, deleted_at=job.deleted_at if job.deleted_at is not None else now)
    return _schedule_check(following, now, policy, rand, "another instance holds the delete claim")


def delete_settled(answer: ApiAnswer) -> bool:
    """Whether a DELETE answer settles the claim taken for it: accepted, gone, or of unknown outcome.

    A clear refusal (4xx, 5xx, 429) deleted nothing, and neither did a call the API budget held back,
    so its claim is given back for the retry; a time-out or a dropped connection may have deleted, so
    its claim stands until it expires.
    """
    if answer.failure == OVER_BUDGET:
        return False
    return answer.status is None or answer.status in _ACCEPTED or answer.status == 404


def on_status_answer(
    job: Job,
    answer: ApiAnswer,
    now: float,
    policy: Policy,
    rand: Rand,
    *,
    token_reloaded: bool,
    rejected: ApiAnswer | None = None,
) -> Decision:
    """Decide what follows a ShowInstanceStatus answer (``rejected``: the DELETE 400 before it)."""
    if answer.status == 401:
        retry = CallStatus(job, rejected)
        return _unauthorized(retry, job, answer, now, token_reloaded=token_reloaded)
    if answer.not_found:
        return Finish(job, Result("terminated", at=now, already_absent=job.deleted_at is None))
    if answer.status == 200:
        return _on_state(job, answer, now, policy, rand, rejected)
    if rejected is not None:
        return Finish(job, failure("rejected", rejected, now))
    if answer.transient or answer.status == 400:
        return _retry("status", job, answer, now, policy, rand)
    return Finish(job, failure("rejected", answer, now))


def _on_state(
    job: Job, answer: ApiAnswer, now: float, policy: Policy, rand: Rand, rejected: ApiAnswer | None
) -> Decision:
    state = normalise_state(answer.state)
    if state == TERMINATED:
        return Finish(_checked(job), Result("terminated", at=now, state=state))
    if state in FAILED_STATES:
        return Finish(_checked(job), failure("delete-failed", answer, now, state=state))
    if rejected is not None:
        if state == SHUTTING_DOWN:
            accepted = _checked(job, deleted_at=job.deleted_at if job.deleted_at is not None else now)
            return _schedule_check(accepted, now, policy, rand, "already shutting down")
        if state in DELETABLE_STATES:
            return Finish(_checked(job), failure("rejected", rejected, now, state=state))
        return _retry("delete", _checked(job), rejected, now, policy, rand)
    if state in DELETABLE_STATES:
        if job.redeletes >= policy.max_redeletes:
            return Finish(_checked(job), failure("delete-failed", answer, now, state=state))
        # Back to running after an accepted delete: delete again, but read (and judge) first.
        return CallRead(_checked(job, redeletes=job.redeletes + 1))
    if now >= job.deadline_at:
        return Finish(_checked(job), failure("deadline-exceeded", answer, now, state=state))
    return _schedule_check(_checked(job, seen_at=now), now, policy, rand, f"state {state}")


def _checked(job: Job, **more: Any) -> Job:
    """``job`` with one more status read answered, and ``more``, in one copy."""
    return evolved(job, checks=job.checks + 1, failures=0, throttles=0, **more)


def _schedule_check(job: Job, now: float, policy: Policy, rand: Rand, why: str) -> Decision:
    return Schedule("status", job, clamp(next_check(job, now, policy, rand), job, now, policy), why)


def _retry(action: Action, job: Job, answer: ApiAnswer, now: float, policy: Policy, rand: Rand) -> Decision:
    retried, plan = plan_retry(job, answer, now, policy, rand)
    if isinstance(plan, str):
        return Finish(retried, failure(plan, answer, now))
    return Schedule(action, retried, plan, f"retry after {answer.status or answer.failure}")


def _unauthorized(
    retry: CallRead | CallDelete | CallStatus,
    job: Job,
    answer: ApiAnswer,
    now: float,
    *,
    token_reloaded: bool,
) -> Decision:
    if not token_reloaded:
        return ReloadToken(retry)
    return Finish(job, failure("unauthorized", answer, now))
