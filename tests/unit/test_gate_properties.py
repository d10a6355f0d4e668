"""Property tests of the pure core: whatever the API answers, the gate is never skipped, chains end once."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from function import core
from function.core import ApiAnswer, Job, Policy, gate, sweep

NOW = 1_800_000_000.0
PAST = "2020-01-01T00:00:00Z"
FUTURE = "2099-01-01T00:00:00Z"
STATES = [
    "running",
    "stopped",
    "pending",
    "shutting-down",
    "shutting_down",
    "terminated",
    "failed",
    "error",
    "reinstalling",
    None,
]
# The shell gives up (5xx) past this many calls in one invocation: the core must settle within it.
MAX_CALLS_PER_EVENT = 8

metadata = st.fixed_dictionaries(
    {},
    optional={
        "reaper-protected": st.sampled_from(["true", "yes", "1", "on", "false", "no", ""]),
        "reaper-expires-at": st.sampled_from([PAST, FUTURE, "garbage", "2020-01-01T00:00:00"]),
    },
)
sightings = st.one_of(
    st.none(), st.builds(gate.Sighting, st.sampled_from(STATES).map(gate.normalise_state), metadata)
)
transient = st.sampled_from([ApiAnswer(429), ApiAnswer(429, retry_after=3.0), ApiAnswer(500), ApiAnswer(503)])
failures = st.sampled_from([ApiAnswer(None, failure="timeout"), ApiAnswer(401), ApiAnswer(403)])
read_answers = st.one_of(
    st.tuples(st.just(ApiAnswer(200)), sightings),
    st.tuples(st.one_of(transient, failures), st.none()),
)
delete_answers = st.one_of(
    st.sampled_from([ApiAnswer(204), ApiAnswer(202), ApiAnswer(404), ApiAnswer(400, error_msg="busy")]),
    transient,
    failures,
)
status_answers = st.one_of(
    st.builds(ApiAnswer, st.just(200), st.sampled_from(STATES)),
    st.sampled_from([ApiAnswer(404), ApiAnswer(400, error_msg="instance not found"), ApiAnswer(400)]),
    transient,
    failures,
)
rules = st.builds(
    gate.Rules,
    allowed_projects=st.sampled_from([None, frozenset({"p-1"}), frozenset({"p-2"})]),
    dry_run=st.booleans(),
)
claims = st.sampled_from([None, NOW - 3600, NOW + 30, NOW + 86400])


def cleared(
    project: str, sighting: gate.Sighting | None, claim: float | None, now: float, r: gate.Rules
) -> bool:
    """What the trust model allows, restated independently of ``gate.judge``."""
    if (
        sighting is None
        or (r.allowed_projects is not None and project not in r.allowed_projects)
        or r.dry_run
    ):
        return False
    if str(sighting.metadata.get(r.protect_key, "")).lower() in ("true", "yes", "1", "on"):
        return False
    expiry = gate.expires_at(sighting.metadata, r.expiry_key)
    if any(e is not None and e > now + r.skew for e in (expiry, claim)):
        return False
    return sighting.state in ("running", "stopped")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(r=rules, claim=claims, data=st.data())
def test_no_delete_without_clearance_and_exactly_one_result(
    r: gate.Rules, claim: float | None, data: Any
) -> None:
    """For any answers, every DELETE follows a read the trust model clears; the chain ends in one result."""
    policy = Policy(check_delay=15, check_max_delay=120, deadline=900, max_retries=4, rules=r)
    job = Job.new("i-1", "p-1", "ev-1", NOW, policy, expired_at=claim)
    now = NOW
    decision: core.Decision = core.start(job, now, policy)
    reloaded, calls, results, last_read = False, 0, 0, None
    for _ in range(2000):
        match decision:
            case core.Finish():
                results += 1
                break
            case core.Schedule(action=action, job=job, delay=delay):
                assert delay >= policy.min_delay
                now += delay
                reloaded, calls, last_read = False, 0, None
                decision = core.resume(action, job, now, policy)
            case core.ReloadToken(then=then):
                assert not reloaded
                reloaded = True
                decision = then
            case core.CallRead(job=job):
                calls += 1
                answer, sighting = data.draw(read_answers)
                last_read = (answer, sighting, now)
                decision = core.on_read_answer(
                    job, answer, sighting, now, policy, lambda: 0.5, token_reloaded=reloaded
                )
            case core.CallDelete(job=job):
                calls += 1
                assert last_read is not None, "a DELETE with no read before it in the same invocation"
                answer, sighting, read_at = last_read
                assert answer.status == 200
                assert cleared(job.project_id, sighting, job.expired_at, read_at, r)
                decision = core.on_delete_answer(job, data.draw(delete_answers), now, policy, lambda: 0.5,
                                                 token_reloaded=reloaded)  # fmt: skip
            case core.CallStatus(job=job, rejected=rejected):
                calls += 1
                decision = core.on_status_answer(job, data.draw(status_answers), now, policy, lambda: 0.5,
                                                 token_reloaded=reloaded, rejected=rejected)  # fmt: skip
        assert calls <= MAX_CALLS_PER_EVENT
    assert results == 1, "the chain did not end"
    assert isinstance(decision, core.Finish)
    if r.allowed_projects is not None and "p-1" not in r.allowed_projects:
        assert decision.result.reason == "project-not-allowed"


records = st.lists(
    st.builds(
        lambda i, state, meta: {"id": f"i-{i}", "state": state, "metadata": meta},
        st.integers(0, 5),
        st.sampled_from(STATES),
        metadata,
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(r=rules, found=records, redeletes=st.integers(0, 4), checking=st.booleans())
def test_batch_deletes_only_what_the_gate_clears(
    r: gate.Rules, found: list[dict[str, Any]], redeletes: int, checking: bool
) -> None:
    """A batch read (before a batch-delete, or a check that may re-delete) clears only deletable instances,
    and every instance of the batch is either finished once or followed."""
    policy = Policy(check_delay=15, check_max_delay=120, deadline=900, max_retries=4, rules=r)
    ids = tuple(f"i-{n}" for n in range(6))
    job = sweep.BatchJob("p-1", ids, "o", NOW - 10, NOW + 600, deleted_at=NOW - 5 if checking else None,
                         redeletes=redeletes)  # fmt: skip
    decide = sweep.on_batch_list if checking else sweep.on_batch_read
    step = decide(job, ApiAnswer(200), found, NOW, policy, lambda: 0.5)
    seen = {rec["id"]: gate.Sighting.of(rec) for rec in found}
    for instance in step.delete:
        sighting = seen.get(instance)
        assert cleared("p-1", sighting, None, NOW, r)
        assert sighting is not None
        assert gate.expires_at(sighting.metadata, r.expiry_key) is not None  # sweeps need the metadata's word
    finished = [i for i, _ in step.results]
    followed = list(step.job.instance_ids) if step.job else []
    assert sorted(finished + followed) == sorted(ids)
    assert len(set(finished)) == len(finished)
    if r.allowed_projects is not None and "p-1" not in r.allowed_projects:
        assert not step.delete
        refused = sweep.refuse_project(job, NOW, r)
        assert refused is not None
        assert {res.reason for _, res in refused.results} == {"project-not-allowed"}


def test_policy_default_is_explicit() -> None:
    """The core's own default allows every project; settings never leave it at that (test_settings)."""
    assert dataclasses.replace(Policy()).rules.allowed_projects is None
