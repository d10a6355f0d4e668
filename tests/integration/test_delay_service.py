"""The local delay service: durable, de-duplicating, due-time ordered, retrying deliveries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cloudevents.http import CloudEvent
from werkzeug.serving import BaseWSGIServer

from function.errors import HandOffError
from function.schedulers.local import LocalScheduler
from reaper.companions.delay import serve
from reaper.companions.delay.allowlist import is_loopback, target_allowed
from reaper.companions.delay.api import create_app
from reaper.companions.delay.dispatcher import Dispatcher
from reaper.companions.delay.store import DelayStore
from reaper.devtools.procs import free_port
from reaper.servers import threaded_server
from tests.conftest import Receiver, wait_until


@pytest.fixture
def target(receiver: Receiver) -> Receiver:
    return receiver


@dataclass
class DelayService:
    """The service's parts, served in this process so a test can read its store."""

    store: DelayStore
    server: BaseWSGIServer


@pytest.fixture
def service(tmp_path: Path) -> Iterator[DelayService]:
    store = DelayStore(tmp_path / "d.sqlite3")
    dispatcher = Dispatcher(store)
    server = threaded_server("127.0.0.1", 0, create_app(store, dispatcher, ("http://127.0.0.1:*/",)))
    dispatcher.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield DelayService(store, server)
    server.shutdown()
    thread.join(10)
    dispatcher.stop()
    store.close()


def event(event_id: str) -> CloudEvent:
    return CloudEvent({"type": "instance-status-check", "source": "/t", "id": event_id}, {"n": 1})


def scheduler(svc: DelayService, target: Receiver) -> LocalScheduler:
    return LocalScheduler(f"http://127.0.0.1:{svc.server.server_port}", target.url)


def test_events_arrive_in_due_order_as_structured_cloudevents(
    service: DelayService, target: Receiver
) -> None:
    """A later-scheduled shorter delay is delivered first; bodies are structured CloudEvents."""
    local = scheduler(service, target)
    local.schedule(event("slow"), 1.0, "k-slow")
    local.schedule(event("fast"), 0.2, "k-fast")
    wait_until(lambda: len(target.ids()) == 2, 10)
    assert target.ids() == ["fast", "slow"]
    assert target.received[0][1] == "application/cloudevents+json"


def test_duplicate_dedup_key_is_ignored(service: DelayService, target: Receiver) -> None:
    """A second schedule with the same dedup key delivers nothing more."""
    local = scheduler(service, target)
    local.schedule(event("one"), 0.1, "same-key")
    local.schedule(event("two"), 0.1, "same-key")
    wait_until(lambda: target.ids(), 10)
    time.sleep(0.5)
    assert target.ids() == ["one"]
    assert service.store.counts() == {"delivered": 1}


def test_non_2xx_is_retried_with_backoff(service: DelayService, target: Receiver) -> None:
    """A 503 and a 500 from the target are retried until a 2xx."""
    target.script = [503, 500]
    scheduler(service, target).schedule(event("retry-me"), 0, "k-retry")
    wait_until(lambda: target.ids(), 15)
    assert target.ids() == ["retry-me"]


