"""The API budget's arithmetic: never more than the cap in any one second, slower after a 429."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from function.budget import Budgets
from function.core import ApiAnswer, Job, Policy, delete_settled
from function.core.budget import MIN_RATE, OVER_BUDGET, Slowdown, quarter, rate_now, throttled, wait_for
from function.core.retry import plan_retry
from function.state import MemoryStore


@settings(max_examples=300, deadline=None)
@given(
    cap=st.floats(min_value=MIN_RATE, max_value=200.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=1, max_size=400),
)
def test_no_sliding_second_ever_holds_more_calls_than_the_cap(cap: float, gaps: list[float]) -> None:
    """Whatever the arrival times, the calls admitted in any sliding second number at most the cap."""
    counts: dict[int, int] = {}
    now, admitted = 1000.0, []
    for gap in gaps:
        now += gap
        window = quarter(now)
        counts[window] = counts.get(window, 0) + 1
        if wait_for(counts[window], rate_now(None, now, cap), now) == 0.0:
            admitted.append(now)
    for i, start in enumerate(admitted):
        assert len([t for t in admitted[i:] if t < start + 1.0]) <= cap


def test_a_call_over_budget_waits_for_the_next_quarter() -> None:
    """The quarter's share spent: the wait ends at the quarter that admits the call, and is never zero."""
    assert wait_for(4, 20.0, 10.1) == 0.0
    assert wait_for(5, 20.0, 10.1) == pytest.approx(0.15)  # the next quarter
    assert wait_for(8, 20.0, 10.1) == pytest.approx(0.15)
    assert wait_for(9, 20.0, 10.1) == pytest.approx(0.40)  # four over before it: the quarter after
    assert wait_for(2, 5.0, 10.2499) == pytest.approx(0.01)


def test_a_429_halves_the_rate_and_it_recovers_toward_the_cap() -> None:
    """Back off together on a 429; a tenth of the cap back per second after it, never above the cap."""
    slowdown = throttled(20.0, 100.0)
    assert rate_now(slowdown, 100.0, 20.0) == 10.0
    assert rate_now(slowdown, 102.0, 20.0) == pytest.approx(14.0)
    assert rate_now(slowdown, 200.0, 20.0) == 20.0
    assert throttled(MIN_RATE, 0.0).rate == MIN_RATE
    assert Slowdown.parse(slowdown.text()) == slowdown
    assert Slowdown.parse("not a slowdown") is None


def test_a_call_held_back_by_the_budget_is_planned_like_a_throttle() -> None:
    """Over budget counts as throttling (bounded by the deadline), never against REAPER_MAX_RETRIES."""
    policy = Policy(check_delay=15, check_max_delay=300, deadline=7200, max_retries=1)
    job = Job("i-1", "p-1", "evt-1", 0.0, 7200.0)
    answer = ApiAnswer(None, failure=OVER_BUDGET, retry_after=0.4)
    for _ in range(5):
        job, plan = plan_retry(job, answer, 1.0, policy, lambda: 0.0)
        assert plan == pytest.approx(policy.min_delay + 0.4)  # shifted past the shortest delay, not clamped
    assert (job.throttles, job.failures) == (5, 0)


def test_budgets_share_one_count_per_project_through_the_store() -> None:
    """Two processes' Budgets on one store count together; another project counts apart; a 429 at one
    process slows the other."""
    store, clock = MemoryStore(), [100.0]
    one, two = Budgets(store, 10.0, lambda: clock[0]), Budgets(store, 10.0, lambda: clock[0])
    assert [one.take("p"), two.take("p")] == [0.0, 0.0]  # 10/s: two per quarter second
    assert one.take("p") > 0.0
    assert two.take("q") == 0.0
    clock[0] += 0.25
    two.throttled("q")  # 10/s halved: one per quarter second
    assert one.take("q") == 0.0
    assert two.take("q") > 0.0


def test_a_delete_the_budget_held_back_gives_its_claim_back() -> None:
    """No call was made, so nothing was deleted: the claim goes back, as after a clear refusal; an answer
    of unknown outcome (a time-out) keeps it."""
    assert not delete_settled(ApiAnswer(None, failure=OVER_BUDGET, retry_after=0.2))
    assert not delete_settled(ApiAnswer(500))
    assert delete_settled(ApiAnswer(None, failure="timeout"))
    assert delete_settled(ApiAnswer(204))
    assert delete_settled(ApiAnswer(404))
