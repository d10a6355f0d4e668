"""Hand work on: follow-ups to the delay transport, results to the sink, both with deterministic ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from function import catalog, core, state, tracing
from function.errors import HandOffError
from function.results import ResultSink
from function.schedulers import Scheduler
from function.signing import EventSigner


def chain_key(project_id: str, instance_id: str, origin_id: str, step: str) -> str:
    """The key of one step of one chain: the same step computed twice gives the same key."""
    return f"{project_id}/{instance_id}/{origin_id}/{step}"


def result_key(job: core.Job, result: core.Result) -> str:
    """The key of a result event's id: one id per instance for its deletion, however many chains saw it.

    An instance terminates once, so ``instance-terminated`` derives from the instance alone: overlapping
    sweeps, a sweep and an expiry event, or a redelivered step all announce the same id. A skip or a
    failure is the outcome of one attempt (a later attempt may end differently), so it keeps its origin.
    """
    if result.kind == "terminated":
        return f"{job.project_id}/{job.instance_id}/terminated"
    return chain_key(job.project_id, job.instance_id, job.origin_id, "result")


class HandOff:
    """Builds outgoing CloudEvents and passes them to the scheduler or the sink."""

    def __init__(
        self,
        scheduler: Scheduler,
        sink: ResultSink,
        source: str,
        clock: Callable[[], float],
        signer: EventSigner,
        store: state.StateStore | None = None,
    ) -> None:
        self.store = store if store is not None else state.MemoryStore()
        self.scheduler = scheduler
        self.sink = sink
        self._source = source
        self._clock = clock
        self._signer = signer
        self._transport = type(scheduler).__name__.removesuffix("Scheduler").lower() or "scheduler"

    def follow_up(
        self, event_type: str, data: dict[str, Any], *, key: str, subject: str, delay: float
    ) -> str:
        """Schedule a signed self-event after ``delay`` seconds; its id doubles as the dedup key."""
        event = catalog.make_event(
            event_type, data, key=key, source=self._source, subject=subject, now=self._clock()
        )
        for name, value in tracing.outgoing(next_step=True).items():
            event[name] = value
        self._signer.sign(event)
        try:
            self.scheduler.schedule(event, delay, dedup_key=event["id"])
        except HandOffError:
            tracing.telemetry().count_hand_off_failure("follow-up")
            raise
        tracing.telemetry().count_follow_up(self._transport)
        return str(event["id"])

    def announce(self, job: core.Job, result: core.Result) -> None:
        """Emit the result event for one instance (``HandOffError`` when the sink is down)."""
        event = catalog.make_event(
            catalog.RESULT_TYPES[result.kind],
            catalog.result_to_data(job, result),
            key=result_key(job, result),
            source=self._source,
            subject=job.instance_id,
            now=result.at,
        )
        for name, value in tracing.outgoing(next_step=False).items():
            event[name] = value
        claim = state.result_claim(str(event["id"]))
        if not self.store.claim(claim, state.RESULT_CLAIM_SECONDS):
            return  # delivered already, by this process or another instance: one delivery per result id
        try:
            self.sink.emit(event)
        except HandOffError:
            self.store.release(claim)  # the step is redelivered and announces it again
            tracing.telemetry().count_hand_off_failure("result")
            raise
        tracing.telemetry().count_result(result.kind, result.reason)
