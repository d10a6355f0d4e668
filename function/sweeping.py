"""The shell of expiry sweeps: list, pick, hand batches on, and follow each batch (see ``sweep``).

Overlapping sweeps must not double-delete: a batch is not deleted by the sweep itself but handed on
as an ``instance-batch-delete`` event whose dedup key is derived from the batch's ids and the sweep
window, so two sweeps that see the same expired instances schedule the same (de-duplicated) batch;
and that event re-reads the batch right before deleting, so instances already shutting down are
followed, not deleted again (``sweep.on_batch_read``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import Any, Final, TypeVar

from function import catalog, core, state
from function.clouddc import CloudDCClient, check_id
from function.core import gate, sweep
from function.core.ids import MAX_IDS_PER_READ
from function.credentials import Credentials
from function.errors import BadEventError, RetryableError
from function.handoff import HandOff, chain_key
from function.inbound import InboundEvent
from function.outcome import Outcome
from function.settings import Settings

_LOG = logging.getLogger("reaper.sweep")
_T = TypeVar("_T")
_MAX_PAGES: Final = 1000
# Sweeps within the same window that find the same batch hand on the same (de-duplicated) batch.
SWEEP_WINDOW: Final = 900.0
_FOLLOW_UP_TYPES: Final[dict[sweep.BatchAction, str]] = {
    "batch-delete": catalog.INSTANCE_BATCH_DELETE,
    "batch-check": catalog.INSTANCE_BATCH_CHECK,
}


class Sweeper:
    """Handles ``instance-sweep`` (and its ``instance-sweep-page`` continuations) and the batch follow-ups."""

    def __init__(
        self,
        settings: Settings,
        client: CloudDCClient,
        tokens: Credentials,
        handoff: HandOff,
        policy: core.Policy,
        clock: Callable[[], float],
        rand: core.Rand,
        store: state.StateStore,
    ) -> None:
        self._store = store
        self._settings = settings
        self._client = client
        self._tokens = tokens
        self._handoff = handoff
        self._policy = policy
        self._clock = clock
        self._rand = rand

    def handle(self, event: InboundEvent) -> Outcome:
        """Dispatch one sweep-family event."""
        if event.type == catalog.INSTANCE_SWEEP:
            project = sweep_project(event.data, self._settings.project_id)
            now = self._clock()
            page = sweep.SweepPage(
                project, None, sweep_origin(event.id, now), now, now + self._policy.deadline
            )
            if not gate.project_allowed(project, self._policy.rules):
                return self._list_pages(page)  # refused there, before any lease is taken
            lease = state.sweep_lease(project)
            if not self._store.claim(lease, state.SWEEP_LEASE_SECONDS):
                _LOG.info(
                    "sweep skipped: another is listing", extra={"event_id": event.id, "project_id": project}
                )
                return Outcome("skipped", project, reason="sweep-in-progress", instances=0)
            try:
                return self._list_pages(page)
            finally:
                self._store.release(lease)
        if event.type == catalog.INSTANCE_SWEEP_PAGE:
            return self._list_pages(catalog.sweep_page_from_data(event.data))
        job = catalog.batch_from_data(event.data)
        refused = sweep.refuse_project(job, self._clock(), self._policy.rules)
        if refused is not None:
            step = refused
        elif event.type == catalog.INSTANCE_BATCH_DELETE:
            step = self._delete(job)
        else:
            step = self._check(job)
        return self._apply(job, step)

    def _list_pages(self, page: sweep.SweepPage) -> Outcome:
        """List from the page's marker, hand the expired ids on; a failed page continues later."""
        project = page.project_id
        if not gate.project_allowed(project, self._policy.rules):
            _LOG.info("sweep refused", extra={"event_id": page.origin_id, "project_id": project})
            return Outcome("skipped", project, reason="project-not-allowed", instances=0)
        now = self._clock()
        expired: list[str] = []
        marker, failed = page.marker, None
        for _ in range(_MAX_PAGES):
            answer, records, next_marker = self._list(project, marker=marker, limit=MAX_IDS_PER_READ)
            if answer.status != 200:
                failed = answer
                break
            expired += sweep.expired_ids(records, project, now, self._policy.rules)
            marker = next_marker
            if not marker:
                break
        ids = sorted(set(expired))
        batches = self._hand_on(project, ids, now)
        extra = {"event_id": page.origin_id, "project_id": project, "expired": len(ids)}
        if failed is None:
            _LOG.info("swept", extra=extra)
            return Outcome("swept", project, instances=len(ids), batches=batches)
        why = f"ListInstances answered {failed.status or failed.failure}"
        if not failed.transient:
            raise RetryableError(why)  # a 401 after the token reload, a 403: the source redelivers
        retried, plan = core.plan_retry(
            dataclasses.replace(page, marker=marker), failed, now, self._policy, self._rand
        )
        if isinstance(plan, str):
            _LOG.warning("sweep gave up", extra={**extra, "reason": plan, "error": why})
            return Outcome("abandoned", project, reason=plan, instances=len(ids), batches=batches)
        self._handoff.follow_up(
            catalog.INSTANCE_SWEEP_PAGE,
            catalog.sweep_page_to_data(retried),
            key=chain_key(project, "sweep", retried.origin_id, retried.step_key()),
            subject=project,
            delay=plan,
        )
        _LOG.info("swept in part; the listing continues", extra={**extra, "retry_in": round(plan, 3)})
        return Outcome("scheduled-sweep-page", project, delay=round(plan, 3), reason=why, instances=len(ids),
                       batches=batches)  # fmt: skip

    def _hand_on(self, project: str, ids: list[str], now: float) -> int:
        """Hand expired ids on as batch-delete events; sweeps in one window that see a batch share its key."""
        window = int(now // SWEEP_WINDOW)
        batches = sweep.batches(ids)
        for batch in batches:
            digest = hashlib.sha256(",".join(batch).encode()).hexdigest()[:24]
            origin = f"sweep-{window}-{digest}"
            job = sweep.BatchJob(
                project, batch, origin, now, now + self._policy.deadline, claimant=secrets.token_hex(8)
            )
            self._follow_up("batch-delete", job, 0.0)
        return len(batches)

    def _delete(self, job: sweep.BatchJob) -> sweep.BatchStep:
        answer, records, _ = self._list(job.project_id, instance_ids=job.instance_ids)
        read = sweep.on_batch_read(job, answer, records, self._clock(), self._policy, self._rand)
        if not read.delete or read.job is None:
            return read
        won = self._claim(job.project_id, read.delete, job.claimant)
        if not won:
            step = sweep.on_batch_claimed_elsewhere(read.job, self._clock(), self._policy, self._rand)
            return dataclasses.replace(step, results=read.results + step.results, delete=())
        answer = self._batch_delete(job.project_id, won)
        step = sweep.on_batch_delete(read.job, answer, self._clock(), self._policy, self._rand)
        if step.action == "batch-check" and step.delay == 0 and step.job is not None:
            step = self._check(step.job)  # a 400: read the states right away
        return dataclasses.replace(step, results=read.results + step.results, delete=())

    def _check(self, job: sweep.BatchJob) -> sweep.BatchStep:
        answer, records, _ = self._list(job.project_id, instance_ids=job.instance_ids)
        step = sweep.on_batch_list(job, answer, records, self._clock(), self._policy, self._rand)
        if step.delete:
            # Cleared by the gate on the read just made; the next check judges the outcome.
            won = self._claim(job.project_id, step.delete, job.claimant)
            if won:
                answer = self._batch_delete(job.project_id, won)
                _LOG.info("re-deleted", extra={"instances": list(won), "http_status": answer.status})
        return step

    def _apply(self, job: sweep.BatchJob, step: sweep.BatchStep) -> Outcome:
        for instance_id, result in step.results:
            self._handoff.announce(_instance_job(job, instance_id), result)
        if step.action is not None and step.job is not None:
            self._follow_up(step.action, step.job, step.delay)
            return Outcome(f"scheduled-{step.action}", job.project_id, instances=len(step.job.instance_ids),
                           delay=round(step.delay, 3))  # fmt: skip
        return Outcome("finished", job.project_id, instances=len(step.results))

    def _claim(self, project_id: str, ids: tuple[str, ...], owner: str | None) -> tuple[str, ...]:
        """The ids whose delete claim this batch holds now; the rest are another chain's to delete."""
        keys = [state.delete_claim(project_id, instance_id) for instance_id in ids]
        won = self._store.claim_many(keys, state.DELETE_CLAIM_SECONDS, owner)
        lost = [instance_id for instance_id, mine in zip(ids, won, strict=True) if not mine]
        if lost:
            _LOG.info("delete claims held elsewhere", extra={"project_id": project_id, "instances": lost})
        return tuple(instance_id for instance_id, mine in zip(ids, won, strict=True) if mine)

    def _batch_delete(self, project_id: str, ids: tuple[str, ...]) -> core.ApiAnswer:
        """DeleteInstances of ``ids`` (claimed); a clear refusal gives the claims back for the retry."""
        call = functools.partial(self._client.batch_delete, project_id, ids)
        answer = self._reloading_on_401(call, lambda a: a)
        if not core.delete_settled(answer):
            for instance_id in ids:
                self._store.release(state.delete_claim(project_id, instance_id))
        return answer

    def _follow_up(self, action: sweep.BatchAction, job: sweep.BatchJob, delay: float) -> None:
        self._handoff.follow_up(
            _FOLLOW_UP_TYPES[action],
            catalog.batch_to_data(job),
            key=chain_key(job.project_id, "batch", job.origin_id, job.step_key(action)),
            subject=job.instance_ids[0],
            delay=delay,
        )

    def _list(self, project_id: str, **query: Any) -> tuple[core.ApiAnswer, list[dict[str, Any]], str | None]:
        call = functools.partial(self._client.list_instances, project_id, **query)
        return self._reloading_on_401(call, lambda page: page[0])

    def _reloading_on_401(self, call: Callable[[], _T], answer_of: Callable[[_T], core.ApiAnswer]) -> _T:
        result = call()
        if answer_of(result).status == 401:
            self._tokens.reload()  # a rotated token file: once, then the answer stands
            result = call()
        return result


def _instance_job(job: sweep.BatchJob, instance_id: str) -> core.Job:
    return core.Job(
        instance_id=instance_id,
        project_id=job.project_id,
        origin_id=job.origin_id,
        started_at=job.started_at,
        deadline_at=job.deadline_at,
        deleted_at=job.deleted_at,
        checks=job.checks,
    )


def sweep_origin(event_id: str, now: float) -> str:
    """The origin of one sweep run: its event id with the sweep window folded in.

    Cloud Scheduler's job sends the same ``ce-id`` on every run: without the window, the second day's
    continuations would share the first day's keys, and the delay transport would drop them as repeats.
    A redelivery inside the window still maps to the same run. A long id is hashed, so the origin stays
    inside the 256 characters a follow-up's ``origin_event_id`` may hold.
    """
    named = event_id if len(event_id) <= 200 else hashlib.sha256(event_id.encode()).hexdigest()[:40]
    return f"{named}@{int(now // SWEEP_WINDOW)}"


def sweep_project(data: dict[str, object], default: str | None) -> str:
    """The project a sweep event names, else the configured default."""
    project = data.get("project_id") or default
    if not isinstance(project, str) or not project:
        raise BadEventError("instance-sweep needs data.project_id (CLOUDDC_PROJECT_ID is not set)", 422)
    return check_id("project_id", project)
