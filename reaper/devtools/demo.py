"""``reaper demo``: emulator + delay service + function on loopback, expired events, live progress.

Everything runs as real processes, started here and stopped on the way out (Ctrl-C included).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import httpx
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from function.jsonlog import STEP_HANDLED
from reaper.devtools.procs import Process, free_port, function_command, reaper_command, stop_all
from reaper.devtools.sink import serve_sink
from reaper.tools.send import sign

PROJECT: Final = "demo-project"
# (scenario label, extra instance spec): a few with faults, so the retries are visible.
SCENARIOS: Final[list[tuple[str, dict[str, Any]]]] = [
    ("plain", {}),
    ("429, Retry-After: 2", {"faults": {"delete": [{"status": 429, "retry_after": 2}]}}),
    ("500 then success", {"faults": {"delete": [{"status": 500}]}}),
    ("slow delete (12 s)", {"termination_seconds": 12}),
    ("flaky status", {"faults": {"status": [{"status": 503}, {"reset": True}]}}),
    ("delete fails", {"outcome": "fail"}),
    ("plain", {"termination_seconds": 3}),
    ("429 without Retry-After", {"faults": {"delete": [{"status": 429}]}}),
    ("already gone (not listed)", {"absent": True}),
    ("protected (metadata)", {"metadata": {"reaper-protected": "true"}}),
]


@dataclass
class Progress:
    """What the demo knows about one instance."""

    scenario: str
    state: str = "-"
    events: int = 0
    busy_ms: float = 0.0
    result: str = ""


@dataclass
class Board:
    """Per-instance progress, fed by the function's log and the result sink."""

    rows: dict[str, Progress] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_log(self, line: dict[str, Any]) -> None:
        """Count one handled event and its busy time."""
        if line.get("message") != STEP_HANDLED:
            return
        with self.lock:
            row = self.rows.get(str(line.get("instance_id")))
            if row:
                row.events += 1
                row.busy_ms += float(line.get("busy_ms", 0.0))

    def on_result(self, event: dict[str, Any]) -> None:
        """Record a result event from the sink."""
        data = event.get("data") or {}
        with self.lock:
            row = self.rows.get(str(data.get("instance_id")))
            if row:
                reason = data.get("reason") or ("already absent" if data.get("already_absent") else "")
                row.result = str(event["type"]) + (f" ({reason})" if reason else "")

    def done(self) -> bool:
        """True when every instance has a result."""
        with self.lock:
            return all(row.result for row in self.rows.values())

    def render(self) -> str:
        """The table, one line per instance."""
        lines = [f"{'instance':10} {'scenario':26} {'state':14} {'events':>6} {'busy ms':>8}  result"]
        with self.lock:
            for instance_id, row in sorted(self.rows.items()):
                lines.append(
                    f"{instance_id:10} {row.scenario:26} {row.state:14} {row.events:>6} "
                    f"{row.busy_ms:>8.1f}  {row.result}"
                )
        return "\n".join(lines)


def _receiver(board: Board) -> Callable[[bytes], int]:
    """What the demo's sink does with a result: show it on the board."""

    def receive(body: bytes) -> int:
        with contextlib.suppress(ValueError):
            board.on_result(json.loads(body))
        return 202

    return receive


def _follow_log(stream: IO[bytes], board: Board, log_file: IO[str]) -> None:
    for raw in stream:
        text = raw.decode("utf-8", "replace")
        log_file.write(text)
        with contextlib.suppress(ValueError):
            board.on_log(json.loads(text))


def _seed(emulator_url: str, count: int) -> dict[str, Progress]:
    rows: dict[str, Progress] = {}
    specs = []
    for number in range(1, count + 1):
        label, spec = SCENARIOS[(number - 1) % len(SCENARIOS)]
        instance_id = f"i-{number:04d}"
        rows[instance_id] = Progress(label)
        if not spec.get("absent"):
            specs.append({"id": instance_id, "project_id": PROJECT, **spec})
    httpx.post(f"{emulator_url}/admin/instances", json=specs).raise_for_status()
    return rows


def _fire(function_url: str, instance_ids: list[str], webhook_secret: str) -> None:
    """Send one signed (Standard Webhooks) instance-expired per instance, as a lease system would."""
    with httpx.Client(timeout=10) as client:
        for instance_id in instance_ids:
            event = CloudEvent(
                {"type": "instance-expired", "source": "/demo/lease-system", "subject": instance_id},
                {"instance_id": instance_id, "project_id": PROJECT, "reason": "lease ended"},
            )
            headers, body = to_binary(event)
            signed = sign(dict(headers), body, "webhook", secret=webhook_secret, url=function_url)
            client.post(function_url, headers=signed, content=body).raise_for_status()


