"""The pure decision core: every branch of the state machine, no clock, no network."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from function import core
from function.core import (
    ApiAnswer,
    CallDelete,
    CallRead,
    CallStatus,
    Finish,
    Job,
    Policy,
    ReloadToken,
    Schedule,
)
from function.core.gate import Rules, Sighting

NOW = 1_800_000_000.0
POLICY = Policy(check_delay=15, check_max_delay=300, deadline=7200, max_retries=3)


def half() -> float:
    return 0.5


def job(**changes: object) -> Job:
    return dataclasses.replace(Job.new("i-1", "p-1", "ev-1", NOW, POLICY), **changes)  # type: ignore[arg-type]


def after_delete(
    answer: ApiAnswer, j: Job | None = None, *, reloaded: bool = False, now: float = NOW
) -> core.Decision:
    return core.on_delete_answer(j or job(), answer, now, POLICY, half, token_reloaded=reloaded)


def after_status(
    answer: ApiAnswer,
    j: Job | None = None,
    *,
    reloaded: bool = False,
    rejected: ApiAnswer | None = None,
    now: float = NOW,
) -> core.Decision:
    accepted = j or job(deleted_at=NOW - 30, delete_attempts=1)
    return core.on_status_answer(
        accepted, answer, now, POLICY, half, token_reloaded=reloaded, rejected=rejected
    )


def after_read(sighting: Sighting | None, j: Job | None = None, *, policy: Policy = POLICY) -> core.Decision:
    return core.on_read_answer(j or job(), ApiAnswer(200), sighting, NOW, policy, half, token_reloaded=False)


RUNNING = Sighting("running", {})


def test_start_reads_then_deletes_unless_dry_run() -> None:
    """A fresh expired instance is read first, then deleted; in dry-run it is read and skipped (dry-run)."""
    assert core.start(job(), NOW, POLICY) == CallRead(job())
    assert after_read(RUNNING) == CallDelete(job())
    dry = dataclasses.replace(POLICY, rules=Rules(allowed_projects=None, dry_run=True))
    assert core.start(job(), NOW, dry) == CallRead(job())
    skipped = after_read(RUNNING, policy=dry)
    assert isinstance(skipped, Finish)
    assert (skipped.result.kind, skipped.result.reason) == ("skipped", "dry-run")


def test_start_past_deadline_fails() -> None:
    """An event handled after its deadline reports deadline-exceeded without calling anything."""
    decision = core.start(job(), NOW + 7200, POLICY)
    assert isinstance(decision, Finish)
    assert decision.result.reason == "deadline-exceeded"


def test_accepted_delete_schedules_first_check_after_check_delay() -> None:
    """204 schedules the first status check exactly REAPER_CHECK_DELAY later and records deleted_at."""
    decision = after_delete(ApiAnswer(204))
    assert isinstance(decision, Schedule)
    assert decision.action == "status"
    assert decision.delay == 15
    assert decision.job.deleted_at == NOW
    assert decision.job.delete_attempts == 1


def test_check_backoff_doubles_with_jitter_and_is_capped() -> None:
    """Later checks back off exponentially, jittered below the base, never above the cap."""
    assert core.check_delay(0, POLICY, half) == 15
    assert core.check_delay(1, POLICY, lambda: 0.0) == 30
    assert core.check_delay(1, POLICY, half) == pytest.approx(30 * 0.9)
    assert core.check_delay(10, POLICY, lambda: 0.0) == 300
    assert core.check_delay(10, POLICY, lambda: 0.999) >= 300 * 0.8


def test_404_on_first_delete_is_already_absent() -> None:
    """A 404 on the first DELETE means nothing to do: terminated, already_absent."""
    decision = after_delete(ApiAnswer(404))
    assert isinstance(decision, Finish)
    assert decision.result.kind == "terminated"
    assert decision.result.already_absent is True


def test_404_on_a_repeated_delete_is_not_already_absent() -> None:
    """After an accepted delete, a 404 is the delete finishing, not an absent instance."""
    decision = after_delete(ApiAnswer(404), job(deleted_at=NOW - 60, delete_attempts=1))
    assert isinstance(decision, Finish)
    assert decision.result.already_absent is False


def test_throttled_delete_honours_retry_after() -> None:
    """429 with Retry-After becomes a delayed delete retry of exactly that many seconds."""
    decision = after_delete(ApiAnswer(429, error_code="APIG.0308", retry_after=2.0))
    assert isinstance(decision, Schedule)
    assert (decision.action, decision.delay) == ("delete", 2.0)
    assert (decision.job.throttles, decision.job.failures) == (1, 0)


def test_throttled_delete_without_retry_after_backs_off_2_to_5_s() -> None:
    """429 without Retry-After waits 2-5 s, growing with each further throttle."""
    first = after_delete(ApiAnswer(429))
    assert isinstance(first, Schedule)
    assert 2 <= first.delay <= 5
    second = after_delete(ApiAnswer(429), first.job)
    assert isinstance(second, Schedule)
    assert second.delay == pytest.approx(first.delay * 2)


@pytest.mark.parametrize("answer", [ApiAnswer(500), ApiAnswer(503), ApiAnswer(None, failure="timeout")])
def test_transient_delete_failures_retry_then_exhaust(answer: ApiAnswer) -> None:
    """5xx and transport failures retry with backoff, bounded by max_retries, then retries-exhausted."""
    current = job()
    delays = []
    for _ in range(POLICY.max_retries):
        decision = after_delete(answer, current)
        assert isinstance(decision, Schedule)
        assert decision.action == "delete"
        delays.append(decision.delay)
        current = decision.job
    assert delays == sorted(delays)
    final = after_delete(answer, current)
    assert isinstance(final, Finish)
    assert final.result.reason == "retries-exhausted"
    assert final.result.http_status == answer.status


def test_unauthorized_reloads_token_once_then_fails() -> None:
    """401 asks for a token reload and the same call again; a second 401 is unauthorized."""
    first = after_delete(ApiAnswer(401))
    assert first == ReloadToken(CallDelete(job()))
    second = after_delete(ApiAnswer(401), reloaded=True)
    assert isinstance(second, Finish)
    assert second.result.reason == "unauthorized"
    status = after_status(ApiAnswer(401))
    assert isinstance(status, ReloadToken)
    assert isinstance(status.then, CallStatus)


def test_400_on_delete_reads_status_before_judging() -> None:
    """A 400 on DELETE is not final: the status decides."""
    rejected = ApiAnswer(400, error_code="CDC.0400", error_msg="busy")
    decision = after_delete(rejected)
    assert isinstance(decision, CallStatus)
    assert decision.rejected == rejected


def test_rejected_delete_on_shutting_down_instance_is_followed() -> None:
    """400 on DELETE with the instance shutting down (either spelling) continues as accepted."""
    rejected = ApiAnswer(400)
    for spelling in ("shutting-down", "shutting_down", "SHUTTING_DOWN"):
        decision = after_status(ApiAnswer(200, state=spelling), job(delete_attempts=1), rejected=rejected)
        assert isinstance(decision, Schedule)
        assert decision.action == "status"
        assert decision.job.deleted_at == NOW


def test_rejected_delete_on_running_instance_is_rejected() -> None:
    """400 on DELETE while the instance runs is a real rejection, reported with the DELETE's error."""
    rejected = ApiAnswer(400, error_code="CDC.0400", error_msg="protected")
    decision = after_status(ApiAnswer(200, state="running"), job(delete_attempts=1), rejected=rejected)
    assert isinstance(decision, Finish)
    assert decision.result.reason == "rejected"
    assert decision.result.error_msg == "protected"


