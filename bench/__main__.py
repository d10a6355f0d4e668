"""``make bench``: measure reaper beside the naive poller, the ideal and a no-op; write docs/benchmarks.md.

Everything runs on loopback against the emulator; every load is bounded in count and time. The
measurements are ``bench/scenarios.py``, the page ``bench/report.py`` (targets: ``bench/targets.py``),
the chart ``bench/plot.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.plot import plot
from bench.report import report
from bench.scenarios import ROOT

OUT = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "schedule.svg"

SCENARIOS: dict[str, Callable[[], Any]] = {
    "cost": scenarios.cost_per_instance,
    "throughput": scenarios.throughput,
    "doubles": scenarios.doubles,
    "placement": scenarios.placement,
    "cold": scenarios.cold_start,
    "memory": scenarios.memory,
    "transports": scenarios.transports,
    "sweep": scenarios.sweep_cost,
    "instructions": scenarios.instructions,
}
CACHE = Path(os.environ.get("REAPER_BENCH_CACHE", "/tmp/reaper-bench"))


def main() -> int:
    """Run every scenario (or those named on the command line, reusing cached results for the rest)."""
    command = "make bench"
    wanted = [name for name in sys.argv[1:] if name != "report"] if sys.argv[1:] else list(SCENARIOS)
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s) {sorted(unknown)}; choose from {list(SCENARIOS)}", file=sys.stderr)
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    for name in wanted:
        (CACHE / f"{name}.json").write_text(json.dumps(SCENARIOS[name]()))
    missing = [name for name in SCENARIOS if not (CACHE / f"{name}.json").exists()]
    if missing:
        print(f"ran {wanted}; run {missing} too before a report can be written")
        return 0
    results = {name: json.loads((CACHE / f"{name}.json").read_text()) for name in SCENARIOS}
    took = time.monotonic() - began
    finished = time.time()
    if len(wanted) == len(SCENARIOS):
        (CACHE / "meta.json").write_text(json.dumps({"took": took, "at": time.time()}))
    elif not wanted and (CACHE / "meta.json").exists():
        # `python -m bench report`: re-render the last full run.
        meta = json.loads((CACHE / "meta.json").read_text())
        took, finished = meta["took"], meta.get("at", finished)
    else:
        command = f"python -m bench {' '.join(wanted)} (other scenarios from an earlier full run)"
    text = report(results, command, took, finished)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    PLOT.write_text(plot(results["cost"]["rows"]))
    print("\n" + text)
    print(f"\nwritten to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
