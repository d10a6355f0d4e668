"""docs/benchmarks.md from the scenarios' figures; each headline target is data (``TARGETS``), not prose."""

from __future__ import annotations

import time
from typing import Any

from bench.instructions import FUNCTIONS
from bench.scenarios import (
    FLEETS,
    MEASURED,
    RUNS,
    SEND_RATE,
    SHIPPED_THREADS,
    THREADS_COMPARED,
    WARM_UP,
    machine,
)
from bench.targets import TARGETS, Target


def _row(target: Target, value: float) -> str:
    """The target and verdict cells of a headline row."""
    return f"{target.shown} | {target.verdict(value)} |"


def _derived(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the sections quote, picked and computed once from the scenarios' results."""
    cost, tp, cold, mem = results["cost"], results["throughput"], results["cold"], results["memory"]
    trans, sweep, instr = results["transports"], results["sweep"], results["instructions"]
    rows, ideal = cost["rows"], cost["ideal"]
    learned = {r["fleet"]: r for r in rows if r["schedule"] == "learned"}
    fixed = {r["fleet"]: r for r in rows if r["schedule"] == "fixed"}
    naive = next(r for r in rows if r["schedule"] == "naive")
    noop = next(row for row in tp if row["label"] == "no-op")
    r16 = next(
        row for row in tp if row["label"] == "reaper" and row["latency_ms"] == 0 and row["threads"] == 16
    )
    fast = [row for row in tp if row["label"] == "reaper" and row["latency_ms"] == 0]
    slow = [row for row in tp if row["label"] == "reaper" and row["latency_ms"] > 0]
    best_fast = max(fast, key=lambda x: x["rate"])
    best_slow = max(slow, key=lambda x: x["rate"])
    shipped_fast = next(row for row in fast if row["threads"] == SHIPPED_THREADS)
    shipped_slow = next(row for row in slow if row["threads"] == SHIPPED_THREADS)
    at60 = learned[FLEETS[1][0]]
    cold_ratio = cold["pair_ratio_median"]
    cpu_ratio = r16["cpu_ms"] / noop["cpu_ms"]
    dbl = results["doubles"]
    dbl_share = dbl["reaper"]["rate"] / dbl["no-op"]["rate"]
    growth = mem["after_2000"] - mem["idle"]
    drift = mem["after_10000"] - mem["after_2000"]
    return {
        "cost": cost,
        "tp": tp,
        "cold": cold,
        "mem": mem,
        "trans": trans,
        "sweep": sweep,
        "instr": instr,
        "rows": rows,
        "ideal": ideal,
        "learned": learned,
        "fixed": fixed,
        "naive": naive,
        "noop": noop,
        "r16": r16,
        "fast": fast,
        "slow": slow,
        "best_fast": best_fast,
        "best_slow": best_slow,
        "shipped_fast": shipped_fast,
        "shipped_slow": shipped_slow,
        "at60": at60,
        "cold_ratio": cold_ratio,
        "cpu_ratio": cpu_ratio,
        "dbl": dbl,
        "dbl_share": dbl_share,
        "growth": growth,
        "drift": drift,
    }


def _headline(v: dict[str, Any], command: str, took: float, finished: float) -> list[str]:
    """The title, the machine and the headline table of targets."""
    cold, instr, learned, noop, r16, best_slow, shipped_slow, cold_ratio, cpu_ratio, dbl, dbl_share = (
        v["cold"],
        v["instr"],
        v["learned"],
        v["noop"],
        v["r16"],
        v["best_slow"],
        v["shipped_slow"],
        v["cold_ratio"],
        v["cpu_ratio"],
        v["dbl"],
        v["dbl_share"],
    )
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(finished))} in "
        f"{took / 60:.1f} min. Throughput rows are medians over {RUNS} runs. Absolute times are noisy on this "
        "shared 2-core machine; ratios measured in the same run and instruction counts (section 7) are the "
        "figures to compare across runs.",
        "",
        *machine(),
        "",
        "## Headline (issue 13's targets)",
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
    ]
    for label, _, _ in FLEETS:
        row = learned[label]
        lines.append(
            f"| {label}: DELETE + status reads per instance, learned schedule | {row['calls']:.2f} | "
            f"{_row(TARGETS['calls_per_instance'], row['calls'])}"
        )
        lines.append(
            f"| {label}: detection lag p95 | {row['lag_p95']:.1f} s = {row['lag_p95_share']:.0%} of T | "
            f"{_row(TARGETS['lag_p95_share'], row['lag_p95_share'])}"
        )
    lines += [
        f"| server CPU per event, THREADS={THREADS_COMPARED} (§2) | {r16['cpu_ms']:.2f} ms "
        f"(no-op {noop['cpu_ms']:.2f}) | {_row(TARGETS['cpu_ms'], r16['cpu_ms'])}",
        f"| the same, in no-ops (this machine's speed divided out) | {cpu_ratio:.2f}x | "
        f"{_row(TARGETS['cpu_in_noops'], cpu_ratio)}",
        f"| events/s vs a no-op, THREADS={THREADS_COMPARED}, same run (§2) | {r16['rate']:.0f} / "
        f"{noop['rate']:.0f} = {r16['rate'] / noop['rate']:.0%} | "
        f"{_row(TARGETS['events_vs_noop'], r16['rate'] / noop['rate'])}",
        f"| context, not a target: the same with the emulator and delay service as upstream (§2b) | "
        f"{dbl['reaper']['rate']:.0f} / {dbl['no-op']['rate']:.0f} = {dbl_share:.0%} | — | the test doubles' "
        f"own CPU, {dbl['reaper']['upstream_ms']:.1f} ms per event on the CPU they share with the load "
        "generator, caps the rate whatever reaper costs |",
        f"| events/s per worker, 100 ms upstream (§2) | {best_slow['rate']:.0f} (THREADS={best_slow['threads']}); "
        f"shipped THREADS={SHIPPED_THREADS}: {shipped_slow['rate']:.0f} | "
        f"{_row(TARGETS['slow_events_per_s'], shipped_slow['rate'])}",
        f"| the same, in no-ops (vs the no-op's events/s) | {shipped_slow['rate'] / noop['rate']:.0%} | "
        f"{_row(TARGETS['slow_in_noops'], shipped_slow['rate'] / noop['rate'])}",
        f"| cold start vs a no-op, median of {cold['pairs']} interleaved pairs | {cold_ratio:.2f}x | "
        f"{_row(TARGETS['cold_start_ratio'], cold_ratio)}",
    ]
    if "reaper" in instr:
        lines.append(
            f"| instructions per event (callgrind, a count the machine's load cannot move) | "
            f"{instr['reaper'] / 1e6:.2f} M (no-op {instr['no-op'] / 1e6:.2f} M = "
            f"{instr['reaper'] / instr['no-op']:.2f}x) | "
            f"{_row(TARGETS['instructions_in_noops'], instr['reaper'] / instr['no-op'])}"
        )
    return lines


