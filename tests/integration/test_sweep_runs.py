"""Issue 27: a scheduler that repeats its event id every run (Cloud Scheduler's job) still gets every page.

The sweep runs in-process here, with its clock set a day apart, against the emulator over HTTP; the delay
transport is a recorder that, like every real one, drops a follow-up whose dedup key it has already taken.
"""

from __future__ import annotations

import uuid
from typing import Any

from cloudevents.http import CloudEvent

from function import catalog, credentials
from function.clouddc import CloudDCClient
from function.handoff import HandOff
from function.inbound import InboundEvent
from function.policy import policy_from
from function.results import ResultSink
from function.secret import Secret
from function.settings import Settings
from function.signing import EventSigner
from function.state import MemoryStore
from function.sweeping import Sweeper, sweep_origin
from tests.conftest import EVENT_KEY, TOKEN, Emulator

DAY = 24 * 3600.0


class DedupingTransport:
    """Keeps what it is handed, once per dedup key (as the local delay service and Cloud Tasks do)."""

    def __init__(self) -> None:
        self.kept: dict[str, CloudEvent] = {}
        self.dropped: list[str] = []

    def schedule(self, event: CloudEvent, delay: float, dedup_key: str) -> None:
        if dedup_key in self.kept:
            self.dropped.append(dedup_key)
        else:
            self.kept[dedup_key] = event

    def close(self) -> None:
        """Nothing to release."""


def sweep_once(emulator: Emulator, project: str, transport: DedupingTransport, now: float) -> list[str]:
    """One run of the job's sweep (event id ``daily-sweep``) whose second page fails: the continuations
    it hands on."""
    settings = Settings.from_env(
        {
            "CLOUDDC_ENDPOINT": emulator.url,
            "CLOUDDC_AUTH_TOKEN": TOKEN,
            "CLOUDDC_PROJECT_ID": project,
            "REAPER_EVENT_KEY": EVENT_KEY,
            "REAPER_INBOUND_AUTH": "platform",
        }
    )
    tokens = credentials.from_settings(settings)
    handoff = HandOff(transport, ResultSink(None), "/reaper", lambda: now, EventSigner(Secret(EVENT_KEY)))
    client = CloudDCClient(emulator.url, tokens)
    sweeper = Sweeper(
        settings,
        client,
        tokens,
        handoff,
        policy_from(settings),
        lambda: now,
        lambda: 0.5,
        MemoryStore(),
    )
    before = set(transport.kept)
    emulator.http.post("/admin/config", json={"paged_list_faults": [{}, {"status": 500}]}).raise_for_status()
    try:
        event = InboundEvent(
            "daily-sweep", catalog.INSTANCE_SWEEP, "/scheduler", None, {"project_id": project}
        )
        outcome = sweeper.handle(event)
    finally:
        emulator.http.post("/admin/config", json={"paged_list_faults": []}).raise_for_status()
        client.close()
        handoff.sink.close()
    assert outcome.outcome == "scheduled-sweep-page", outcome
    return [key for key in transport.kept if key not in before]


def test_the_same_event_id_on_two_days_continues_both_sweeps(emulator: Emulator) -> None:
    """Day one's and day two's continuations get keys of their own: neither is dropped as a repeat."""
    project = f"runs-{uuid.uuid4().hex[:8]}"
    specs: list[dict[str, Any]] = [{"id": f"r{n:03d}", "project_id": project} for n in range(150)]
    emulator.http.post("/admin/instances", json=specs).raise_for_status()
    transport = DedupingTransport()
    first = sweep_once(emulator, project, transport, 1_800_000_000.0)
    second = sweep_once(emulator, project, transport, 1_800_000_000.0 + DAY)
    assert len(first) == len(second) == 1
    assert first != second
    assert transport.dropped == []


def test_a_redelivery_inside_the_window_is_the_same_run() -> None:
    """The same event again minutes later keeps its origin (its continuations de-duplicate); a long id
    is hashed to fit a follow-up's ``origin_event_id``."""
    assert sweep_origin("daily-sweep", 1_800_000_000.0) == sweep_origin("daily-sweep", 1_800_000_300.0)
    assert sweep_origin("daily-sweep", 1_800_000_000.0) != sweep_origin("daily-sweep", 1_800_000_000.0 + DAY)
    assert len(sweep_origin("x" * 256, 0.0)) <= 256
