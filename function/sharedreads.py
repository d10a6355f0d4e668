"""Status reads shared by the deletes this process watches: one ListInstances answers many checks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from function import core, tracing
from function.clouddc import CloudDCClient
from function.deletetimes import DeleteTimes
from function.errors import HandOffError
from function.jsonlog import SHARED_READ_ANNOUNCED
from function.outcome import describe
from function.watch import Reading, Watch

_LOG = logging.getLogger("reaper.decisions")


@dataclass
class SharedStatus:
    """Answers a check's status read, from a fresh shared reading, one shared read, or its own call."""

    client: CloudDCClient
    watch: Watch
    estimate: DeleteTimes
    policy: core.Policy
    clock: Callable[[], float]
    rand: Callable[[], float]
    finish: Callable[[core.Finish], object]  # announces a peer's result (the handler's own path)

    def read(self, job: core.Job, rejected: core.ApiAnswer | None) -> tuple[core.ApiAnswer, str]:
        """ShowInstanceStatus, or a ListInstances read shared with the other deletes this process watches."""
        now = self.clock()
        if rejected is None and self.watch.peers(job.project_id, now).count:
            max_age = core.reading_max_age(self.estimate.current(), self.policy)
            reading = self.watch.reading(job.project_id, job.instance_id, now, max_age)
            if reading is not None:
                answer = reading.answer(job.instance_id)
                return answer, f"SHARED {answer.state or 'absent'}"
            ids = self.watch.batch(job.project_id, job.instance_id)
            if len(ids) > 1:  # else the peers' checks were handled meanwhile
                return self._read_shared(job, ids, now)
        answer = self.client.show_status(job.project_id, job.instance_id)
        return answer, describe("STATUS", answer)

    def _read_shared(self, job: core.Job, ids: tuple[str, ...], now: float) -> tuple[core.ApiAnswer, str]:
        """One ListInstances read of ``ids`` (``job``'s first): its answer for ``job``, the rest settled."""
        answer, records, _ = self.client.list_instances(job.project_id, instance_ids=ids)
        if answer.status != 200:
            return answer, describe("LIST", answer)
        states = {r["id"]: _text(r.get("state")) for r in records if r.get("id") in ids}
        reading = Reading(now, frozenset(ids), states)
        self.watch.remember(job.project_id, reading)
        self._settle_peers(job, reading)
        answer = reading.answer(job.instance_id)
        return answer, f"LIST 200 {answer.state or 'absent'} ({len(ids)} ids)"

    def _settle_peers(self, job: core.Job, reading: Reading) -> None:
        """Announce the watched deletes a shared read found gone (best effort: their own checks remain)."""
        for peer, step in self.watch.gone(job.project_id, reading, but=job.instance_id):
            answer = reading.answer(peer.instance_id)
            decision = core.on_status_answer(
                peer, answer, reading.at, self.policy, self.rand, token_reloaded=False
            )
            if not isinstance(decision, core.Finish):  # gone is final (tests/integration/test_watch.py)
                continue
            with tracing.active(step) if step else contextlib.nullcontext():
                try:
                    self.finish(decision)
                except HandOffError as error:
                    # The sink is down: the rest wait for their own checks rather than each meet it.
                    _LOG.warning(
                        "results of a shared read not announced; their own checks will",
                        extra={"instance_id": peer.instance_id, "error": str(error)},
                    )
                    return
                # In the delete's own trace, as a step of its timeline (``reaper explain``).
                _LOG.info(
                    SHARED_READ_ANNOUNCED,
                    extra={
                        "instance_id": peer.instance_id,
                        "project_id": peer.project_id,
                        "event_type": "shared read",
                        "outcome": decision.result.kind,
                        "reason": f"read by the check of {job.instance_id}",
                    },
                )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
