"""The imperative shell around the core: run one event's decisions against the real adapters.

A handler's wall time is its API calls and nothing else: waits leave as delayed events.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from function import catalog, core, state, tracing
from function.clouddc import CloudDCClient, check_id
from function.core import gate
from function.credentials import Credentials
from function.deletetimes import DeleteTimes
from function.errors import BadEventError, RetryableError
from function.handoff import HandOff, chain_key
from function.inbound import InboundEvent
from function.inbound.auth import Caller
from function.jsonlog import STEP_HANDLED
from function.outcome import Outcome, describe, status_codes
from function.policy import policy_from
from function.settings import Settings
from function.sharedreads import SharedStatus
from function.signing import EventSigner
from function.watch import Watch

if TYPE_CHECKING:
    from function.sweeping import Sweeper

_LOG = logging.getLogger("reaper.decisions")
# Read, DELETE, status after a 400, token reload, re-read...: the core needs at most a handful.
_MAX_CALLS_PER_EVENT: Final = 8
_FOLLOW_UP_TYPES: Final[dict[core.Action, str]] = {
    "status": catalog.INSTANCE_STATUS_CHECK,
    "delete": catalog.INSTANCE_DELETE_RETRY,
}


@dataclass
class Reaper:
    """Handles one inbound event at a time (thread-safe: it holds no per-event state)."""

    settings: Settings
    client: CloudDCClient
    tokens: Credentials
    handoff: HandOff
    signer: EventSigner
    clock: Callable[[], float] = time.time
    rand: Callable[[], float] = field(default=random.random)

    def __post_init__(self) -> None:
        self.store = self.handoff.store
        self.policy = policy_from(self.settings)
        self.estimate = DeleteTimes(self.settings.expected_delete_seconds or self.settings.check_delay)
        self.watch = Watch()
        self.status = SharedStatus(
            self.client, self.watch, self.estimate, self.policy, self.clock, self.rand, self._finish
        )

    @functools.cached_property
    def sweeper(self) -> Sweeper:
        """The sweep handler, built (and imported) with the first sweep: a cold start skips it."""
        from function.sweeping import Sweeper

        return Sweeper(
            self.settings,
            self.client,
            self.tokens,
            self.handoff,
            self.policy,
            self.clock,
            self.rand,
            self.store,
        )

    def handle(self, event: InboundEvent, caller: Caller) -> Outcome:
        """Decide and act on one event; raises ``BadEventError`` or ``RetryableError``."""
        started = time.perf_counter()
        self.admit(event, caller)
        catalog.validate(event.type, event.data)
        with tracing.telemetry().step(f"reaper {event.type}", event.parent) as span:
            calls: list[str] = []  # every CloudDC call this step makes, kept should the step fail
            try:
                now = self.clock()
                if event.type in catalog.SWEEP_TYPES:
                    outcome = self.sweeper.handle(event)
                else:
                    outcome = self._reap(event, now, calls)
            except BadEventError:
                raise  # the request's own fault: a 4xx with its reason, and no call was made for it
            except Exception as error:
                self._failed(event, span, calls, error, started)
                raise
            if span.recording:
                span.set(
                    {
                        "reaper.event_type": event.type,
                        "reaper.instance_id": outcome.instance_id,
                        "reaper.project_id": outcome.project_id,
                        "reaper.decision": outcome.outcome,
                        "reaper.reason": outcome.reason,
                        "reaper.clouddc.calls": list(outcome.calls or ()),
                        "reaper.clouddc.status_codes": status_codes(outcome.calls),
                    }
                )
            _LOG.info(
                STEP_HANDLED,
                extra={
                    "event_id": event.id,
                    "event_type": event.type,
                    "instance_id": outcome.instance_id,
                    "project_id": outcome.project_id,
                    "outcome": outcome.outcome,
                    "reason": outcome.reason,
                    "delay": outcome.delay,
                    "calls": list(outcome.calls) if outcome.calls else None,
                    "busy_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )
        return outcome

    def _failed(
        self, event: InboundEvent, span: tracing.Span, calls: list[str], error: Exception, started: float
    ) -> None:
        """A step that ends in 5xx or an exception still says what it did: the calls it made (a DELETE
        among them, perhaps) in its span and in one ``handled`` line with the step's trace context."""
        retryable = isinstance(error, RetryableError)
        instance = event.data.get("instance_id") or event.subject
        project = event.data.get("project_id") or self.settings.project_id
        outcome = "redeliver" if retryable else "error"
        status = 503 if retryable else 500
        if span.recording:
            span.set(
                {
                    "reaper.event_type": event.type,
                    "reaper.instance_id": instance if isinstance(instance, str) else None,
                    "reaper.project_id": project if isinstance(project, str) else None,
                    "reaper.decision": outcome,
                    "reaper.reason": type(error).__name__,
                    "reaper.clouddc.calls": list(calls),
                    "reaper.clouddc.status_codes": status_codes(tuple(calls)),
                    "http.response.status_code": status,
                }
            )
        message = "could not hand on; asking the source to redeliver" if retryable else "step failed"
        _LOG.warning(
            STEP_HANDLED,
            extra={
                "event_id": event.id,
                "event_type": event.type,
                "instance_id": instance if isinstance(instance, str) else None,
                "project_id": project if isinstance(project, str) else None,
                "outcome": outcome,
                "reason": f"{message}: {error}" if retryable else f"{message} ({type(error).__name__})",
                "http_status": status,
                "calls": list(calls) or None,
                "busy_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
        if isinstance(error, RetryableError):
            error.recorded = True  # the entry point need not log it again, without the step's context

    def admit(self, event: InboundEvent, caller: Caller) -> None:
        """Refuse (401) an internal event reaper did not sign, or an external one no method authenticates."""
        if event.type in catalog.INTERNAL_TYPES:
            self.signer.verify(event.type, event.id, event.subject, event.data, event.signature)
        else:
            caller.authenticate()

    def _reap(self, event: InboundEvent, now: float, calls: list[str]) -> Outcome:
        if event.type == catalog.INSTANCE_EXPIRED:
            job = self._new_job(event, now)
            decision = core.start(job, now, self.policy)
        else:
            job = catalog.job_from_data(event.data)
            if job.expected is not None:
                self.estimate.adopt(job.expected)
            # This check is no longer pending: the reads its peers share need not ask for it.
            self.watch.forget(job.project_id, job.instance_id)
            if event.type == catalog.INSTANCE_STATUS_CHECK and self.watch.was_announced(
                job.project_id, job.instance_id
            ):
                # A read shared with another check found it gone, and its result went out: no call.
                return Outcome("terminated", job.project_id, job.instance_id, reason="announced")
            action: core.Action = "status" if event.type == catalog.INSTANCE_STATUS_CHECK else "delete"
            decision = core.resume(action, job, now, self.policy)
        return self._run(decision, calls)

    def _new_job(self, event: InboundEvent, now: float) -> core.Job:
        instance_id = event.data.get("instance_id") or event.subject
        if not instance_id:
            raise BadEventError("instance-expired needs data.instance_id or a subject", status=422)
        project_id = event.data.get("project_id") or self.settings.project_id
        if not project_id:
            raise BadEventError("instance-expired needs data.project_id (CLOUDDC_PROJECT_ID is not set)", 422)
        claimed = event.data.get("expired_at")
        project_id = check_id("project_id", project_id)
        estimate, peers = self.estimate.current(), self.watch.peers(project_id, now)
        return core.Job.new(
            check_id("instance_id", instance_id),
            project_id,
            event.id,
            now,
            self.policy,
            expired_at=catalog.parse_time(claimed) if isinstance(claimed, str) else None,
            expected=estimate.seconds,
            # Aim the first check at the fleet's fastest delete only where reads are shared.
            earliest=estimate.earliest if core.reads_pay(peers, estimate, self.policy) else None,
            # Duplicates of this event at other instances name their chains differently: one wins the claim.
            claimant=secrets.token_hex(8),
        )

    def _run(self, decision: core.Decision, calls: list[str]) -> Outcome:
        token_reloaded = False
        for _ in range(_MAX_CALLS_PER_EVENT):
            match decision:
                case core.Schedule():
                    return self._schedule(decision, tuple(calls))
                case core.Finish():
                    return self._finish(decision, tuple(calls))
                case core.ReloadToken(then=then):
                    self.tokens.reload()
                    token_reloaded = True
                    decision = then
                case core.CallRead(job=job):
                    answer, records, _ = self.client.list_instances(
                        job.project_id, instance_ids=(job.instance_id,)
                    )
                    sighting = next(
                        (gate.Sighting.of(r) for r in records if r.get("id") == job.instance_id), None
                    )
                    decision = core.on_read_answer(
                        job,
                        answer,
                        sighting,
                        self.clock(),
                        self.policy,
                        self.rand,
                        token_reloaded=token_reloaded,
                    )
                    calls.append(describe("READ", answer, sighting.state if sighting else "absent"))
                case core.CallDelete(job=job):
                    claim = state.delete_claim(job.project_id, job.instance_id)
                    if not self.store.claim(claim, state.DELETE_CLAIM_SECONDS, owner=job.claimant):
                        decision = core.on_delete_claimed_elsewhere(job, self.clock(), self.policy, self.rand)
                        calls.append("CLAIM held elsewhere")
                        continue
                    answer = self.client.delete_instance(job.project_id, job.instance_id)
                    if not core.delete_settled(answer):
                        self.store.release(claim)  # refused: nothing was deleted, the retry may claim again
                    decision = core.on_delete_answer(
                        job,
                        answer,
                        self.clock(),
                        self.policy,
                        self.rand,
                        token_reloaded=token_reloaded,
                    )
                    calls.append(describe("DELETE", answer))
                case core.CallStatus(job=job, rejected=rejected):
                    answer, described = self.status.read(job, rejected)
                    decision = core.on_status_answer(
                        job,
                        answer,
                        self.clock(),
                        self.policy,
                        self.rand,
                        token_reloaded=token_reloaded,
                        rejected=rejected,
                    )
                    calls.append(described)
        # The core settles within a few calls; should it ever not, fail loudly (5xx: redelivered).
        raise RuntimeError(f"decision loop did not settle after {_MAX_CALLS_PER_EVENT} steps")

    def _schedule(self, decision: core.Schedule, calls: tuple[str, ...]) -> Outcome:
        now = self.clock()
        peers = self.watch.peers(decision.job.project_id, now)
        decision = core.keep_cadence(decision, now, peers, self.estimate.current(), self.policy)
        job = decision.job
        self.handoff.follow_up(
            _FOLLOW_UP_TYPES[decision.action],
            catalog.job_to_data(job),
            key=chain_key(job.project_id, job.instance_id, job.origin_id, job.step_key(decision.action)),
            subject=job.instance_id,
            delay=decision.delay,
        )
        if decision.action == "status" and job.deleted_at is not None:
            self.watch.wait_for(job, now + decision.delay, tracing.current())
        else:
            self.watch.forget(job.project_id, job.instance_id)
        return Outcome(
            f"scheduled-{decision.action}",
            job.project_id,
            job.instance_id,
            delay=round(decision.delay, 3),
            reason=decision.why,
            calls=calls,
        )

    def _finish(self, decision: core.Finish, calls: tuple[str, ...] | None = None) -> Outcome:
        job, result = decision.job, decision.result
        self.handoff.announce(job, result)
        if result.kind == "terminated":
            self.watch.announced(job.project_id, job.instance_id)
        else:
            self.watch.forget(job.project_id, job.instance_id)
        observed = core.timing(job, result)
        if observed is not None:
            self.estimate.learn(observed, self.policy)
        return Outcome(result.kind, job.project_id, job.instance_id, reason=result.reason, calls=calls)
