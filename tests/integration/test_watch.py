"""Status reads shared by the deletes one process watches: the watch itself, and the core's rules for it."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import schedule_sim
from function import core, watch
from function.core import Estimate, Job, Peers, Policy
from function.core.ids import MAX_IDS_PER_READ
from function.watch import Reading, Watch
from tests.conftest import Emulator, FunctionFactory, Sink, expired, new_id, wait_until

POLICY = Policy(check_delay=15, check_max_delay=300, deadline=7200)
T0 = 1_000_000.0
STATES = ["shutting-down", "shutting_down", "terminated", "failed", "error", "running", "stopped", None]


def accepted(instance_id: str, expected: float = 60.0, **changes: Any) -> Job:
    job = Job(instance_id, "p-1", f"evt-{instance_id}", T0, T0 + 7200, deleted_at=T0, expected=expected)
    return dataclasses.replace(job, **changes)


def check_in(delay: float, instance_id: str = "i-1", **changes: Any) -> core.Schedule:
    return core.Schedule("status", accepted(instance_id, **changes), delay, "state shutting-down")


def test_a_reading_answers_as_show_instance_status_would() -> None:
    """Listed: 200 with its state; not listed: 404, which the core takes as gone after an accepted delete."""
    reading = Reading(T0, frozenset({"a", "b", "c"}), {"a": "shutting-down", "b": "terminated"})
    assert reading.answer("a") == core.ApiAnswer(200, state="shutting-down")
    assert reading.answer("c").not_found
    assert [reading.gone(i) for i in ("a", "b", "c")] == [False, True, True]


def test_peers_count_the_others_and_know_the_soonest_check() -> None:
    """Rescheduling a check replaces its due time; a forgotten or announced delete is no peer."""
    watched = Watch()
    assert watched.peers("p-1", T0) == Peers()
    watched.wait_for(accepted("a"), T0 + 30)
    watched.wait_for(accepted("b"), T0 + 10)
    watched.wait_for(accepted("b"), T0 + 40)  # b's check moved later: its old due time is stale
    assert watched.peers("p-1", T0) == Peers(2, 30.0)
    watched.forget("p-1", "a")
    watched.announced("p-1", "b")
    assert watched.peers("p-1", T0) == Peers()
    assert watched.was_announced("p-1", "b")
    assert not watched.was_announced("p-1", "a")
    assert watched.peers("other", T0) == Peers()


def test_a_batch_asks_for_this_delete_then_the_ones_due_soonest() -> None:
    """At most the 100 ids ListInstances takes, this one first, none twice."""
    watched = Watch()
    for n in range(150):
        watched.wait_for(accepted(f"i-{n:03d}"), T0 + 150 - n)
    ids = watched.batch("p-1", "i-149")
    assert len(ids) == MAX_IDS_PER_READ == len(set(ids))
    assert ids[:3] == ("i-149", "i-148", "i-147")
    assert "i-000" not in ids
    assert Watch().batch("p-1", "x") == ("x",)


def test_a_read_takes_the_peers_it_found_gone_and_notes_the_running_ones_as_seen() -> None:
    """Once each; the jobs it returns carry the last sighting of a shared read (the estimate learns it)."""
    watched = Watch()
    for instance in ("a", "b", "c"):
        watched.wait_for(accepted(instance), T0 + 60)
    first = Reading(T0 + 50, frozenset({"a", "b", "c"}), dict.fromkeys(("a", "b", "c"), "shutting-down"))
    assert watched.gone("p-1", first, but="a") == []
    second = Reading(T0 + 55, frozenset({"a", "b", "c"}), {"a": "terminated", "b": "terminated"})
    found = watched.gone("p-1", second, but="a")
    assert [(job.instance_id, job.seen_at) for job, _ in found] == [("b", T0 + 50), ("c", T0 + 50)]
    assert watched.gone("p-1", second, but="a") == []  # taken: a concurrent read does not announce them too
    assert watched.peers("p-1", T0).count == 1


def test_a_shared_read_serves_only_fresh_and_only_what_it_asked_for() -> None:
    watched = Watch()
    reading = Reading(T0, frozenset({"a", "b"}), {})
    watched.remember("p-1", reading)
    assert watched.reading("p-1", "a", T0 + 0.5, max_age=1) is reading
    assert watched.reading("p-1", "a", T0 + 2, max_age=1) is None
    assert watched.reading("p-1", "z", T0, max_age=1) is None
    assert watched.reading("other", "a", T0, max_age=1) is None


def test_the_watch_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of deletes drops the oldest watched (their own chains go on) and the oldest announcements."""
    monkeypatch.setattr(watch, "MAX_WATCHED", 3)
    monkeypatch.setattr(watch, "MAX_ANNOUNCED", 2)
    watched = Watch()
    for n in range(5):
        watched.wait_for(accepted(f"i-{n}"), T0 + n)
        watched.announced("p-2", f"i-{n}")
    assert watched.peers("p-1", T0).count == 3
    assert watched.batch("p-1", "x") == ("x", "i-2", "i-3", "i-4")
    assert [watched.was_announced("p-2", f"i-{n}") for n in range(5)] == [False] * 3 + [True] * 2


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(STATES)))
def test_a_shared_read_can_only_finish_a_peer_never_delete_it(states: dict[str, str | None]) -> None:
    """What a read finds of a peer goes through the core as a status answer; for every peer the watch
    hands back as gone, the core's decision is a terminated result: no read, no DELETE, no re-delete."""
    watched = Watch()
    for instance in "abcd":
        watched.wait_for(accepted(instance), T0 + 60)
    reading = Reading(T0 + 61, frozenset("abcd"), states)
    for peer, _ in watched.gone("p-1", reading, but="a"):
        decision = core.on_status_answer(
            peer, reading.answer(peer.instance_id), T0 + 61, POLICY, lambda: 0.0, token_reloaded=False
        )
        assert isinstance(decision, core.Finish), decision
        assert decision.result.kind == "terminated"