def _cost_section(v: dict[str, Any]) -> list[str]:
    """The notes link, then §1: cost per reaped instance, learned vs fixed schedule."""
    ideal, learned, fixed, naive = v["ideal"], v["learned"], v["fixed"], v["naive"]
    lines = [
        "",
        "Notes on the targets and why: [performance-notes.md](performance-notes.md).",
        "",
        "## 1. Cost per reaped instance: learned vs fixed check schedule",
        "",
        f"Each row is its own function process (THREADS=32) against the emulator, all running at once. A process "
        f"first sees {WARM_UP} deletes arriving over 1.5 T (warm-up; the cold estimate is the default seed, "
        "REAPER_CHECK_DELAY = 15 s), then "
        f"{MEASURED} measured ones at {SEND_RATE:.0f}/s. Calls: DELETE and status reads per instance from the "
        "emulator's call log: ShowInstanceStatus, or a ListInstances read shared by the deletes a process "
        "watches (`function/watch.py`), split among the ids it names; the guardrails' ListInstances read "
        "before each DELETE is counted apart. Events: the function's invocations per instance (the "
        "instance-expired event and its follow-ups). "
        "Lag: emulator's `terminated` to the result event at the sink. fixed = REAPER_CHECK_SCHEDULE=fixed "
        "(15 s, doubling, cap 300 s); naive: `bench/naive_main.py` polls every 5 s inside the handler; ideal: "
        "one DELETE and one status call, zero idle.",
        "",
        "| schedule | fleet | calls / instance | + reads before delete | events / instance | lag median s | "
        "lag p95 s | lag p95 / T | busy ms / instance | finished |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in [*learned.values(), *fixed.values(), naive]:
        lines.append(
            f"| {row['schedule']} | {row['fleet']} | {row['calls']:.2f} | {row['reads']:.2f} | "
            f"{row['events']:.2f} | "
            f"{row['lag_median']:.1f} | {row['lag_p95']:.1f} | {row['lag_p95_share']:.0%} | {row['busy_ms']:.1f} | "
            f"{row['finished']}/{row['count']} |"
        )
    lines.append(f"| ideal | — | 2 | 0 | 1 | 0 | 0 | 0 % | {ideal['busy_ms']:.1f} | — |")
    return lines


def _throughput_section(v: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """§2: throughput and per-event cost, with the test doubles (2b) and CPU placement (2c)."""
    tp, learned, naive, best_fast, best_slow, shipped_fast, shipped_slow, at60, dbl, dbl_share = (
        v["tp"],
        v["learned"],
        v["naive"],
        v["best_fast"],
        v["best_slow"],
        v["shipped_fast"],
        v["shipped_slow"],
        v["at60"],
        v["dbl"],
        v["dbl_share"],
    )
    lines = [
        "",
        "Cold process (the warm-up deletes, learned schedule):",
        "",
        "| fleet | calls / instance | lag p95 s |",
        "|---|---|---|",
        *(
            f"| {label} | {row['cold']['calls']:.2f} | {row['cold']['lag_p95']:.1f} |"
            for label, row in learned.items()
        ),
        "",
        f"Busy time per instance, learned at T = 60 s: {at60['busy_ms']:.1f} ms vs the naive poller's "
        f"{naive['busy_ms'] / 1000:.1f} s = 1/{naive['busy_ms'] / at60['busy_ms']:,.0f}.",
        "",
        "![calls vs lag](schedule.svg)",
        "",
        "## 2. Throughput and per-event cost (functions-framework, gunicorn gthread, 1 worker)",
        "",
        "Load: `bench/load.py`, a separate asyncio process on raw keep-alive connections, ≤ 4,000 events or 8 s "
        "per run, in flight max(96, 1.5 x THREADS). Each reaper event makes three outbound calls (the guardrails' "
        "ListInstances read and the DELETE to CloudDC, then the schedule to the delay service); the no-op none. "
        "Every event is a binary-mode CloudEvent. reaper serves it on its shipped target (`handle_http`, "
        "deploy/Dockerfile's FUNCTION_TARGET), as in every section here; the no-op is a CloudEvent function "
        "(`bench/noop_main.py`), the least a function that takes the event as a CloudEvent can cost.",
        "",
        f"Placement: {placement_text(tp)} Upstream: `bench/stub_upstream.py` (asyncio, canned answers: the "
        "emulator's record of a running instance, 204 to DELETE, 202 to the schedule; nothing stored), which "
        "waits the stated latency before each CloudDC answer; every event takes the full read → DELETE → "
        "schedule path. CPU: user+system of the server's processes per answered event; upstream CPU: the stub's.",
        "",
        "| function | upstream latency | THREADS | events/s | p50 ms | p99 ms | server CPU ms/event | "
        "upstream CPU ms/event | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in tp:
        latency = "—" if row["label"] == "no-op" else f"{row['latency_ms']:.0f} ms"
        upstream = "—" if row["label"] == "no-op" else f"{row.get('upstream_ms', float('nan')):.2f}"
        lines.append(
            f"| {row['label']} | {latency} | {row['threads']} | {row['rate']:.0f} | {row['p50']:.1f} | "
            f"{row['p99']:.1f} | {row['cpu_ms']:.2f} | {upstream} | {row['errors']} |"
        )
    lines += [
        "",
        f"Shipped THREADS={SHIPPED_THREADS} (deploy/): {shipped_fast['rate']:.0f} ev/s with no upstream latency "
        f"(best: THREADS={best_fast['threads']}, {best_fast['rate']:.0f}) and {shipped_slow['rate']:.0f} ev/s with "
        f"100 ms upstream (best: THREADS={best_slow['threads']}, {best_slow['rate']:.0f}): more threads keep calls "
        "in flight while CloudDC answers, fewer contend less for the GIL; real CloudDC calls take tens to hundreds "
        "of ms.",
        "",
        "### 2b. With the emulator and delay service as upstream",
        "",
        f"No-op and reaper at THREADS={THREADS_COMPARED}, interleaved over {RUNS} runs, placed as in §2, with the "
        "emulator and the delay service (gunicorn + Flask, SQLite for the delays) answering. They are test "
        "doubles, and on the other CPU with the load generator their CPU per event is what bounds the rate.",
        "",
        "| function | events/s | server CPU ms/event | upstream CPU ms/event | errors |",
        "|---|---|---|---|---|",
        *(
            f"| {label} | {row['rate']:.0f} | {row['cpu_ms']:.2f} | "
            f"{'—' if label == 'no-op' else format(row['upstream_ms'], '.2f')} | {row['errors']} |"
            for label, row in dbl.items()
        ),
        f"| ratio | {dbl_share:.0%} | {dbl['reaper']['cpu_ms'] / dbl['no-op']['cpu_ms']:.2f}x | | |",
        "",
        "### 2c. CPU placement",
        "",
        *placement_table(results["placement"]),
    ]
    return lines


def _cold_memory_transports(v: dict[str, Any]) -> list[str]:
    """§3 to §5: cold start, memory, scheduling latency per transport."""
    cold, mem, trans, growth, drift = v["cold"], v["mem"], v["trans"], v["growth"], v["drift"]
    lines = [
        "",
        "## 3. Cold start",
        "",
        f"{cold['pairs']} pairs, no-op then reaper, started alternately; the headline is the median of the "
        f"per-pair ratios ({cold['pair_ratio_median']:.2f}; range {cold['pair_ratio_range'][0]:.2f} to "
        f"{cold['pair_ratio_range'][1]:.2f}), the rows are medians of each side.",
        "",
        "| row | no-op | reaper | ratio |",
        "|---|---|---|---|",
        f"| cold start (process start → first answered event), ms | {cold['no-op']['start_ms']:.0f} | "
        f"{cold['reaper']['start_ms']:.0f} | {cold['reaper']['start_ms'] / cold['no-op']['start_ms']:.2f} |",
        f"| import time of the function module, ms | {cold['no-op']['import_ms']:.0f} | "
        f"{cold['reaper']['import_ms']:.0f} | {cold['reaper']['import_ms'] / cold['no-op']['import_ms']:.2f} |",
        "",
        "## 4. Memory (RSS of the gunicorn worker)",
        "",
        f"The worker grows {growth:.1f} MB over its first 2,000 events (connections, caches, the allocator's "
        f"arenas), then {drift:+.1f} MB over the next {mem['events'] - 2000:,.0f}.",
        "",
        "| row | MB |",
        "|---|---|",
        f"| RSS no-op idle worker | {mem['noop_idle']:.1f} |",
        f"| RSS reaper idle worker | {mem['idle']:.1f} |",
        f"| RSS reaper after 2,000 events | {mem['after_2000']:.1f} |",
        f"| RSS reaper after {mem['events']:,.0f} events | {mem['after_10000']:.1f} |",
        "",
        "## 5. Transports: scheduling latency per follow-up",
        "",
        "`schedule(event, 3600 s, dedup key)` called in a loop from one thread; 190 timed calls per run.",
        "",
        "| transport | against | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for row in trans:
        p50 = f"{row['p50']:.2f}" if row["p50"] is not None else "—"
        p99 = f"{row['p99']:.2f}" if row["p99"] is not None else "—"
        lines.append(f"| {row['name']} | {row['against']} | {p50} | {p99} |")
    return lines


def _sweep_and_instructions(v: dict[str, Any]) -> list[str]:
    """§6 and §7: the expiry sweep and instructions per event."""
    sweep, instr = v["sweep"], v["instr"]
    lines = [
        "",
        "## 6. Expiry sweep (1,000 instances, 300 expired, delete takes 2 s)",
        "",
        "| row | value |",
        "|---|---|",
        f"| sweep handler time (list 10 pages + hand on 6 batches), ms | {sweep['sweep_ms']:.1f} |",
        f"| busy per reaped instance, all handlers, ms | {sweep['busy_per_instance_ms']:.2f} |",
        f"| API calls per reaped instance | {sweep['calls_per_instance']:.3f} |",
        f"| batch-delete calls | {sweep['batch_deletes']:.0f} |",
        f"| ListInstances calls (10 pages + batched status reads) | {sweep['lists']:.0f} |",
        f"| instances with a result | {sweep['finished']:.0f} / 300 |",
        "",
        "## 7. Instructions per event (callgrind)",
        "",
        "`valgrind --tool=callgrind` around `python -m bench.instructions`, which serves a fixed batch of "
        "instance-expired events in-process through the functions-framework app (Flask test client; the emulator "
        "and delay service run outside valgrind). Per event = (Ir of 60 events - Ir of 10 events) / 50, "
        "PYTHONHASHSEED=0: the same code gives the same count whatever else the machine is doing. reaper is "
        "counted on its shipped target (`handle_http`, deploy/Dockerfile's FUNCTION_TARGET), which reads the "
        "CloudEvent itself; the no-op every figure is compared with is a CloudEvent function, whose framework "
        "parses the event with the cloudevents SDK. For reference: reaper's CloudEvent target (`handle`: the "
        "framework's parse, then reaper's strict re-check) and an HTTP no-op that reads nothing (Flask's floor).",
        "",
        "| function | instructions per event | vs the no-op |",
        "|---|---|---|",
    ]
    if "reaper" in instr:
        lines += [
            f"| {label} | {instr[label]:,.0f} | {instr[label] / instr['no-op']:.2f}x |" for label in FUNCTIONS
        ]
    else:
        lines.append(f"| not measured | {instr.get('error', '?')} |")
    lines.append("")
    return lines


def report(results: dict[str, Any], command: str, took: float, finished: float) -> str:
    """The whole page."""
    v = _derived(results)
    lines = [
        *_headline(v, command, took, finished),
        *_cost_section(v),
        *_throughput_section(v, results),
        *_cold_memory_transports(v),
        *_sweep_and_instructions(v),
    ]
    return "\n".join(lines)


def placement_text(rows: list[dict[str, Any]]) -> str:
    """How §2 placed its processes on the CPUs."""
    if rows and all(row.get("own_cpu") for row in rows):
        return (
            "the function's gunicorn worker runs on a CPU of its own (taskset), as on a 1-vCPU allocation; "
            "the load generator, the upstream and the bench itself run on the other CPU(s)."
        )
    return "every process free to use every CPU (this machine has one, or no taskset)."


def placement_table(placed: dict[str, Any]) -> list[str]:
    """§2c: the same function on a CPU of its own and free to use every CPU, interleaved in one run."""
    if not placed:
        return ["Not measured: this machine has one CPU (or no taskset)."]
    own, free = placed["reaper, own CPU"], placed["reaper, every CPU"]
    return [
        f"No-op and reaper at THREADS={THREADS_COMPARED} with the canned upstream, interleaved over {RUNS} runs: "
        "the worker on a CPU of its own, or allowed on every CPU (sharing one with the load generator and the "
        "stub). One worker is one Python process that runs one thread at a time, so it cannot use two CPUs "
        "for its Python code; allowed on both, its threads pass the GIL between CPUs.",
        "",
        "| function | CPUs | events/s | server CPU ms/event | errors |",
        "|---|---|---|---|---|",
        *(
            f"| {name.split(',')[0]} | {name.split(', ')[1]} | {row['rate']:.0f} | {row['cpu_ms']:.2f} | "
            f"{row['errors']} |"
            for name, row in placed.items()
        ),
        "",
        f"Reaper's CPU per event on every CPU: {free['cpu_ms'] / own['cpu_ms']:.2f}x that on a CPU of its own. "
        "Deploy one worker per vCPU (deploy/README.md).",
    ]