def test_schedule_requests_are_validated(service: DelayService) -> None:
    """Malformed schedule requests get 400 with a reason."""
    url = f"http://127.0.0.1:{service.server.server_port}/v1/events"
    good = {
        "target": "http://127.0.0.1:1/",
        "delay_seconds": 1,
        "dedup_key": "k",
        "event": {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"},
    }
    for change in (
        {"target": "file:///etc/passwd"},
        {"target": "http://169.254.169.254/latest/meta-data/"},  # the metadata service: not an allowed target
        {"target": "http:///no-host"},
        {"target": "http://127.0.0.1.evil.example:80/"},
        {"delay_seconds": -1},
        {"delay_seconds": 31 * 24 * 3600},
        {"delay_seconds": True},
        {"dedup_key": ""},
        {"event": {"id": "1"}},
    ):
        response = httpx.post(url, json={**good, **change})
        assert response.status_code == 400, change
        assert response.json()["error"]
    assert httpx.post(url, content=b"[]").status_code == 400
    assert httpx.post(url, content=b"[" * 100_000).status_code == 400
    assert httpx.post(url, content=b'{"target": "x", "target": "y"}').status_code == 400
    assert httpx.post(url, content=b" " * (300 * 1024)).status_code == 413
    assert httpx.get(url).json()["counts"] == {}
    assert httpx.get(url.replace("/v1/events", "/healthz")).json() == {"ok": True}


def test_scheduler_reports_hand_off_failures(service: DelayService, target: Receiver) -> None:
    """An unreachable or refusing delay service raises HandOffError (the handler answers 5xx)."""
    with pytest.raises(HandOffError, match="unreachable"):
        LocalScheduler(f"http://127.0.0.1:{free_port()}", target.url).schedule(event("x"), 1, "k")
    refusing = LocalScheduler(f"http://127.0.0.1:{service.server.server_port}", "not-a-url")
    with pytest.raises(HandOffError, match="400"):
        refusing.schedule(event("x"), 1, "k")


def test_store_survives_reopen_and_gives_up(tmp_path: Path) -> None:
    """Pending rows survive a reopen; abandoned and pruned rows behave as documented."""
    path = tmp_path / "s.sqlite3"
    store = DelayStore(path)
    assert store.add("k1", "http://t/", b"{}", due_at=10, now=0)
    assert not store.add("k1", "http://t/", b"{}", due_at=10, now=0)
    store.close()
    store = DelayStore(path)
    assert store.next_due() == 10
    [claimed] = store.claim_due(now=11, limit=10)
    assert store.claim_due(now=11, limit=10) == []  # held while in flight
    store.give_up(claimed.dedup_key, 500, "boom")
    assert store.counts() == {"dead": 1}
    assert store.prune(older_than=1) == 1
    assert store.next_due() is None
    store.close()


def test_refused_events_are_dead_lettered_not_retried(service: DelayService, target: Receiver) -> None:
    """A 4xx from the function is final: kept as dead and listed, delivered once; 429 is still retried."""
    target.script = [422, 429]
    local = scheduler(service, target)
    local.schedule(event("refused"), 0, "k-refused")
    overview = f"http://127.0.0.1:{service.server.server_port}/v1/events"
    dead = wait_until(lambda: httpx.get(overview).json()["dead"], 10, "the dead letter")
    assert [(d["dedup_key"], d["last_status"], d["attempts"]) for d in dead] == [("k-refused", 422, 1)]
    local.schedule(event("throttled"), 0, "k-throttled")
    wait_until(lambda: target.ids() == ["throttled"], 10, "the retried delivery")


def test_database_files_are_private(tmp_path: Path) -> None:
    """The SQLite file and its WAL/SHM companions are created 0600."""
    store = DelayStore(tmp_path / "p.sqlite3")
    store.add("k", "http://t/", b"{}", due_at=1, now=0)
    files = sorted(tmp_path.glob("p.sqlite3*"))
    assert [f.name for f in files] == ["p.sqlite3", "p.sqlite3-shm", "p.sqlite3-wal"]
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}
    store.close()


def test_target_allowlist_matching() -> None:
    """Targets match an allowed URL's scheme, host, port (or ':*') and path prefix, nothing looser."""
    allowed = ("http://127.0.0.1:8080/fn/", "http://localhost:*/")
    assert target_allowed("http://127.0.0.1:8080/fn/", allowed)
    assert target_allowed("http://127.0.0.1:8080/fn/invoke", allowed)
    assert target_allowed("http://localhost:9999/", allowed)
    for refused in ("http://127.0.0.1:8081/fn/", "https://127.0.0.1:8080/fn/", "http://127.0.0.1:8080/other",
                    "http://user@127.0.0.2:8080/fn/", "http://127.0.0.1:99999/", "nonsense"):  # fmt: skip
        assert not target_allowed(refused, allowed), refused


def test_loopback_only() -> None:
    """The delay service refuses to listen beyond loopback."""
    assert is_loopback("127.0.0.1")
    assert is_loopback("localhost")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("example.com")
    with pytest.raises(ValueError, match="loopback"):
        serve("0.0.0.0", 0, ":memory:", (), threads=1)
