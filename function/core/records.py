"""What the core reads and decides: the policy, the job that rides in follow-ups, an API answer, a result,
and the decisions the shell carries out. Pure records, no behaviour but copying and describing."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from function.core import gate

Rand = Callable[[], float]
Action = Literal["status", "delete"]
CheckSchedule = Literal["learned", "fixed"]
ResultKind = Literal["terminated", "failed", "skipped"]
EVERY_PROJECT: Final = gate.Rules(allowed_projects=None)  # the pure core's default; settings refuse
# The state machine's defaults, read by Settings too (REAPER_CHECK_DELAY, _CHECK_MAX_DELAY, _DEADLINE).
CHECK_DELAY: Final = 15.0
CHECK_MAX_DELAY: Final = 300.0
DEADLINE: Final = 7200.0
_NOT_FOUND_TEXT: Final = re.compile(r"not[ _-]?(?:found|exist)|does not exist|no such", re.I)


@dataclass(frozen=True)
class Policy:
    """The knobs of the state machine; built from settings by the shell."""

    check_delay: float = CHECK_DELAY
    check_max_delay: float = CHECK_MAX_DELAY
    deadline: float = DEADLINE
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
    claimant: str | None = None  # this chain's name on the instance's delete claim (the fleet's store)

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
        claimant: str | None = None,
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
            claimant=claimant,
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
