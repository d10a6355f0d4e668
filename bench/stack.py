"""Processes and probes for the benchmarks: a stack on loopback, a result sink, CPU and RSS readings."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
from werkzeug.wrappers import Request, Response

from reaper.devtools.procs import Process, free_port, function_command, reaper_command
from reaper.servers import threaded_server

BENCH = Path(__file__).parent
NOOP_SOURCE = BENCH / "noop_main.py"  # the do-nothing function every figure is compared with
# reaper is measured as it ships: deploy/Dockerfile's FUNCTION_TARGET and `reaper serve`'s default.
SHIPPED_TARGET = ("handle_http", "http")
TOKEN = "bench-token-0123456789abcdef"
# The safety settings every function needs (README "Safety"): the bench uses many projects and sends
# unsigned expiry events, so it allows every project and lets the "platform" (loopback) authenticate.
SAFETY = {
    "REAPER_ALLOWED_PROJECTS": "*",
    "REAPER_EVENT_KEY": "bench-event-key-0123456789abcdef",
    "REAPER_INBOUND_AUTH": "platform",
}
# No follow-up comes due while a throughput, memory or instruction count is measured.
NO_FOLLOW_UPS: dict[str, str] = {
    "REAPER_CHECK_DELAY": "3600",
    "REAPER_CHECK_MAX_DELAY": "3600",
    "REAPER_DEADLINE": "7200",
}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


class Sink:
    """Collects result events with their arrival time."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()

        @Request.application
        def app(request: Request) -> Response:
            try:
                data = json.loads(request.get_data()).get("data") or {}
            except ValueError:
                return Response("", 400)
            with self.lock:
                self.arrivals.setdefault(str(data.get("instance_id")), time.time())
            return Response("", 202)

        self.server = threaded_server("127.0.0.1", 0, app)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, ids: Iterable[str]) -> int:
        with self.lock:
            return sum(1 for i in ids if i in self.arrivals)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stack:
    """Emulator + delay service + any number of function processes, all on loopback."""

    def __init__(self, termination_seconds: float = 60.0) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="reaper-bench-"))
        port = free_port()
        self.emulator = Process(
            reaper_command(
                "emulator",
                "--port",
                str(port),
                "--token",
                TOKEN,
                "--termination-seconds",
                str(termination_seconds),
                "--retention-seconds",
                "3600",
            ),
            port,
            stderr=subprocess.DEVNULL,
        ).start()
        port = free_port()
        self.delay = Process(
            reaper_command(
                "delay-service",
                "--port",
                str(port),
                "--db",
                str(self.workdir / "delays.sqlite3"),
                "--allow-target",
                "http://127.0.0.1:*/",
            ),
            port,
            stderr=subprocess.DEVNULL,
        ).start()
        self.sink = Sink()
        self.admin = httpx.Client(base_url=self.emulator.url, timeout=60)
        self.functions: list[tuple[Process, IO[bytes]]] = []

    def function(
        self, source: Path | None = None, threads: int = 64, cpus: set[int] | None = None, **env: str
    ) -> tuple[Process, Path]:
        """Start a functions-framework process (gunicorn, no --debug), on ``cpus`` if given, with its log path."""
        port = free_port()
        log_path = self.workdir / f"function-{port}.log"
        log = log_path.open("wb")
        argv = served(port, source)
        if cpus:
            argv = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]
        settings = self.function_env(
            REAPER_SELF_URL=f"http://127.0.0.1:{port}/", K_SINK=self.sink.url, THREADS=str(threads), **env
        )
        process = Process(argv, port, env=settings, stderr=log).start(timeout=60)
        self.functions.append((process, log))
        return process, log_path

    def function_env(self, **extra: str) -> dict[str, str]:
        """What every function here is configured with: this emulator, its token, this delay service."""
        return {
            "CLOUDDC_ENDPOINT": self.emulator.url,
            "CLOUDDC_AUTH_TOKEN": TOKEN,
            "REAPER_DELAY_SERVICE_URL": self.delay.url,
            **SAFETY,
            **extra,
        }

    def seed(self, project: str, ids: list[str], **spec: Any) -> None:
        for start in range(0, len(ids), 2000):
            chunk = [{"id": i, "project_id": project, **spec} for i in ids[start : start + 2000]]
            self.admin.post("/admin/instances", json=chunk).raise_for_status()

    def calls(self) -> list[dict[str, Any]]:
        return list(self.admin.get("/admin/calls").json())

    def instances(self) -> dict[str, dict[str, Any]]:
        return {i["id"]: i for i in self.admin.get("/admin/instances").json()}

    def configure(self, **values: Any) -> None:
        self.admin.post("/admin/config", json=values).raise_for_status()

    def stop_function(self, process: Process) -> None:
        for entry in list(self.functions):
            if entry[0] is process:
                process.stop()
                entry[1].close()
                self.functions.remove(entry)

    def close(self) -> None:
        for process, log in self.functions:
            process.stop()
            log.close()
        self.delay.stop()
        self.emulator.stop()
        self.sink.close()
        self.admin.close()


@contextlib.contextmanager
def cpu_of_its_own() -> Iterator[set[int] | None]:
    """Keep one CPU for the function: this process, and all it starts from here on, runs on the others.

    A worker is one Python process (one GIL): it gets a CPU to itself, as on a 1-vCPU allocation, and the
    load generator and the upstream it calls stay off that CPU. None on a one-CPU machine or without taskset.
    """
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2 or shutil.which("taskset") is None:
        yield None
        return
    own = {min(allowed)}
    os.sched_setaffinity(0, allowed - own)
    try:
        yield own
    finally:
        os.sched_setaffinity(0, allowed)


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
    return lines


def tree(pid: int) -> list[int]:
    """A process and its descendants."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.extend(tree(int(entry.name)))
    return found


def served(port: int, source: Path | None = None) -> list[str]:
    """argv for reaper on its shipped target, or for a bench function (``source``) on its CloudEvent ``handle``."""
    if source is None:
        return function_command(port, *SHIPPED_TARGET)
    argv = function_command(port)
    argv[argv.index("--source") + 1] = str(source)
    return argv


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_pid(master: int) -> int:
    children = [p for p in tree(master) if p != master]
    return children[0] if children else master


def load(url: str, project: str, prefix: str, count: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """Run the load generator as a separate process and return its summary."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            url,
            project,
            prefix,
            str(count),
            str(concurrency),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