def test_rejected_delete_in_transitional_state_retries_delete() -> None:
    """400 on DELETE while the instance is e.g. stopping: try the delete again later."""
    decision = after_status(ApiAnswer(200, state="stopping"), job(delete_attempts=1), rejected=ApiAnswer(400))
    assert isinstance(decision, Schedule)
    assert decision.action == "delete"


def test_rejected_delete_then_status_error_is_rejected() -> None:
    """When the status read after a DELETE 400 fails too, the 400 stands as the verdict."""
    decision = after_status(ApiAnswer(500), job(delete_attempts=1), rejected=ApiAnswer(400, error_msg="bad"))
    assert isinstance(decision, Finish)
    assert decision.result.reason == "rejected"


@pytest.mark.parametrize("state", ["terminated", "TERMINATED"])
def test_terminated_state_finishes(state: str) -> None:
    """The state terminated ends the job with instance-terminated."""
    decision = after_status(ApiAnswer(200, state=state))
    assert isinstance(decision, Finish)
    assert decision.result.kind == "terminated"
    assert decision.job.checks == 1


@pytest.mark.parametrize(
    "answer",
    [ApiAnswer(404), ApiAnswer(400, error_code="CDC.0404", error_msg="Instance not found")],
)
def test_not_found_after_accepted_delete_is_terminated(answer: ApiAnswer) -> None:
    """Status answering not-found (404, or a 400 saying so) after an accepted delete is terminated."""
    decision = after_status(answer)
    assert isinstance(decision, Finish)
    assert decision.result.kind == "terminated"
    assert decision.result.already_absent is False