def test_the_estimate_knows_its_fastest_delete_and_the_spread() -> None:
    assert (Estimate(60).earliest, Estimate(60).spread) == (60, 0)
    varied = Estimate(60, 3, ((40.0, 45.0), (None, 80.0), (70.0, 72.0)))
    assert (varied.earliest, varied.spread) == (45.0, 35.0)
    assert Estimate(30, 1, ((None, 45.0),)).earliest == 30


def test_the_first_check_aims_at_the_fleets_fastest_delete_where_reads_are_shared() -> None:
    """Then at the estimate, then the short steps; without ``earliest`` (a lone delete) as before."""
    fast = accepted("a", earliest=42.0)
    assert core.next_check(fast, T0, POLICY, lambda: 0.5) == 42.0
    assert core.next_check(accepted("a"), T0, POLICY, lambda: 0.5) == 60.0
    seen = dataclasses.replace(fast, seen_at=T0 + 42)
    assert core.next_check(seen, T0 + 42, POLICY, lambda: 0.5) == pytest.approx(18.0)
    assert core.next_check(accepted("a", earliest=90.0), T0, POLICY, lambda: 0.5) == 60.0


def test_sharing_pays_when_enough_deletes_cover_the_spread() -> None:
    """count x step (5 % of the estimate) >= the spread of recent delete times."""
    varied = Estimate(60, 16, ((None, 42.0), (None, 78.0)))  # spread 36 s, step 3 s: 12 peers
    assert not core.reads_pay(Peers(11, 1.0), varied, POLICY)
    assert core.reads_pay(Peers(12, 1.0), varied, POLICY)
    assert core.reads_pay(Peers(1, 1.0), Estimate(60), POLICY)
    assert not core.reads_pay(Peers(), Estimate(60), POLICY)


def test_a_check_comes_forward_to_keep_the_fleets_cadence() -> None:
    """Pulled to one step (3 s) when nothing else is due sooner, the delete may be done and reads pay."""
    varied = Estimate(60, 16, ((None, 42.0), (None, 78.0)))
    now, peers = T0 + 50, Peers(20, 10.0)
    pulled = core.keep_cadence(check_in(12.0), now, peers, varied, POLICY)
    assert (pulled.delay, pulled.why) == (3.0, "state shutting-down; watching 21")
    unchanged = [
        core.keep_cadence(check_in(2.0), now, peers, varied, POLICY),  # due sooner anyway
        core.keep_cadence(check_in(12.0), now, Peers(20, 2.0), varied, POLICY),  # a peer looks first
        core.keep_cadence(check_in(12.0), T0 + 30, peers, varied, POLICY),  # cannot be done yet
        core.keep_cadence(check_in(12.0), now, Peers(5, 10.0), varied, POLICY),  # too few to pay
        core.keep_cadence(check_in(12.0), now, Peers(), varied, POLICY),
        core.keep_cadence(check_in(12.0, deleted_at=None), now, peers, varied, POLICY),
        core.keep_cadence(dataclasses.replace(check_in(12.0), action="delete"), now, peers, varied, POLICY),
        core.keep_cadence(check_in(12.0), now, peers, varied, dataclasses.replace(POLICY, schedule="fixed")),
    ]
    assert [d.delay for d in unchanged] == [2.0] + [12.0] * 7


