"""Issue 26: a burst against a rate-limited API, from three instances sharing one budget through Redis.

The emulator plays Huawei Cloud's gateway: beyond 20 calls in any second per project it answers 429
``APIG.0308`` with no Retry-After. reaper, told the limit (``REAPER_MAX_CALLS_PER_SECOND=20``), keeps under
it across the three instances, and everything is still reaped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from cloudevents.http import CloudEvent

from tests.conftest import REDIS_URL, Emulator, FunctionFactory, Sink, new_id, wait_until
from tests.integration.test_fleet import at_once

pytestmark = pytest.mark.integration
LIMIT = 20


@pytest.fixture
def rate_limited(emulator: Emulator) -> Iterator[Emulator]:
    """The emulator with its gateway limit on, for this test only."""
    emulator.http.post("/admin/config", json={"rate_limit": LIMIT}).raise_for_status()
    try:
        yield emulator
    finally:
        emulator.http.post("/admin/config", json={"rate_limit": 0}).raise_for_status()


def test_a_burst_from_three_instances_stays_inside_a_shared_budget(
    rate_limited: Emulator, function_factory: FunctionFactory, sink: Sink, redis_up: None
) -> None:
    """30 instances expiring at once, their events spread over three instances: all reaped, and at most
    5 % of the calls reaper made were answered 429."""
    project = f"budget-{uuid.uuid4().hex[:8]}"
    fleet = [
        function_factory(
            target="handle_http",
            signature="http",
            REAPER_STATE_URL=REDIS_URL,
            REAPER_ALLOWED_PROJECTS=project,
            REAPER_MAX_CALLS_PER_SECOND=str(LIMIT),
        )
        for _ in range(3)
    ]
    instances = [new_id("burst") for _ in range(30)]
    specs = [{"id": i, "project_id": project, "termination_seconds": 2} for i in instances]
    rate_limited.http.post("/admin/instances", json=specs).raise_for_status()

    def expiring(n: int, instance: str) -> Callable[[], None]:
        event = CloudEvent(
            {"type": "instance-expired", "source": "/tests/lease", "id": new_id("ev")},
            {"instance_id": instance, "project_id": project},
        )
        return lambda: answers.append(fleet[n % 3].send(event).status_code)

    answers: list[int] = []
    at_once([expiring(n, i) for n, i in enumerate(instances)])
    assert answers == [200] * len(instances)
    wait_until(lambda: all(sink.for_instance(i) for i in instances), 120, "30 results")
    assert {sink.for_instance(i)[0]["type"] for i in instances} == {"instance-terminated"}
    calls = [c for c in rate_limited.calls() if c["project_id"] == project]
    throttled = [c for c in calls if c["status"] == 429]
    assert len(throttled) <= 0.05 * len(calls), (len(throttled), len(calls))
