"""The imperative shell around the core: run one event's decisions against the real adapters.

A handler's wall time is its API calls and nothing else: waits leave as delayed events.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from function import catalog, core
from function.clouddc import CloudDCClient, check_id
from function.credentials import TokenSource
from function.errors import BadEventError
from function.inbound import InboundEvent
from function.results import ResultSink
from function.schedulers import Scheduler
from function.settings import Settings

_LOG = logging.getLogger("reaper.decisions")
# DELETE, status after a 400, token reload, re-delete...: the core needs at most a handful.
_MAX_CALLS_PER_EVENT: Final = 6
_FOLLOW_UP_TYPES: Final[dict[core.Action, str]] = {
    "status": catalog.INSTANCE_STATUS_CHECK,
    "delete": catalog.INSTANCE_DELETE_RETRY,
}


def policy_from(settings: Settings) -> core.Policy:
    """The core's policy for these settings."""
    return core.Policy(
        check_delay=settings.check_delay,
        check_max_delay=settings.check_max_delay,
        deadline=settings.deadline,
        dry_run=settings.dry_run,
        max_retries=settings.max_retries,
    )


@dataclass(frozen=True)
class Outcome:
    """What handling one event led to; the entry points turn it into an HTTP answer."""

    outcome: str
    instance_id: str
    project_id: str
    delay: float | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The response body."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class Reaper:
    """Handles one inbound event at a time (thread-safe: it holds no per-event state)."""

    settings: Settings
    client: CloudDCClient
    tokens: TokenSource
    scheduler: Scheduler
    sink: ResultSink
    clock: Callable[[], float] = time.time
    rand: Callable[[], float] = field(default=random.random)

    def __post_init__(self) -> None:
        self.policy = policy_from(self.settings)

    def handle(self, event: InboundEvent) -> Outcome:
        """Decide and act on one event; raises ``BadEventError`` or ``RetryableError``."""
        started = time.perf_counter()
        catalog.validate(event.type, event.data)
        now = self.clock()
        if event.type == catalog.INSTANCE_EXPIRED:
            job = self._new_job(event, now)
            decision = core.start(job, now, self.policy)
        else:
            job = catalog.job_from_data(event.data)
            action: core.Action = "status" if event.type == catalog.INSTANCE_STATUS_CHECK else "delete"
            decision = core.resume(action, job, now)
        outcome = self._run(event, decision)
        _LOG.info(
            "handled",
            extra={
                "event_id": event.id,
                "event_type": event.type,
                "instance_id": outcome.instance_id,
                "project_id": outcome.project_id,
                "outcome": outcome.outcome,
                "reason": outcome.reason,
                "busy_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
        return outcome

    def _new_job(self, event: InboundEvent, now: float) -> core.Job:
        instance_id = event.data.get("instance_id") or event.subject
        if not instance_id:
            raise BadEventError("instance-expired needs data.instance_id or a subject", status=422)
        project_id = event.data.get("project_id") or self.settings.project_id
        if not project_id:
            raise BadEventError("instance-expired needs data.project_id (CLOUDDC_PROJECT_ID is not set)", 422)
        return core.Job.new(
            check_id("instance_id", instance_id),
            check_id("project_id", project_id),
            event.id,
            now,
            self.policy,
        )

    def _run(self, event: InboundEvent, decision: core.Decision) -> Outcome:
        token_reloaded = False
        for _ in range(_MAX_CALLS_PER_EVENT):
            match decision:
                case core.Schedule():
                    return self._schedule(event, decision)
                case core.Finish():
                    return self._finish(event, decision)
                case core.ReloadToken(then=then):
                    self.tokens.reload()
                    token_reloaded = True
                    decision = then
                case core.CallDelete(job=job):
                    answer = self.client.delete_instance(job.project_id, job.instance_id)
                    decision = core.on_delete_answer(
                        job,
                        answer,
                        self.clock(),
                        self.policy,
                        self.rand,
                        token_reloaded=token_reloaded,
                    )
                    self._log_call(event, "DELETE", job, answer, decision)
                case core.CallStatus(job=job, rejected=rejected):
                    answer = self.client.show_status(job.project_id, job.instance_id)
                    decision = core.on_status_answer(
                        job,
                        answer,
                        self.clock(),
                        self.policy,
                        self.rand,
                        token_reloaded=token_reloaded,
                        rejected=rejected,
                    )
                    self._log_call(event, "STATUS", job, answer, decision)
        # Unreachable with the current core; if it ever loops, hand on rather than spin.
        job = _job_of(decision)
        return self._schedule(event, core.Schedule("status", job, self.policy.check_delay, "loop"))

    def _schedule(self, event: InboundEvent, decision: core.Schedule) -> Outcome:
        job = decision.job
        follow_up_type = _FOLLOW_UP_TYPES[decision.action]
        follow_up = catalog.make_event(
            follow_up_type,
            catalog.job_to_data(job),
            key=_chain_key(job, job.step_key(decision.action)),
            source=self.settings.event_source,
            subject=job.instance_id,
            now=self.clock(),
        )
        self.scheduler.schedule(follow_up, decision.delay, dedup_key=follow_up["id"])
        return Outcome(
            f"scheduled-{decision.action}",
            job.instance_id,
            job.project_id,
            delay=round(decision.delay, 3),
            reason=decision.why,
        )

    def _finish(self, event: InboundEvent, decision: core.Finish) -> Outcome:
        job, result = decision.job, decision.result
        announcement = catalog.make_event(
            catalog.RESULT_TYPES[result.kind],
            catalog.result_to_data(job, result),
            key=_chain_key(job, "result"),
            source=self.settings.event_source,
            subject=job.instance_id,
            now=result.at,
        )
        self.sink.emit(announcement)
        return Outcome(result.kind, job.instance_id, job.project_id, reason=result.reason)

    @staticmethod
    def _log_call(
        event: InboundEvent, call: str, job: core.Job, answer: core.ApiAnswer, decision: core.Decision
    ) -> None:
        _LOG.info(
            "decision",
            extra={
                "event_id": event.id,
                "instance_id": job.instance_id,
                "step": call,
                "http_status": answer.status,
                "state": answer.state,
                "failure": answer.failure,
                "decision": type(decision).__name__,
            },
        )


def _chain_key(job: core.Job, step: str) -> str:
    return f"{job.project_id}/{job.instance_id}/{job.origin_id}/{step}"


def _job_of(decision: core.Decision) -> core.Job:
    if isinstance(decision, core.ReloadToken):
        return decision.then.job
    return decision.job