def test_reads_may_be_a_quarter_step_old() -> None:
    assert core.reading_max_age(Estimate(60), POLICY) == pytest.approx(0.75)


def test_shared_reads_meet_every_fleets_targets_in_the_bench_protocol() -> None:
    """``bench.schedule_sim`` with reads shared as ``reaping`` shares them: the mixed fleet (T ± 30 % per
    instance), out of reach for one delete alone, meets ≤ 2.5 calls and lag p95 ≤ 10 % of T in ≥ 90 % of
    runs; a lone delete's schedule (shared=False) is unchanged and still misses it."""
    for took, spread in ((20.0, 0.0), (60.0, 0.0), (60.0, 0.3)):
        for late in (0.05, 0.3, 1.0):
            runs = [schedule_sim.simulate(took, spread, seed, late) for seed in range(20)]
            assert max(run.calls for run in runs) <= 2.5, (took, spread, late)
            assert sum(run.lag_p95_share > 0.1 for run in runs) <= 2, (took, spread, late)
    alone = [schedule_sim.simulate(60.0, 0.3, seed, shared=False) for seed in range(5)]
    assert all(run.lag_p95_share > 0.1 for run in alone)


@pytest.mark.integration
def test_one_read_checks_the_other_delete_in_flight_and_announces_it(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """Two deletes in flight in one function process: whichever check comes first (3-7 s, both long gone)
    reads both with one ListInstances call and announces the other, whose own check then makes no call."""
    fn = function_factory(REAPER_EXPECTED_DELETE_SECONDS="6")
    first = emulator.add(new_id(), termination_seconds=2)
    assert fn.send(expired(first)).status_code == 200
    time.sleep(1)  # the second delete is accepted while the first is watched
    second = emulator.add(new_id(), termination_seconds=0.5)
    assert fn.send(expired(second)).status_code == 200
    assert [sink.result(i)["type"] for i in (first, second)] == ["instance-terminated"] * 2
    handled = wait_until(
        lambda: [
            line
            for line in fn.log_lines()
            if line.get("message") == "handled" and line.get("reason") == "announced"
        ],
        what="the announced delete's own check",
    )
    assert len(handled) == 1
    assert handled[0]["calls"] is None
    calls = [c for c in emulator.calls() if {first, second} & {c["instance_id"], *(c["ids"] or ())}]
    shared = [c for c in calls if c["call"] == "list" and len(c["ids"]) == 2]
    assert [set(c["ids"]) for c in shared] == [{first, second}]
    assert sorted(c["call"] for c in calls) == ["delete", "delete", "list", "list", "list"]
    assert {len({e["id"] for e in sink.for_instance(i)}) for i in (first, second)} == {1}


@pytest.mark.integration
def test_a_shared_read_that_fails_is_retried_and_loses_nothing(
    emulator: Emulator, function_factory: FunctionFactory, sink: Sink
) -> None:
    """The shared ListInstances read answers 429: the check that made it retries later, the other delete
    keeps its own check, and both end in one result each, with one DELETE each."""
    fn = function_factory(REAPER_EXPECTED_DELETE_SECONDS="3")
    # Each instance's first listing is the read before its DELETE; its second (a shared read) is refused.
    script = {"list": [{}, {"status": 429, "retry_after": 1}]}
    first = emulator.add(new_id(), termination_seconds=1, faults=script)
    assert fn.send(expired(first)).status_code == 200
    time.sleep(0.5)
    second = emulator.add(new_id(), termination_seconds=1, faults=script)
    assert fn.send(expired(second)).status_code == 200
    assert [sink.result(i)["type"] for i in (first, second)] == ["instance-terminated"] * 2
    calls = [c for c in emulator.calls() if {first, second} & {c["instance_id"], *(c["ids"] or ())}]
    assert next(c["status"] for c in calls if c["call"] == "list" and len(c["ids"]) == 2) == 429
    assert sorted(c["call"] for c in calls if c["call"] == "delete") == ["delete", "delete"]
    assert {len({e["id"] for e in sink.for_instance(i)}) for i in (first, second)} == {1}
