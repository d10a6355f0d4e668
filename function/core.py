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

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, Protocol, TypeVar

from function import gate
from function.gate import DELETABLE_STATES, FAILED_STATES, SHUTTING_DOWN, TERMINATED, normalise_state

Rand = Callable[[], float]
Action = Literal["status", "delete"]
CheckSchedule = Literal["learned", "fixed"]
ResultKind = Literal["terminated", "failed", "skipped"]

__all__ = ["DELETABLE_STATES", "FAILED_STATES", "SHUTTING_DOWN", "TERMINATED", "normalise_state"]
EVERY_PROJECT: Final = gate.Rules(
    allowed_projects=None
)  # the pure core's default; settings refuse by default
_NOT_FOUND_TEXT: Final = re.compile(r"not[ _-]?(?:found|exist)|does not exist|no such", re.I)
_ACCEPTED: Final = frozenset({200, 202, 204})
# The learned check schedule (issue 13). A scout's first check comes at half the estimate, so an estimate
# that is too high shows itself; one chain in 16 scouts (about 0.06 reads per instance).
SCOUT_SHARE: Final = 1 / 16
SCOUT_AT: Final = 0.5
# Each finished delete moves the estimate by at least a quarter of the way to what it showed (the first
# few by more), and by at most doubling it: one instance stuck for an hour cannot make the fleet wait.
LEARN_RATE: Final = 0.25
MAX_RISE: Final = 2.0
# The estimate remembers what its last 16 deletes showed. While they agree (every sighting of one still
# running came before every one found gone), the fleet's deletes take about the same time, and a wide
# bracket's middle is kept inside what they agree on.
EVIDENCE: Final = 16


@dataclass(frozen=True)
class Policy:
    """The knobs of the state machine; built from settings by the shell."""

    check_delay: float = 15.0
    check_max_delay: float = 300.0
    deadline: float = 7200.0
    rules: gate.Rules = EVERY_PROJECT
    max_retries: int = 8
    max_redeletes: int = 3
    retry_base: float = 2.0
    retry_max: float = 120.0
    throttle_min: float = 2.0
    throttle_max: float = 5.0
    jitter: float = 0.2
    max_retry_after: float = 3600.0
    min_delay: float = 1.0
    schedule: CheckSchedule = "learned"
    check_step: float = 0.05  # after the expected end, checks come this share of the estimate apart


@dataclass(frozen=True)
class Job:
    """Everything needed to continue reaping one instance with no store: it rides in follow-ups."""

    instance_id: str
    project_id: str
    origin_id: str
    started_at: float
    deadline_at: float
    deleted_at: float | None = None
    checks: int = 0
    delete_attempts: int = 0
    failures: int = 0
    redeletes: int = 0
    expired_at: float | None = None
    throttles: int = 0
    expected: float | None = None  # seconds this chain expects its delete to take (learned schedule)
    seen_at: float | None = None  # the last status read that found the accepted delete still running
    earliest: float | None = None  # the fastest of the fleet's recent deletes: where the first check aims

    @classmethod
    def new(
        cls,
        instance_id: str,
        project_id: str,
        origin_id: str,
        now: float,
        policy: Policy,
        expired_at: float | None = None,
        expected: float | None = None,
        earliest: float | None = None,
    ) -> Job:
        """Start a job for an instance-expired event received at ``now`` (``expired_at``: its claim).

        ``expected``: the process's estimate of how long a delete takes, ``earliest``: how long the fastest
        of its recent deletes took (the learned schedule's inputs, ``Estimate.seconds`` and ``.earliest``).
        """
        learned = policy.schedule == "learned"
        return cls(
            instance_id,
            project_id,
            origin_id,
            now,
            now + policy.deadline,
            expired_at=expired_at,
            expected=expected if learned else None,
            earliest=earliest if learned else None,
        )

    def step_key(self, action: Action) -> str:
        """A label unique along one job's chain: duplicates of a step get the same label."""
        counters = (
            f"d{self.delete_attempts}-c{self.checks}-f{self.failures}-r{self.redeletes}-t{self.throttles}"
        )
        return f"{action}-{counters}"


_JOB_FIELDS: Final = frozenset(field.name for field in dataclasses.fields(Job))