@pytest.mark.parametrize("state", ["failed", "error"])
def test_failed_delete_is_reported(state: str) -> None:
    """failed (or the older error) is instance-deletion-failed, reason delete-failed."""
    decision = after_status(ApiAnswer(200, state=state))
    assert isinstance(decision, Finish)
    assert (decision.result.kind, decision.result.reason, decision.result.state) == (
        "failed",
        "delete-failed",
        state,
    )


def test_shutting_down_checks_again_with_backoff() -> None:
    """While shutting down, another check is scheduled, later each time."""
    first = after_status(ApiAnswer(200, state="shutting-down"))
    assert isinstance(first, Schedule)
    second = after_status(ApiAnswer(200, state="shutting-down"), first.job)
    assert isinstance(second, Schedule)
    assert second.delay > first.delay
    assert second.job.checks == 2


def test_running_after_accepted_delete_deletes_again_bounded() -> None:
    """An instance back to running after an accepted delete is deleted again, at most max_redeletes times."""
    decision = after_status(ApiAnswer(200, state="running"))
    assert isinstance(decision, CallRead)
    assert decision.job.redeletes == 1
    exhausted = after_status(ApiAnswer(200, state="stopped"), job(deleted_at=NOW, redeletes=3))
    assert isinstance(exhausted, Finish)
    assert exhausted.result.reason == "delete-failed"


def test_status_failures_retry_then_exhaust() -> None:
    """Transient status failures (incl. an ambiguous 400) are retried as checks, then retries-exhausted."""
    current = job(deleted_at=NOW, delete_attempts=1)
    for answer in (ApiAnswer(500), ApiAnswer(None, failure="connection-error"), ApiAnswer(400)):
        decision = after_status(answer, current)
        assert isinstance(decision, Schedule)
        assert decision.action == "status"
        current = decision.job
    final = after_status(ApiAnswer(503), current)
    assert isinstance(final, Finish)
    assert final.result.reason == "retries-exhausted"


def test_throttling_is_bounded_by_the_deadline_not_by_max_retries() -> None:
    """Any number of 429s keeps retrying (each with its own step key) until the deadline; failures stay 0."""
    current, now, keys = job(), NOW, set()
    for _ in range(POLICY.max_retries * 5):
        decision = after_delete(ApiAnswer(429, retry_after=1.0), current, now=now)
        assert isinstance(decision, Schedule)
        assert decision.job.failures == 0
        keys.add(decision.job.step_key("delete"))
        current, now = decision.job, now + decision.delay
    assert len(keys) == POLICY.max_retries * 5  # no two retries share a dedup key
    late = after_delete(ApiAnswer(429, retry_after=1.0), current, now=NOW + POLICY.deadline)
    assert isinstance(late, Finish)
    assert late.result.reason == "deadline-exceeded"
    # A 5xx after a throttle storm still has the whole REAPER_MAX_RETRIES budget.
    assert isinstance(after_delete(ApiAnswer(500), current, now=now), Schedule)


def test_other_client_errors_are_rejected() -> None:
    """403 and similar answers cannot improve by waiting: rejected."""
    assert isinstance(after_delete(ApiAnswer(403)), Finish)
    decision = after_status(ApiAnswer(403))
    assert isinstance(decision, Finish)
    assert decision.result.reason == "rejected"


