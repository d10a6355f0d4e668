"""The ``reaper`` command and the function's start-up, as an operator meets them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reaper import cli
from reaper.devtools.procs import Process, free_port, function_command, reaper_command

pytestmark = pytest.mark.integration


def test_bad_setting_stops_the_function_with_one_line() -> None:
    """functions-framework exits non-zero at start, printing one line that names the bad setting."""
    env = {**os.environ, "CLOUDDC_ENDPOINT": "http://127.0.0.1:1", "CLOUDDC_AUTH_TOKEN": "t-123456",
           "REAPER_CHECK_DELAY": "soon"}  # fmt: skip
    done = subprocess.run(
        function_command(free_port()), env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert lines[-1] == "reaper: bad setting: REAPER_CHECK_DELAY='soon': expected a number of seconds"
    assert "Traceback" not in done.stderr.decode()


def test_emulator_command_seeds_and_loads_instances(tmp_path: Path) -> None:
    """`reaper emulator --seed N --instances FILE` serves the seeded and listed instances."""
    specs = tmp_path / "instances.json"
    specs.write_text(json.dumps([{"id": "extra-1", "project_id": "p2", "outcome": "stuck"}]))
    port = free_port()
    emulator = Process(
        reaper_command(
            "emulator", "--port", str(port), "--seed", "3", "--project", "p1", "--instances", str(specs)
        ),
        port,
        stderr=subprocess.DEVNULL,
    ).start()
    try:
        ids = sorted(i["id"] for i in httpx.get(f"{emulator.url}/admin/instances").json())
        assert ids == ["extra-1", "i-0001", "i-0002", "i-0003"]
    finally:
        emulator.stop()


def test_delay_service_refuses_non_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    """`reaper delay-service --host 0.0.0.0` fails with a clear message and exit code 2."""
    assert cli.main(["delay-service", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "loopback only" in capsys.readouterr().err


def test_usage_errors() -> None:
    """A missing subcommand is a usage error."""
    with pytest.raises(SystemExit) as caught:
        cli.main([])
    assert caught.value.code == 2


def test_demo_runs_to_its_summary() -> None:
    """`reaper demo` with a few instances ends with every instance terminated or explained, no leftovers."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reaper.cli",
            "demo",
            "--instances",
            "3",
            "--timeout",
            "90",
            "--termination-seconds",
            "2",
        ],
        capture_output=True,
        timeout=150,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "summary" in out
    assert (
        "3 terminated, 0 failed with a reason, 0 skipped (refused by the guardrails), 0 without a result"
        in out
    )
    # `reaper explain` on the demo's log: one timeline per instance, each step in order, then its result.
    log = out.rsplit("reaper explain ", 1)[1].split()[0]
    explained = subprocess.run(
        [sys.executable, "-m", "reaper.cli", "explain", log], capture_output=True, timeout=30, check=True
    ).stdout.decode()
    timelines = [block for block in explained.strip().split("\n\n") if block]
    assert len(timelines) == 3, explained
    for block in timelines:
        header, *steps = block.splitlines()
        assert "instance-terminated after" in header
        assert "step 1   instance-expired" in steps[0]
        # The step that found it gone: a status read, or a ListInstances read shared with the other deletes
        # in flight, made by this check or (a "shared read" step) by another's, when its own says "announced".
        deciding = next(step for step in steps if "-> terminated" in step)
        assert re.search(r"(STATUS|LIST) 200 terminated|SHARED terminated|shared read", deciding), block
        assert "result   instance-terminated" in steps[-1]
        assert "trace " in steps[-1]
    workdir = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("function log"))
    workdir = str(Path(workdir).parent)
    # The delay service's --db lives in the demo's workdir: nothing started there may still run.
    leftovers = subprocess.run(["pgrep", "-f", workdir], capture_output=True, check=False)
    assert leftovers.stdout.decode().split() == []
    assert leftovers.returncode == 1