def evolved(job: Job, **changes: Any) -> Job:
    """What ``dataclasses.replace(job, **changes)`` returns, for a sixth of its cost: every Job copy here.

    ``replace`` re-runs the frozen ``__init__``: ~50,000 instructions for Job's 15 fields set one by one
    through ``object.__setattr__``. Job validates nothing in ``__init__`` (no ``__post_init__``), so a
    shallow copy of its fields with ``changes`` written in is the same record.
    """
    unknown = changes.keys() - _JOB_FIELDS
    if unknown:
        raise TypeError(f"Job has no field {sorted(unknown)[0]!r}")
    copy = object.__new__(Job)
    copy.__dict__.update(job.__dict__, **changes)
    return copy


class ApiAnswer(NamedTuple):
    """What one CloudDC call answered; ``status`` is None when no HTTP answer came back."""

    status: int | None
    state: str | None = None
    error_code: str | None = None
    error_msg: str | None = None
    retry_after: float | None = None
    failure: str | None = None
    operation_state: str | None = None

    @property
    def transient(self) -> bool:
        """True for answers that may succeed when asked again later (429, 5xx, no answer)."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def not_found(self) -> bool:
        """True when the instance does not exist (404, or a 400 that says so)."""
        if self.status == 404:
            return True
        text = f"{self.error_code or ''} {self.error_msg or ''}"
        return self.status == 400 and bool(_NOT_FOUND_TEXT.search(text))


@dataclass(frozen=True)
class Result:
    """How reaping one instance ended."""

    kind: ResultKind
    reason: str | None = None
    at: float = 0.0
    already_absent: bool = False
    state: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    error_msg: str | None = None
    operation_state: str | None = None


@dataclass(frozen=True)
class CallRead:
    """Read the instance with ListInstances; the answer decides, through the gate, whether to delete."""

    job: Job


@dataclass(frozen=True)
class CallDelete:
    """Call DeleteInstance now (only ever decided from a ``delete`` verdict of the gate)."""

    job: Job


@dataclass(frozen=True)
class CallStatus:
    """Call ShowInstanceStatus now; ``rejected`` is the DELETE 400 that prompted the read."""

    job: Job
    rejected: ApiAnswer | None = None


@dataclass(frozen=True)
class ReloadToken:
    """Re-read the token, then make the same call once more."""

    then: CallRead | CallDelete | CallStatus


@dataclass(frozen=True)
class Schedule:
    """Hand the work on: deliver a follow-up ``action`` for ``job`` after ``delay`` seconds."""

    action: Action
    job: Job
    delay: float
    why: str


@dataclass(frozen=True)
class Finish:
    """The job is over; announce ``result``."""

    job: Job
    result: Result


Decision = CallRead | CallDelete | CallStatus | ReloadToken | Schedule | Finish


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


def check_delay(checks_done: int, policy: Policy, rand: Rand) -> float:
    """Seconds until the next status check: the first after ``check_delay``, then doubling with jitter."""
    if checks_done <= 0:
        return policy.check_delay
    base = min(policy.check_max_delay, policy.check_delay * _growth(checks_done))
    return max(policy.min_delay, base * (1.0 - policy.jitter * rand()))


def _growth(steps: int) -> float:
    """2**steps for backoff, bounded so that a large counter cannot overflow a float."""
    return 2.0 ** min(max(steps, 0), 64)


def retry_delay(answer: ApiAnswer, failures: int, policy: Policy, rand: Rand) -> float:
    """Seconds before retrying after a transient answer; a Retry-After header wins."""
    if answer.retry_after is not None:
        return min(max(answer.retry_after, 0.0), policy.max_retry_after)
    growth = _growth(failures - 1)
    if answer.status == 429:
        first = policy.throttle_min + (policy.throttle_max - policy.throttle_min) * rand()
        return min(policy.retry_max, first * growth)
    base = min(policy.retry_max, policy.retry_base * growth)
    return max(policy.min_delay, base * (1.0 - policy.jitter * rand()))


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


def next_check(job: Job, now: float, policy: Policy, rand: Rand) -> float:
    """Seconds until the next status check of an accepted delete.

    Learned: the first check lands when the delete may be done (``job.earliest``, the fleet's fastest recent
    delete, when that is sooner than ``job.expected``; a scout's at half that), the next when it is expected
    to be done, later ones a short step apart that grows with how late the delete runs, so detection lags
    by a small share of the delete time; capped and jittered. Fixed (or a chain from before the learned
    schedule): ``check_delay``'s doubling backoff.
    """
    if policy.schedule == "fixed" or job.expected is None or job.deleted_at is None:
        return check_delay(job.checks, policy, rand)
    expected = job.expected
    elapsed = max(0.0, now - job.deleted_at)
    if elapsed < expected:
        aim = expected
        if job.seen_at is None and job.earliest is not None:
            aim = min(expected, job.earliest)
        first = aim * SCOUT_AT if job.seen_at is None and rand() < SCOUT_SHARE else aim
        delay = max(first, elapsed + policy.min_delay) - elapsed
    else:
        delay = max(policy.check_step * expected, elapsed - expected) * (1.0 - policy.jitter * rand())
    return min(policy.check_max_delay, max(policy.min_delay, delay))


@dataclass(frozen=True)
class Estimate:
    """A process's running estimate of accepted-delete → terminated, and how many deletes it has seen."""

    seconds: float
    samples: int = 0
    # (seen, done) of the last EVIDENCE finished deletes, oldest first (see ``DeleteTiming``).
    evidence: tuple[tuple[float | None, float], ...] = ()

    @property
    def earliest(self) -> float:
        """How long the fastest of the last deletes took at most (``seconds`` when that is sooner)."""
        return min([self.seconds, *(done for _, done in self.evidence)])

    @property
    def spread(self) -> float:
        """How far apart the fastest and slowest of the last deletes were found gone."""
        dones = [done for _, done in self.evidence]
        return max(dones) - min(dones) if dones else 0.0


@dataclass(frozen=True)
class DeleteTiming:
    """What one finished delete showed: gone ``done`` s after it was accepted, still running at ``seen``.

    ``expected``: the estimate the chain's checks followed.
    """

    done: float
    seen: float | None
    expected: float


def timing(job: Job, result: Result) -> DeleteTiming | None:
    """What a finished chain tells about how long deletes take (None: nothing to learn from it)."""
    if result.kind != "terminated" or result.already_absent or job.redeletes:
        return None
    if job.deleted_at is None or job.expected is None:
        return None
    done = result.at - job.deleted_at
    if done <= 0:
        return None
    seen = job.seen_at - job.deleted_at if job.seen_at is not None and job.seen_at > job.deleted_at else None
    return DeleteTiming(done, seen, job.expected)


def learn(estimate: Estimate, observed: DeleteTiming, policy: Policy) -> Estimate:
    """The estimate after one more finished delete (the learned schedule's only state).

    A delete gone at the first look took at most ``done``: probe a quarter step earlier than that look was
    planned (the estimate the chain carried, when it is smaller: a transport that delivers every check late
    must not hold an estimate that is too high in place). One pinned between
    two checks a short step apart took about ``done``. A wide bracket says only that it took longer than
    ``seen`` and at most ``done``: past the chain's own estimate (the growing steps of an estimate too
    low), aim at the bracket's middle, kept within what the last deletes agree on (a chain that followed a
    cold estimate finishes last, with the widest bracket: it must not lift an estimate its fleet has
    settled); before it (a scout that found the delete running, then the check at the estimate found it
    gone), the estimate held: keep it, at most ``done``.
    """
    current = estimate.seconds
    if observed.seen is None:
        target = min(current, min(observed.done, observed.expected) * (1.0 - policy.check_step / 4))
    elif observed.done - observed.seen <= 2 * policy.check_step * observed.done:
        target = observed.done
    elif observed.seen >= observed.expected:
        target = _agreed((observed.seen + observed.done) / 2, estimate.evidence)
    else:
        target = min(current, observed.done)
    weight = max(LEARN_RATE, 1.0 / (estimate.samples + 1))
    seconds = current + weight * (min(target, current * MAX_RISE) - current)
    evidence = (*estimate.evidence, (observed.seen, observed.done))[-EVIDENCE:]
    return Estimate(min(max(seconds, policy.min_delay), policy.deadline), estimate.samples + 1, evidence)


def _agreed(target: float, evidence: tuple[tuple[float | None, float], ...]) -> float:
    """``target`` kept between the latest sighting of a delete still running and the earliest one gone.

    Unchanged when the evidence has no sighting, or disagrees (one seen running after another was gone: a
    fleet whose deletes vary, where the bracket's middle is the better guess).
    """
    seen = [s for s, _ in evidence if s is not None]
    if not seen:
        return target
    lower, upper = max(seen), min(done for _, done in evidence)
    return target if lower > upper else min(max(target, lower), upper)


@dataclass(frozen=True)
class Peers:
    """The other accepted deletes of one project a process watches, and when the soonest check is due."""

    count: int = 0
    soonest: float | None = None  # seconds from now


def cadence(estimate: Estimate, policy: Policy) -> float:
    """How far apart a process watching many deletes looks at them: ``check_step`` of the estimate."""
    return max(policy.min_delay, policy.check_step * estimate.seconds)


def reads_pay(peers: Peers, estimate: Estimate, policy: Policy) -> bool:
    """True when enough deletes share the reads for reads a step apart to cost each at most one: count x
    step >= the spread of recent delete times (then a delete's first check may aim at the fastest one)."""
    return peers.count > 0 and peers.count * cadence(estimate, policy) >= estimate.spread


def keep_cadence(
    decision: Schedule, now: float, peers: Peers, estimate: Estimate, policy: Policy
) -> Schedule:
    """Bring a status check forward so that a process watching many deletes looks at them a step apart.

    One status read can answer for every delete a process watches (``function.watch``): in a fleet whose
    deletes vary, checks a short step apart from the fastest delete's time on catch each delete soon after
    it ends, for a few reads shared by all. Only when no peer's check is due within the step, once this
    delete may be done (``estimate.earliest``), and when the reads pay (``reads_pay``).
    """
    job = decision.job
    if decision.action != "status" or policy.schedule == "fixed" or job.deleted_at is None:
        return decision
    step = cadence(estimate, policy)
    if decision.delay <= step or (peers.soonest is not None and peers.soonest <= step):
        return decision
    if now + step - job.deleted_at < estimate.earliest or not reads_pay(peers, estimate, policy):
        return decision
    return dataclasses.replace(decision, delay=step, why=f"{decision.why}; watching {peers.count + 1}")


def reading_max_age(estimate: Estimate, policy: Policy) -> float:
    """How old a shared status read may be and still answer for a delete: a quarter of the check step."""
    return policy.check_step * estimate.seconds / 4


class Retryable(Protocol):
    """What ``plan_retry`` needs of a job (``Job`` and ``sweep.BatchJob`` both have it)."""

    @property
    def failures(self) -> int: ...
    @property
    def throttles(self) -> int: ...
    @property
    def deadline_at(self) -> float: ...


R = TypeVar("R", bound=Retryable)


def plan_retry(job: R, answer: ApiAnswer, now: float, policy: Policy, rand: Rand) -> tuple[R, float | str]:
    """The job with this transient answer counted, and the delay before trying again — or why to give up.

    Throttling (429) says "slow down", not "failed": it is bounded by the deadline alone, never by
    REAPER_MAX_RETRIES, and has its own counter so every retry keeps a step key of its own.
    """
    if answer.status == 429:
        retried = dataclasses.replace(job, throttles=job.throttles + 1)  # type: ignore[type-var]
        count = retried.throttles
    else:
        retried = dataclasses.replace(job, failures=job.failures + 1)  # type: ignore[type-var]
        count = retried.failures
        if count > policy.max_retries:
            return retried, "retries-exhausted"
    if now >= job.deadline_at:
        return retried, "deadline-exceeded"
    return retried, clamp(retry_delay(answer, count, policy, rand), job, now, policy)


def _retry(action: Action, job: Job, answer: ApiAnswer, now: float, policy: Policy, rand: Rand) -> Decision:
    retried, plan = plan_retry(job, answer, now, policy, rand)
    if isinstance(plan, str):
        return Finish(retried, failure(plan, answer, now))
    return Schedule(action, retried, plan, f"retry after {answer.status or answer.failure}")


def clamp(delay: float, job: Retryable, now: float, policy: Policy) -> float:
    """Never schedule past the deadline by more than the minimum delay: the last step decides."""
    return max(policy.min_delay, min(delay, job.deadline_at - now))


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


def failure(reason: str, answer: ApiAnswer, now: float, state: str | None = None) -> Result:
    """A failed result carrying the last answer's status and error."""
    return Result(
        "failed",
        reason,
        at=now,
        state=state,
        http_status=answer.status,
        error_code=answer.error_code or answer.failure,
        error_msg=answer.error_msg,
        operation_state=answer.operation_state,
    )
