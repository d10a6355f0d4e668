"""The learned check schedule (issue 13): when an accepted delete is expected done, what each finished
delete teaches, and the cadence a process keeps when one status read answers for many deletes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from function.core.records import Job, Policy, Rand, Result, Schedule
from function.core.retry import check_delay

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