def _refresh_states(emulator_url: str, board: Board) -> None:
    snapshot = httpx.get(f"{emulator_url}/admin/instances", timeout=5).json()
    states = defaultdict(lambda: "absent", {i["id"]: i["state"] for i in snapshot})
    with board.lock:
        for instance_id, row in board.rows.items():
            row.state = states[instance_id]


def run_demo(instances: int = 10, timeout: float = 120.0, termination_seconds: float = 6.0) -> int:
    """Run the whole thing; 0 when every instance ended terminated or with an explained failure."""
    tty = sys.stdout.isatty()
    board = Board()
    workdir = Path(tempfile.mkdtemp(prefix="reaper-demo-"))
    token = "demo-" + secrets.token_hex(16)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    ports = {name: free_port() for name in ("emulator", "delay", "function")}
    emulator = Process(
        reaper_command("emulator", "--port", str(ports["emulator"]), "--token", token,
                       "--termination-seconds", str(termination_seconds), "--retention-seconds", "300"),
        ports["emulator"], stderr=subprocess.DEVNULL,
    )  # fmt: skip
    delay = Process(
        reaper_command("delay-service", "--port", str(ports["delay"]), "--db",
                       str(workdir / "delays.sqlite3"), "--allow-target", f"http://127.0.0.1:{ports['function']}/"),
        ports["delay"], stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started: list[Process] = []
    try:
        with serve_sink(_receiver(board)) as sink_url, open(workdir / "function.log", "w") as log_file:
            function = Process(
                function_command(ports["function"]),
                ports["function"],
                env={
                    "CLOUDDC_ENDPOINT": emulator.url,
                    "CLOUDDC_PROJECT_ID": PROJECT,
                    "CLOUDDC_AUTH_TOKEN": token,
                    "REAPER_DELAY_SERVICE_URL": delay.url,
                    "REAPER_SELF_URL": f"http://127.0.0.1:{ports['function']}/",
                    "K_SINK": sink_url,
                    "REAPER_CHECK_DELAY": "2",
                    "REAPER_CHECK_MAX_DELAY": "6",
                    "REAPER_DEADLINE": str(int(timeout)),
                    "REAPER_EVENT_KEY": secrets.token_hex(32),
                    "REAPER_INBOUND_AUTH": "webhook",
                    "REAPER_WEBHOOK_SECRET": webhook_secret,
                },
                stderr=subprocess.PIPE,
            )
            for process in (emulator, delay, function):
                started.append(process.start())
            assert function.proc is not None
            assert function.proc.stderr is not None
            follower = threading.Thread(
                target=_follow_log, args=(function.proc.stderr, board, log_file), daemon=True
            )
            follower.start()
            print(f"emulator {emulator.url}  delay service {delay.url}  function {function.url}")
            print(f"function log: {workdir / 'function.log'}\n")
            board.rows = _seed(emulator.url, instances)
            began = time.monotonic()
            _fire(function.url + "/", list(board.rows), webhook_secret)
            last = ""
            while not board.done() and time.monotonic() - began < timeout:
                _refresh_states(emulator.url, board)
                table = board.render()
                if table != last:
                    print(("\x1b[H\x1b[J" if tty else "") + table + ("" if tty else "\n"), flush=True)
                    last = table
                time.sleep(0.5)
            _refresh_states(emulator.url, board)
            code = _summary(board, time.monotonic() - began)
            # The function may still be logging (a check announced from a shared read comes after the
            # result): stop it, and let the log reach its end before the file closes.
            stop_all(started)
            follower.join(timeout=10)
            print(f"\neach instance's timeline:  reaper explain {workdir / 'function.log'}")
            return code
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything")
        return 130
    finally:
        stop_all(started)


def _summary(board: Board, elapsed: float) -> int:
    print("\nsummary\n" + board.render())
    rows = board.rows.values()
    terminated = sum(r.result.startswith("instance-terminated") for r in rows)
    failed = sum(r.result.startswith("instance-deletion-failed") for r in rows)
    skipped = sum(r.result.startswith("instance-deletion-skipped") for r in rows)
    missing = sum(not r.result for r in rows)
    busy = sum(r.busy_ms for r in rows)
    print(
        f"\n{terminated} terminated, {failed} failed with a reason, {skipped} skipped (refused by the "
        f"guardrails), {missing} without a result "
        f"in {elapsed:.0f} s; function busy {busy:.0f} ms in all "
        f"({busy / max(len(board.rows), 1):.1f} ms per instance)"
    )
    return 0 if missing == 0 else 1
