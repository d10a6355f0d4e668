"""Benchmark §1 simulated through the core's own functions: the learned schedule without processes or clocks.

``python -m bench.schedule_sim`` replays §1's protocol — a cold process (seed REAPER_CHECK_DELAY = 15 s) meets
40 warm-up deletes over 1.5 T, then 100 measured ones at 2/s — with ``core.next_check`` and ``core.keep_cadence``
placing every check, ``core.learn`` folding in every finished delete, the process's ``function.watch.Watch``
sharing status reads as ``reaping`` does (or not: ``shared=False``), and each check delivered up to ``late`` s
after it was due.
Over many seeds it shows what one bench run cannot: how often each fleet meets the targets. A learner change
can be judged here in seconds before ``make bench`` spends a quarter of an hour on one sample.
"""

from __future__ import annotations

import heapq
import random
import statistics
import sys
from collections.abc import Callable
from typing import NamedTuple

from bench.scenarios import FLEETS, MEASURED, SEND_RATE, WARM_UP
from function import core
from function.watch import Reading, Watch

Learn = Callable[[core.Estimate, core.DeleteTiming, core.Policy], core.Estimate]
POLICY = core.Policy(check_delay=15, check_max_delay=300, deadline=7200)


class Outcome(NamedTuple):
    calls: float  # DELETE + status reads per measured instance
    lag_p95_share: float  # detection lag p95 of the measured instances, as a share of T
    estimate: float  # the process's estimate at the end


def simulate(
    took: float, spread: float, seed: int, late: float = 0.05, learn: Learn = core.learn, shared: bool = True
) -> Outcome:
    """One §1 run for a fleet whose deletes take ``took`` s ± ``spread`` (a share), as the core decides it.

    ``shared``: checks read the statuses of every delete the process watches at once, as ``reaping`` does
    (``function.watch``); False: each check reads its own instance's status, as one delete alone does.
    """
    rng = random.Random(seed)
    estimate = core.Estimate(POLICY.check_delay)
    watch = Watch()
    due: list[tuple[float, int, int]] = []  # (when, sequence, instance); instance < 0: a delete arrives
    live: dict[int, int] = {}  # instance: sequence of its chain's pending check
    chains: dict[int, tuple[core.Job, float]] = {}  # instance: (job its pending check carries, accepted at)
    cost: dict[int, float] = {}  # instance: status reads spent on it (a shared read split among its ids)
    finished: dict[int, float] = {}  # instance: detection lag
    warm, measured = WARM_UP, MEASURED
    durations = [took * (1 + rng.uniform(-spread, spread)) for _ in range(warm + measured)]
    sequence = iter(range(1 << 62))

    def state(instance: int, now: float) -> str:
        return "terminated" if now - chains[instance][1] >= durations[instance] else "shutting-down"

    def follow(decision: core.Decision, now: float, instance: int) -> None:
        nonlocal estimate
        if isinstance(decision, core.Finish):
            job = decision.job
            observed = core.timing(job, decision.result)
            assert observed is not None, (job, decision.result)
            estimate = learn(estimate, observed, POLICY)
            watch.announced(job.project_id, job.instance_id)
            finished[instance] = now - chains[instance][1] - durations[instance]
            if len(finished) == warm:  # as §1 does: the measured deletes start once the warm-up is done
                for n in range(measured):
                    heapq.heappush(due, (now + 1 + n / SEND_RATE, next(sequence), -1 - warm - n))
            return
        assert isinstance(decision, core.Schedule)
        if shared:
            peers = watch.peers(decision.job.project_id, now)
            decision = core.keep_cadence(decision, now, peers, estimate, POLICY)
        live[instance] = next(sequence)
        heapq.heappush(due, (now + decision.delay + rng.uniform(0, late), live[instance], instance))
        chains[instance] = (decision.job, chains[instance][1])
        watch.wait_for(decision.job, now + decision.delay)

    def read(job: core.Job, instance: int, now: float) -> core.ApiAnswer:
        """What the check's status read answers, as ``Reaper._status`` gets it."""
        if not shared or not watch.peers("p", now).count:
            cost[instance] = cost.get(instance, 0) + 1
            return core.ApiAnswer(200, state=state(instance, now))
        reading = watch.reading("p", job.instance_id, now, core.reading_max_age(estimate, POLICY))
        if reading is None:
            ids = watch.batch("p", job.instance_id)
            reading = Reading(now, frozenset(ids), {i: state(int(i[1:]), now) for i in ids})
            watch.remember("p", reading)
            for i in ids:
                cost[int(i[1:])] = cost.get(int(i[1:]), 0) + 1 / len(ids)
            for peer, _ in watch.gone("p", reading, but=job.instance_id):
                answer = reading.answer(peer.instance_id)
                follow(
                    core.on_status_answer(peer, answer, now, POLICY, rng.random, token_reloaded=False),
                    now,
                    int(peer.instance_id[1:]),
                )
        return reading.answer(job.instance_id)

    for n in range(warm):
        heapq.heappush(due, (n * 1.5 * took / warm, next(sequence), -1 - n))
    while due:
        now, order, instance = heapq.heappop(due)
        if instance < 0:  # a delete accepted now, its first check placed by the estimate it meets
            instance = -1 - instance
            pays = shared and core.reads_pay(watch.peers("p", now), estimate, POLICY)
            earliest = estimate.earliest if pays else None
            job = core.Job.new(
                f"i{instance}", "p", f"o{instance}", now, POLICY, expected=estimate.seconds, earliest=earliest
            )
            chains[instance] = (job, now)
            follow(
                core.on_delete_answer(
                    job, core.ApiAnswer(204), now, POLICY, rng.random, token_reloaded=False
                ),
                now,
                instance,
            )
            continue
        if live.get(instance) != order or instance in finished:
            continue  # announced from a shared read: the check costs nothing
        job = chains[instance][0]
        watch.forget("p", job.instance_id)
        answer = read(job, instance, now)
        follow(
            core.on_status_answer(job, answer, now, POLICY, rng.random, token_reloaded=False), now, instance
        )
    group = range(warm, warm + measured)
    lags = sorted(finished[n] for n in group)
    return Outcome(
        1 + statistics.mean(cost.get(n, 0) for n in group),
        lags[int(0.95 * len(lags))] / took,
        estimate.seconds,
    )


def table(
    seeds: int = 40,
    lateness: tuple[float, ...] = (0.05, 0.3, 1.0),
    learn: Learn = core.learn,
    shared: bool = True,
) -> str:
    """Per fleet and delivery lateness: mean and worst calls, median and worst lag, share of runs missing."""
    lines = [
        "| fleet | checks late by ≤ | calls mean / worst | lag p95 / T median / worst | runs with calls > 2.5 | "
        "runs with lag > 10 % |",
        "|---|---|---|---|---|---|",
    ]
    for label, took, spread in FLEETS:
        for late in lateness:
            runs = [simulate(took, spread, seed, late, learn, shared) for seed in range(seeds)]
            calls, lags = [r.calls for r in runs], [r.lag_p95_share for r in runs]
            lines.append(
                f"| {label} | {late:g} s | {statistics.mean(calls):.2f} / {max(calls):.2f} | "
                f"{statistics.median(lags):.0%} / {max(lags):.0%} | {sum(c > 2.5 for c in calls) / seeds:.0%} | "
                f"{sum(lag > 0.1 for lag in lags) / seeds:.0%} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    print("Reads shared by the deletes a process watches (as reaper runs):\n")
    print(table(SEEDS))
    print("\nEach check reading its own status (a delete alone):\n")
    print(table(SEEDS, shared=False))
