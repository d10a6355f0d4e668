"""``reaper serve``: gunicorn with reaper's limits, and each worker on a CPU of its own when asked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from function.serve import gunicorn_options, least_used_cpu
from tests.conftest import FunctionFactory

CPUS = sorted(os.sched_getaffinity(0))


def workers_cpus(master: int, count: int, pinned: bool) -> list[set[int]]:
    """The CPUs each of ``count`` gunicorn workers (children of ``master``) may run on, once all are up
    (and, with ``pinned``, once each has pinned itself, right after its fork)."""
    deadline = time.monotonic() + 30
    while True:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        placed = [os.sched_getaffinity(int(pid)) for pid in children]
        settled = len(placed) == count and (not pinned or all(len(cpus) == 1 for cpus in placed))
        if settled or time.monotonic() > deadline:
            return placed
        time.sleep(0.1)


def test_the_least_used_cpu_is_chosen() -> None:
    """Each worker takes the CPU fewest siblings are pinned to; unpinned siblings count for none."""
    assert least_used_cpu({0, 1, 2}, []) == 0
    assert least_used_cpu({0, 1, 2}, [{0}]) == 1
    assert least_used_cpu({0, 1, 2}, [{0}, {1}, {2}]) == 0
    assert least_used_cpu({0, 1, 2}, [{0}, {0}, {1}, {2}]) == 1
    assert least_used_cpu({4, 5}, [{0, 1, 4, 5}, {4}]) == 5
    assert least_used_cpu({3}, [{3}, {3}]) == 3


def test_pinning_is_off_by_default_and_asked_for_by_its_setting() -> None:
    """Only REAPER_PIN_WORKERS=true adds the hook; a value that is not a boolean is refused."""
    assert "post_fork" not in gunicorn_options("127.0.0.1", 8080, {})
    assert "post_fork" in gunicorn_options("127.0.0.1", 8080, {"REAPER_PIN_WORKERS": "true"})
    with pytest.raises(Exception, match="REAPER_PIN_WORKERS='sometimes': expected true or false"):
        gunicorn_options("127.0.0.1", 8080, {"REAPER_PIN_WORKERS": "sometimes"})


@pytest.mark.skipif(len(CPUS) < 2, reason="one CPU: nothing to choose")
def test_pinned_workers_each_run_on_a_cpu_of_their_own(function_factory: FunctionFactory) -> None:
    """Two workers with REAPER_PIN_WORKERS=true: each on one CPU, not the same one."""
    served = function_factory(WORKERS="2", REAPER_PIN_WORKERS="true")
    assert served.process.proc is not None
    placed = workers_cpus(served.process.proc.pid, 2, pinned=True)
    assert len(placed) == 2
    assert all(len(cpus) == 1 for cpus in placed)
    assert placed[0] != placed[1]
    assert '"message":"worker pinned"' in served.log()


def test_unpinned_workers_may_run_anywhere(function_factory: FunctionFactory) -> None:
    """Without the setting a worker keeps every CPU the process was given."""
    served = function_factory(WORKERS="2")
    assert served.process.proc is not None
    assert workers_cpus(served.process.proc.pid, 2, pinned=False) == [set(CPUS), set(CPUS)]


def test_workers_and_threads_are_positive_whole_numbers() -> None:
    """WORKERS and THREADS default to 1 and 256; anything but a positive whole number is refused."""
    options = gunicorn_options("127.0.0.1", 8080, {})
    assert (options["workers"], options["threads"]) == (1, 256)
    assert gunicorn_options("127.0.0.1", 8080, {"WORKERS": "2", "THREADS": "16"})["threads"] == 16
    with pytest.raises(Exception, match="THREADS='0': expected a positive whole number"):
        gunicorn_options("127.0.0.1", 8080, {"THREADS": "0"})
    with pytest.raises(Exception, match="WORKERS='two': expected a whole number"):
        gunicorn_options("127.0.0.1", 8080, {"WORKERS": "two"})


def test_a_bad_pinning_setting_stops_the_server_with_one_line() -> None:
    """``reaper serve`` exits 2 with one line naming the setting, before serving anything."""
    done = subprocess.run(
        [sys.executable, "-m", "reaper.cli", "serve", "--host", "127.0.0.1", "--port", "9"],
        env={**os.environ, "REAPER_PIN_WORKERS": "sometimes"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "reaper: bad setting: REAPER_PIN_WORKERS='sometimes': expected true or false"
    )
