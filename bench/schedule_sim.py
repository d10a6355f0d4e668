"""Benchmark §1 simulated through the core's own functions: the learned schedule without processes or clocks.

``python -m bench.schedule_sim`` replays §1's protocol — a cold process (seed REAPER_CHECK_DELAY = 15 s) meets
40 warm-up deletes over 1.5 T, then 100 measured ones at 2/s — with ``core.next_check`` placing every check,
``core.learn`` folding in every finished delete, and each check delivered up to ``late`` s after it was due.
Over many seeds it shows what one bench run cannot: how often each fleet meets the targets. A learner change
can be judged here in seconds before ``make bench`` spends a quarter of an hour on one sample.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import statistics
import sys
from collections.abc import Callable
from typing import NamedTuple

from bench.__main__ import FLEETS, MEASURED, SEND_RATE, WARM_UP
from function import core

Learn = Callable[[core.Estimate, core.DeleteTiming, core.Policy], core.Estimate]
POLICY = core.Policy(check_delay=15, check_max_delay=300, deadline=7200)


class Outcome(NamedTuple):
    calls: float  # DELETE + status reads per measured instance
    lag_p95_share: float  # detection lag p95 of the measured instances, as a share of T
    estimate: float  # the process's estimate at the end


def simulate(took: float, spread: float, seed: int, late: float = 0.05, learn: Learn = core.learn) -> Outcome:
    """One §1 run for a fleet whose deletes take ``took`` s ± ``spread`` (a share), as the core decides it."""
    rng = random.Random(seed)
    estimate = core.Estimate(POLICY.check_delay)
    due: list[tuple[float, int, int]] = []  # (when, tie-break, instance); instance < 0: a delete arrives
    chains: dict[int, tuple[core.Job, float, int]] = {}  # instance: (job, delete time, reads)
    finished: dict[int, tuple[int, float]] = {}
    warm, measured = WARM_UP, MEASURED
    durations = [took * (1 + rng.uniform(-spread, spread)) for _ in range(warm + measured)]

    def check_after(job: core.Job, now: float, instance: int) -> None:
        delay = core.clamp(core.next_check(job, now, POLICY, rng.random), job, now, POLICY)
        heapq.heappush(due, (now + delay + rng.uniform(0, late), len(due) + len(finished), instance))

    for n in range(warm):
        heapq.heappush(due, (n * 1.5 * took / warm, -1 - n, -1 - n))
    while due:
        now, _, instance = heapq.heappop(due)
        if instance < 0:  # a delete accepted now, its first check placed by the estimate it meets
            instance = -1 - instance
            job = core.Job.new(f"i{instance}", "p", f"o{instance}", now, POLICY, expected=estimate.seconds)
            job = dataclasses.replace(job, deleted_at=now)
            chains[instance] = (job, now, 0)
            check_after(job, now, instance)
            continue
        job, began, reads = chains[instance]
        if now - began < durations[instance]:
            job = dataclasses.replace(job, seen_at=now)
            chains[instance] = (job, began, reads + 1)
            check_after(job, now, instance)
            continue
        observed = core.timing(job, core.Result("terminated", at=now))
        assert observed is not None
        estimate = learn(estimate, observed, POLICY)
        finished[instance] = (reads + 1, now - began - durations[instance])
        if len(finished) == warm:  # as §1 does: the measured deletes start once the warm-up is done
            for n in range(measured):
                heapq.heappush(due, (now + 1 + n / SEND_RATE, -1 - warm - n, -1 - warm - n))
    group = [finished[n] for n in range(warm, warm + measured)]
    lags = sorted(lag for _, lag in group)
    return Outcome(
        1 + statistics.mean(reads for reads, _ in group), lags[int(0.95 * len(lags))] / took, estimate.seconds
    )


def table(seeds: int = 40, lateness: tuple[float, ...] = (0.05, 0.3, 1.0), learn: Learn = core.learn) -> str:
    """Per fleet and delivery lateness: mean and worst calls, median and worst lag, share of runs missing."""
    lines = [
        "| fleet | checks late by ≤ | calls mean / worst | lag p95 / T median / worst | runs with calls > 2.5 | "
        "runs with lag > 10 % |",
        "|---|---|---|---|---|---|",
    ]
    for label, took, spread in FLEETS:
        for late in lateness:
            runs = [simulate(took, spread, seed, late, learn) for seed in range(seeds)]
            calls, lags = [r.calls for r in runs], [r.lag_p95_share for r in runs]
            lines.append(
                f"| {label} | {late:g} s | {statistics.mean(calls):.2f} / {max(calls):.2f} | "
                f"{statistics.median(lags):.0%} / {max(lags):.0%} | {sum(c > 2.5 for c in calls) / seeds:.0%} | "
                f"{sum(lag > 0.1 for lag in lags) / seeds:.0%} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(int(sys.argv[1]) if len(sys.argv) > 1 else 40))
