"""When to try again: the check backoff, the retry delay after a transient answer (``Retry-After`` wins),
and the plan that counts a failure or a throttle against the policy and the deadline."""

from __future__ import annotations

import dataclasses
from typing import Protocol, TypeVar

from function.core.budget import OVER_BUDGET
from function.core.records import ApiAnswer, Policy, Rand


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
    if answer.failure == OVER_BUDGET and answer.retry_after is not None:
        # Shifted, not clamped, past the transports' shortest delay: the budget's spread of a burst stands.
        return policy.min_delay + min(max(answer.retry_after, 0.0), policy.max_retry_after)
    if answer.retry_after is not None:
        return min(max(answer.retry_after, 0.0), policy.max_retry_after)
    growth = _growth(failures - 1)
    if answer.status == 429:
        first = policy.throttle_min + (policy.throttle_max - policy.throttle_min) * rand()
        return min(policy.retry_max, first * growth)
    base = min(policy.retry_max, policy.retry_base * growth)
    return max(policy.min_delay, base * (1.0 - policy.jitter * rand()))


class Retryable(Protocol):
    """What ``plan_retry`` needs of a job (``Job`` and ``sweep.BatchJob`` both have it)."""

    @property
    def failures(self) -> int:
        """Transient failures in a row."""
        ...

    @property
    def throttles(self) -> int:
        """429s in a row."""
        ...

    @property
    def deadline_at(self) -> float:
        """When the job gives up (epoch seconds)."""
        ...


R = TypeVar("R", bound=Retryable)


def plan_retry(job: R, answer: ApiAnswer, now: float, policy: Policy, rand: Rand) -> tuple[R, float | str]:
    """The job with this transient answer counted, and the delay before trying again — or why to give up.

    Throttling (429, or a call the API budget held back) says "slow down", not "failed": it is bounded by
    the deadline alone, never by REAPER_MAX_RETRIES, and has its own counter so every retry keeps a step
    key of its own.
    """
    if answer.status == 429 or answer.failure == OVER_BUDGET:
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


def clamp(delay: float, job: Retryable, now: float, policy: Policy) -> float:
    """Never schedule past the deadline by more than the minimum delay: the last step decides."""
    return max(policy.min_delay, min(delay, job.deadline_at - now))