def test_deadline_exceeded_while_shutting_down() -> None:
    """Still shutting down at the deadline: deadline-exceeded, with the last state."""
    decision = after_status(ApiAnswer(200, state="shutting-down"), now=NOW + 7200)
    assert isinstance(decision, Finish)
    assert (decision.result.reason, decision.result.state) == ("deadline-exceeded", "shutting-down")


def test_late_check_still_reads_terminated() -> None:
    """A check delivered after the deadline still reads the status: terminated wins."""
    late = job(deleted_at=NOW, delete_attempts=1)
    assert core.resume("status", late, NOW + 9000, POLICY) == CallStatus(late)
    decision = after_status(ApiAnswer(200, state="terminated"), late, now=NOW + 9000)
    assert isinstance(decision, Finish)
    assert decision.result.kind == "terminated"


def test_delete_retry_past_deadline_fails() -> None:
    """A delete retry arriving after the deadline gives up instead of deleting."""
    decision = core.resume("delete", job(), NOW + 7200, POLICY)
    assert isinstance(decision, Finish)
    assert decision.result.reason == "deadline-exceeded"
    assert core.resume("delete", job(), NOW, POLICY) == CallRead(job())


def test_retry_past_deadline_fails() -> None:
    """A transient failure after the deadline is deadline-exceeded, not another retry."""
    decision = after_status(ApiAnswer(500), now=NOW + 7200)
    assert isinstance(decision, Finish)
    assert decision.result.reason == "deadline-exceeded"


def test_schedules_never_overshoot_the_deadline() -> None:
    """Delays are clamped so the last step happens at the deadline."""
    near = job(deleted_at=NOW, checks=8)
    decision = after_status(ApiAnswer(200, state="shutting-down"), near, now=NOW + 7190)
    assert isinstance(decision, Schedule)
    assert decision.delay == pytest.approx(10)


def test_huge_retry_after_is_capped() -> None:
    """A Retry-After beyond an hour is capped to an hour."""
    assert core.retry_delay(ApiAnswer(429, retry_after=10**6), 1, POLICY, half) == 3600


def test_step_keys_differ_along_a_chain_and_match_for_duplicates() -> None:
    """Each step of a chain has its own key; the same step computed twice has the same key."""
    accepted = after_delete(ApiAnswer(204))
    again = after_delete(ApiAnswer(204))
    assert isinstance(accepted, Schedule)
    assert isinstance(again, Schedule)
    assert accepted.job.step_key("status") == again.job.step_key("status")
    checked = after_status(ApiAnswer(200, state="shutting-down"), accepted.job)
    assert isinstance(checked, Schedule)
    assert checked.job.step_key("status") != accepted.job.step_key("status")


def test_normalise_state() -> None:
    """State spellings are folded to one form."""
    assert core.normalise_state(" Shutting_Down ") == "shutting-down"
    assert core.normalise_state(None) is None


_times = st.one_of(st.none(), st.floats(0, 1e10))
_counts = st.integers(0, 1000)
_changes = st.fixed_dictionaries(
    {},
    optional={
        "deleted_at": _times,
        "checks": _counts,
        "delete_attempts": _counts,
        "failures": _counts,
        "throttles": _counts,
        "seen_at": _times,
        "expected": _times,
    },
)


@given(
    start=st.builds(
        core.Job,
        st.text(min_size=1, max_size=8),
        st.text(min_size=1, max_size=8),
        st.text(max_size=8),
        st.floats(0, 1e10),
        st.floats(0, 1e10),
        deleted_at=_times,
        checks=_counts,
        expected=_times,
    ),
    changes=_changes,
)
def test_evolved_is_what_dataclasses_replace_returns(start: core.Job, changes: dict[str, object]) -> None:
    """The cheap copy the core makes on every event is the record ``replace`` makes, and still frozen."""
    copy = core.evolved(start, **changes)
    assert copy == dataclasses.replace(start, **changes)  # type: ignore[arg-type]
    assert copy.__dict__ == dataclasses.replace(start, **changes).__dict__  # type: ignore[arg-type]
    assert start == core.evolved(start)
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.checks = 1  # type: ignore[misc]


def test_evolved_refuses_a_field_job_does_not_have() -> None:
    """As ``replace`` does: a misspelt field is an error, not a silent no-op."""
    with pytest.raises(TypeError, match="chekcs"):
        core.evolved(job(), chekcs=1)
