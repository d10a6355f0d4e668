"""The CloudDC emulator behaves like the documented API subset, with faults on demand."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from reaper.devtools.emulator.app import make_emulator_server
from reaper.devtools.emulator.fleet import Config, Fleet

TOKEN = "emulator-test-token"
H = {"X-Auth-Token": TOKEN}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Iterator[tuple[httpx.Client, Fleet, Clock]]:
    clock = Clock()
    # A controllable clock: state changes are computed, never slept for.
    fleet = Fleet(Config(token=TOKEN, termination_seconds=10, retention_seconds=5), clock=clock)
    server, _ = make_emulator_server("127.0.0.1", 0, fleet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=5) as client:
        yield client, fleet, clock
    server.shutdown()
    server.server_close()


def test_delete_runs_the_state_machine(api: tuple[httpx.Client, Fleet, Clock]) -> None:
    """running -> shutting-down -> terminated after the termination time -> gone after retention."""
    client, fleet, clock = api
    fleet.add({"id": "i-1", "project_id": "p"})
    assert client.delete("/v1/p/instances/i-1", headers=H).status_code == 204
    assert client.get("/v1/p/instances/i-1/status", headers=H).json() == {"state": "shutting-down"}
    assert client.delete("/v1/p/instances/i-1", headers=H).status_code == 204
    clock.now += 10
    assert client.get("/v1/p/instances/i-1/status", headers=H).json() == {"state": "terminated"}
    assert client.delete("/v1/p/instances/i-1", headers=H).status_code == 400
    clock.now += 5
    assert client.get("/v1/p/instances/i-1/status", headers=H).status_code == 404
    assert client.delete("/v1/p/instances/i-1", headers=H).status_code == 404


def test_failing_and_stuck_deletes(api: tuple[httpx.Client, Fleet, Clock]) -> None:
    """outcome=fail ends in failed (or error); outcome=stuck stays shutting_down."""
    client, fleet, clock = api
    fleet.config.update({"failed_spelling": "error", "shutting_down_spelling": "shutting_down"})
    fleet.add({"id": "i-f", "project_id": "p", "outcome": "fail"})
    fleet.add({"id": "i-s", "project_id": "p", "outcome": "stuck"})
    fleet.add({"id": "i-b", "project_id": "p", "state": "reinstalling"})
    for instance in ("i-f", "i-s"):
        client.delete(f"/v1/p/instances/{instance}", headers=H)
    clock.now += 100
    assert client.get("/v1/p/instances/i-f/status", headers=H).json()["state"] == "error"
    assert client.get("/v1/p/instances/i-s/status", headers=H).json()["state"] == "shutting_down"
    assert client.delete("/v1/p/instances/i-b", headers=H).status_code == 400
    assert client.delete("/v1/p/instances/i-f", headers=H).status_code == 204


def test_list_pages_filters_and_limits(api: tuple[httpx.Client, Fleet, Clock]) -> None:
    """ListInstances pages with marker, filters by ids and state, refuses more than 100 ids."""
    client, fleet, _ = api
    for n in range(5):
        fleet.add(
            {"id": f"i-{n}", "project_id": "p", "metadata": {"reaper-expires-at": "2020-01-01T00:00:00Z"}}
        )
    fleet.add({"id": "i-other", "project_id": "q"})
    first = client.get("/v1/p/instances", params={"limit": 2}, headers=H).json()
    assert [i["id"] for i in first["instances"]] == ["i-0", "i-1"]
    assert first["count"] == 5
    assert first["instances"][0]["metadata"] == {"reaper-expires-at": "2020-01-01T00:00:00Z"}
    second = client.get(
        "/v1/p/instances", params={"limit": 2, "marker": first["page_info"]["next_marker"]}, headers=H
    )
    assert [i["id"] for i in second.json()["instances"]] == ["i-2", "i-3"]
    some = client.get("/v1/p/instances", params={"instance_id": "i-1,i-4,i-9"}, headers=H).json()
    assert [i["id"] for i in some["instances"]] == ["i-1", "i-4"]
    assert some["page_info"]["next_marker"] is None
    client.delete("/v1/p/instances/i-0", headers=H)
    stopping = client.get("/v1/p/instances", params={"instance_state": "shutting-down"}, headers=H).json()
    assert [i["id"] for i in stopping["instances"]] == ["i-0"]
    too_many = ",".join(f"x{n}" for n in range(101))
    assert client.get("/v1/p/instances", params={"instance_id": too_many}, headers=H).status_code == 400
    assert client.get("/v1/p/instances").status_code == 401


def test_batch_delete(api: tuple[httpx.Client, Fleet, Clock]) -> None:
    """batch-delete takes 1 to 50 ids and answers 202."""
    client, fleet, _ = api
    for n in range(3):
        fleet.add({"id": f"i-{n}", "project_id": "p"})
    accepted = client.post(
        "/v1/p/instances/batch-delete", json={"instance_id_set": ["i-0", "i-1"]}, headers=H
    )
    assert accepted.status_code == 202
    states = {i["id"]: i["state"] for i in fleet.snapshot()}
    assert states == {"i-0": "shutting-down", "i-1": "shutting-down", "i-2": "running"}
    too_many = {"instance_id_set": [f"i-{n}" for n in range(51)]}
    assert client.post("/v1/p/instances/batch-delete", json=too_many, headers=H).status_code == 400
    assert client.post("/v1/p/instances/batch-delete", json={}, headers={}).status_code == 401
    not_an_object = ["i-0"]
    assert client.post("/v1/p/instances/batch-delete", json=not_an_object, headers=H).status_code == 400


def test_iam_tokens_issue_and_expire(api: tuple[httpx.Client, Fleet, Clock]) -> None:
    """IAM issues long tokens in X-Subject-Token; expiring them makes every call 401."""
    client, fleet, _clock = api
    fleet.add({"id": "i-1", "project_id": "p"})
    body = {"auth": {"identity": {"methods": ["password"]}, "scope": {"project": {"id": "p"}}}}
    issued = client.post("/v3/auth/tokens", json=body)
    assert issued.status_code == 201
    token = issued.headers["X-Subject-Token"]
    assert len(token) > 1000
    assert "expires_at" in issued.json()["token"]
    assert client.get("/v1/p/instances/i-1/status", headers={"X-Auth-Token": token}).status_code == 200
    assert client.post("/v3/auth/tokens", json={}).status_code == 400
    client.post("/admin/tokens/expire")
    # An issued token that ran out: "must be updated"; the static one is simply refused.
    for header, code in ((token, "APIGW.0307"), (TOKEN, "APIGW.0301")):
        answer = client.get("/v1/p/instances/i-1/status", headers={"X-Auth-Token": header})
        assert answer.status_code == 401
        assert answer.json()["error_code"] == code


def test_admin_api(api: tuple[httpx.Client, Fleet, Clock]) -> None:
    """Admin endpoints add instances, show calls, change config and reset."""
    client, _fleet, _ = api
    added = client.post(
        "/admin/instances", json=[{"id": "i-1", "project_id": "p"}, {"id": "i-2", "project_id": "p"}]
    )
    assert added.status_code == 201
    assert (
        client.post("/admin/instances", json={"id": "i-3", "project_id": "p", "outcome": "boom"}).status_code
        == 400
    )
    assert client.post("/admin/instances", json={"project_id": "p"}).status_code == 400
    client.get("/v1/p/instances/i-1/status", headers=H)
    calls = client.get("/admin/calls").json()
    assert [(c["call"], c["instance_id"], c["status"]) for c in calls] == [("status", "i-1", 200)]
    assert client.post("/admin/config", json={"latency": 0.0}).json()["token"] == "***"
    assert client.post("/admin/config", json={"nonsense": 1}).status_code == 400
    assert len(client.get("/admin/instances").json()) == 2
    assert client.get("/healthz").json() == {"ok": True}
    client.post("/admin/reset")
    assert client.get("/admin/instances").json() == []
    assert client.get("/admin/calls").json() == []


def test_any_token_when_none_configured() -> None:
    """Without a configured token any non-empty token works, until tokens are expired."""
    fleet = Fleet(Config())
    assert fleet.token_valid("anything")
    assert not fleet.token_valid("")
    fleet.expire_tokens()
    assert not fleet.token_valid("anything")
