"""Real parts on loopback: the emulator, the delay service and functions-framework as processes."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from werkzeug.wrappers import Request, Response

from reaper.devtools.procs import Process, free_port, function_command, reaper_command, stop_all
from reaper.devtools.sink import serve_sink
from reaper.servers import threaded_server
from reaper.tools.send import sign

PROJECT = "proj-test"
TOKEN = "tok-" + secrets.token_hex(24)
EVENT_KEY = "evk-" + secrets.token_hex(24)
ANY_LOOPBACK = "http://127.0.0.1:*/"  # the delay service delivers to every test function
WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
# The real redis-server the fleet tests share (.ci/run starts it when it is not answering).
REDIS_URL = "redis://127.0.0.1:6379/0"


def webhook_signed(headers: Mapping[str, str], body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """``headers`` plus a fresh Standard Webhooks signature over ``body`` (what a trusted sender adds)."""
    return sign(dict(headers), body, "webhook", secret=secret, url="")


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (tests may wait; handlers may not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def new_id(prefix: str = "i") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Emulator:
    """Client of the emulator process's admin API."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.url = process.url
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def add(self, instance_id: str, **spec: Any) -> str:
        self.http.post(
            "/admin/instances", json={"id": instance_id, "project_id": PROJECT, **spec}
        ).raise_for_status()
        return instance_id

    def calls(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        calls = self.http.get("/admin/calls").json()
        return [c for c in calls if instance_id is None or c["instance_id"] == instance_id]

    def touching(self, instance_id: str) -> list[dict[str, Any]]:
        """Every call that named the instance: in its path, or among a list/batch call's ids."""
        return [c for c in self.calls() if c["instance_id"] == instance_id or instance_id in (c["ids"] or [])]

    def state(self, instance_id: str) -> str | None:
        for instance in self.http.get("/admin/instances").json():
            if instance["id"] == instance_id:
                return str(instance["state"])
        return None

    def configure(self, **values: Any) -> None:
        self.http.post("/admin/config", json=values).raise_for_status()


@dataclass
class Sink:
    """A result sink (K_SINK) on loopback that keeps every event it receives."""

    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    down_until: float = 0.0  # answers 503 until then (time.time())
    refused: int = 0

    def receive(self, body: bytes) -> int:
        with self.lock:
            if time.time() < self.down_until:
                self.refused += 1
                return 503
            self.events.append(json.loads(body))
        return 202

    def for_instance(self, instance_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["data"].get("instance_id") == instance_id]

    def result(self, instance_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The single result for an instance, once it arrives."""
        events = wait_until(lambda: self.for_instance(instance_id), timeout, f"result for {instance_id}")
        return dict(events[0])


@dataclass
class Function:
    """A functions-framework process serving reaper."""

    process: Process
    log_path: Path

    @property
    def url(self) -> str:
        return self.process.url + "/"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for text in self.log().splitlines():
            if text.startswith("{"):
                lines.append(json.loads(text))
        return lines

    def send(self, event: CloudEvent, *, mode: str = "binary") -> httpx.Response:
        headers, body = to_binary(event) if mode == "binary" else to_structured(event)
        return httpx.post(self.url, headers=headers, content=body, timeout=15)


def expired(instance_id: str, event_id: str | None = None, **data: Any) -> CloudEvent:
    attributes = {"type": "instance-expired", "source": "/tests", "id": event_id or new_id("ev")}
    return CloudEvent(attributes, {"instance_id": instance_id, "project_id": PROJECT, **data})


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    port = free_port()
    log = (tmp_path_factory.mktemp("emulator") / "emulator.log").open("wb")
    process = Process(
        reaper_command("emulator", "--port", str(port), "--token", TOKEN, "--termination-seconds", "0.5"),
        port,
        stderr=log,
    ).start()
    emulator = Emulator(process)
    yield emulator
    emulator.http.close()
    process.stop()
    log.close()


@pytest.fixture(scope="session")
def delay_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    workdir = tmp_path_factory.mktemp("delay")
    port = free_port()
    log = (workdir / "delay.log").open("wb")
    process = Process(
        reaper_command(
            "delay-service",
            "--port",
            str(port),
            "--db",
            str(workdir / "delays.sqlite3"),
            "--allow-target",
            ANY_LOOPBACK,
        ),
        port,
        stderr=log,
    ).start()
    yield process
    process.stop()
    log.close()


def serve_collecting_sink() -> Iterator[Sink]:
    """A result sink on loopback for as long as the generator runs (the body of the sink fixtures)."""
    collected = Sink()
    with serve_sink(collected.receive) as url:
        collected.url = url
        yield collected


@pytest.fixture(scope="session")
def sink() -> Iterator[Sink]:
    yield from serve_collecting_sink()


def function_env(emulator: Emulator, delay_service: Process, sink_url: str, port: int) -> dict[str, str]:
    """The settings of a test function on ``port``: emulator, delay service, sink and the safety settings."""
    return {
        "CLOUDDC_ENDPOINT": emulator.url,
        "CLOUDDC_PROJECT_ID": PROJECT,
        "CLOUDDC_AUTH_TOKEN": TOKEN,
        "REAPER_DELAY_SERVICE_URL": delay_service.url,
        "REAPER_SELF_URL": f"http://127.0.0.1:{port}/",
        "K_SINK": sink_url,
        "REAPER_CHECK_DELAY": "0.5",
        "REAPER_CHECK_MAX_DELAY": "2",
        "REAPER_DEADLINE": "60",
        "REAPER_EVENT_KEY": EVENT_KEY,
        "REAPER_INBOUND_AUTH": "platform",
    }


class Receiver:
    """A loopback HTTP receiver answering from a script of (status, body), then 200; keeps what it took."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, bytes]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[int | tuple[int, bytes, str]] = []
        self.lock = threading.Lock()

        @Request.application
        def app(request: Request) -> Response:
            with self.lock:
                step = self.script.pop(0) if self.script else 200
                status, body, mimetype = step if isinstance(step, tuple) else (step, b"", "text/plain")
                if status < 300:
                    self.received.append((time.monotonic(), request.content_type or "", request.get_data()))
                    self.headers.append({k.lower(): v for k, v in request.headers.items()})
            return Response(body, status, mimetype=mimetype)

        self.server = threaded_server("127.0.0.1", 0, app)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        with self.lock:
            return [
                headers.get("ce-id") or json.loads(body)["id"]
                for (_, _, body), headers in zip(self.received, self.headers, strict=True)
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.close()


FunctionFactory = Callable[..., Function]


@pytest.fixture(scope="session")
def function_factory(
    emulator: Emulator, delay_service: Process, sink: Sink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionFactory]:
    started: list[Process] = []
    logs: list[IO[bytes]] = []

    def start(target: str = "handle", signature: str = "cloudevent", **env: str) -> Function:
        port = free_port()
        log_path = tmp_path_factory.mktemp("function") / "function.log"
        base = function_env(emulator, delay_service, sink.url, port)
        merged = {k: v for k, v in {**base, **env}.items() if v is not None}
        log = log_path.open("wb")
        logs.append(log)
        process = Process(function_command(port, target, signature), port, env=merged, stderr=log).start()
        started.append(process)
        return Function(process, log_path)

    yield start
    stop_all(started)
    for log in logs:
        log.close()


@pytest.fixture(scope="session")
def function(function_factory: FunctionFactory) -> Function:
    return function_factory()


@pytest.fixture(scope="session")
def http_function(function_factory: FunctionFactory) -> Function:
    return function_factory(target="handle_http", signature="http")


@pytest.fixture(scope="session")
def webhook_function(function_factory: FunctionFactory) -> Function:
    """The HTTP target as shipped on a VM: every trigger must carry a Standard Webhooks signature."""
    return function_factory(
        target="handle_http",
        signature="http",
        REAPER_INBOUND_AUTH="webhook",
        REAPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )


def per_target(factory: FunctionFactory, **env: str) -> Callable[[str], Function]:
    """A function process per target (``handle``/``handle_http``) with ``env``, started on first use."""
    made: dict[str, Function] = {}

    def get(target: str) -> Function:
        if target not in made:
            signature = "cloudevent" if target == "handle" else "http"
            made[target] = factory(target=target, signature=signature, **env)
        return made[target]

    return get


@pytest.fixture(scope="session")
def redis_up() -> None:
    """Fail clearly, not with a time-out, when the real redis-server is not running."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        pytest.fail(
            "redis-server is not answering on 127.0.0.1:6379 "
            "(.ci/run starts it: redis-server --daemonize yes)"
        )
