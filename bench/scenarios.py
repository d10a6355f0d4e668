"""The measurements of ``make bench``: each scenario runs bounded load on loopback and returns its figures."""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench.instructions import FUNCTIONS
from bench.stack import (
    BENCH,
    NO_FOLLOW_UPS,
    NOOP_SOURCE,
    TOKEN,
    Stack,
    cpu_of_its_own,
    cpu_seconds,
    load,
    log_lines,
    rss_mb,
    served,
    worker_pid,
)
from reaper.devtools.procs import Process, free_port

ROOT = BENCH.parent
T = 60.0
RUNS = 3


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def say(text: str) -> None:
    print(text, flush=True)


def binary_event(
    instance: str, project: str, event_type: str = "instance-expired"
) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"bench-{instance}",
        "ce-source": "/bench",
        "ce-type": event_type,
        "content-type": "application/json",
    }
    return headers, json.dumps({"instance_id": instance, "project_id": project}).encode()


# -- 1. cost per reaped instance -----------------------------------------------------------------
# (label, T seconds, ± share per instance): each row runs in its own function process, all at once.
FLEETS = [
    ("T = 20 s", 20.0, 0.0),
    ("T = 60 s", 60.0, 0.0),
    ("mixed: T = 60 s ± 30 % per instance", 60.0, 0.3),
]
WARM_UP = 40  # deletes a cold process sees before the measured group (reported apart)
MEASURED = 100
SEND_RATE = 2.0  # measured instances per second, spread as a fleet's expiries are


def send_paced(url: str, project: str, ids: list[str], rate: float, timeout: float = 30.0) -> None:
    """Send instance-expired events for ``ids`` at ``rate`` per second (each answered before the next)."""
    with httpx.Client(timeout=timeout) as client:
        began = time.monotonic()
        for n, instance in enumerate(ids):
            time.sleep(max(0.0, began + n / rate - time.monotonic()))
            headers, body = binary_event(instance, project)
            client.post(url + "/", headers=headers, content=body).raise_for_status()


def cost_per_instance() -> dict[str, Any]:
    say(
        f"[1/7] cost per reaped instance: {len(FLEETS)} fleets x learned/fixed schedule, {WARM_UP} warm-up + "
        f"{MEASURED} measured deletes each, side by side"
    )
    stack = Stack(termination_seconds=T)
    rng = random.Random(20261129)
    runs: dict[str, dict[str, Any]] = {}
    try:
        for label, seconds, spread in FLEETS:
            for schedule in ("learned", "fixed"):
                key = f"{schedule}|{label}"
                process, log_path = stack.function(threads=32, REAPER_CHECK_SCHEDULE=schedule)
                project = f"cost-{schedule[0]}{len(runs)}"
                warm = [f"{project}-w{n:03d}" for n in range(WARM_UP)]
                measured = [f"{project}-m{n:03d}" for n in range(MEASURED)]
                for instance in warm + measured:
                    took = seconds * (1 + rng.uniform(-spread, spread))
                    stack.seed(project, [instance], termination_seconds=round(took, 3))
                runs[key] = {
                    "url": process.url,
                    "log": log_path,
                    "project": project,
                    "warm": warm,
                    "measured": measured,
                    "T": seconds,
                    "schedule": schedule,
                    "fleet": label,
                }
        naive, naive_log = stack.function(source=BENCH / "naive_main.py", threads=MEASURED + 16)
        naive_ids = [f"cost-naive-{n:03d}" for n in range(MEASURED)]
        stack.seed("cost-naive", naive_ids)
        runs["naive"] = {
            "url": naive.url,
            "log": naive_log,
            "project": "cost-naive",
            "warm": [],
            "measured": naive_ids,
            "T": T,
            "schedule": "naive",
            "fleet": f"T = {T:.0f} s",
        }

        def drive(run: dict[str, Any]) -> None:
            if run["schedule"] == "naive":
                threads = [
                    threading.Thread(
                        target=send_paced, args=(run["url"], run["project"], [i], 1.0, T * 4), daemon=True
                    )
                    for i in run["measured"]
                ]
                for thread in threads:
                    thread.start()
                    time.sleep(1 / SEND_RATE)
                return
            # Warm-up expiries arrive over 1.5 T, as a fleet's do: the later ones meet what the first taught.
            send_paced(run["url"], run["project"], run["warm"], len(run["warm"]) / (1.5 * run["T"]))
            deadline = time.monotonic() + run["T"] * 4
            while stack.sink.count(run["warm"]) < len(run["warm"]) and time.monotonic() < deadline:
                time.sleep(0.5)
            send_paced(run["url"], run["project"], run["measured"], SEND_RATE)

        drivers = [threading.Thread(target=drive, args=(run,), daemon=True) for run in runs.values()]
        for driver in drivers:
            driver.start()
        for driver in drivers:
            driver.join()
        everything = [i for run in runs.values() for i in run["warm"] + run["measured"]]
        deadline = time.monotonic() + T * 5
        while stack.sink.count(everything) < len(everything) and time.monotonic() < deadline:
            time.sleep(1)
        instances = stack.instances()
        log = stack.calls()
        calls: dict[str, float] = defaultdict(
            float, Counter(c["instance_id"] for c in log if c["instance_id"])
        )
        # The guardrails' read before each DELETE is a ListInstances call naming the instance: counted apart.
        # A status read shared by the deletes a process watches names several: split among them.
        reads = Counter(i for c in log if c["call"] == "list" and len(c["ids"] or ()) == 1 for i in c["ids"])
        for shared in (c["ids"] for c in log if c["call"] == "list" and len(c["ids"] or ()) > 1):
            for instance in shared:
                calls[instance] += 1 / len(shared)
        busy: dict[str, float] = defaultdict(float)
        events: Counter[str] = Counter()
        for run in runs.values():
            for line in log_lines(run["log"]):
                if line.get("message") == "handled" and line.get("instance_id"):
                    busy[str(line["instance_id"])] += float(line["busy_ms"])
                    events[str(line["instance_id"])] += 1

        def summary(ids: list[str], seconds: float) -> dict[str, float]:
            done = [i for i in ids if i in stack.sink.arrivals and instances[i].get("finished_at")]
            lags = [stack.sink.arrivals[i] - float(instances[i]["finished_at"]) for i in done]
            return {
                "busy_ms": median([busy[i] for i in ids]),
                "calls": sum(calls[i] for i in ids) / len(ids),
                "reads": sum(reads[i] for i in ids) / len(ids),
                "events": sum(events[i] for i in ids) / len(ids),
                "lag_median": median(lags),
                "lag_p95": pct(lags, 0.95),
                "lag_max": max(lags) if lags else float("nan"),
                "lag_p95_share": pct(lags, 0.95) / seconds,
                "finished": len(done),
                "count": len(ids),
            }

        rows = []
        for run in runs.values():
            row = {
                "schedule": run["schedule"],
                "fleet": run["fleet"],
                "T": run["T"],
                **summary(run["measured"], run["T"]),
            }
            if run["warm"]:
                row["cold"] = summary(run["warm"], run["T"])
            rows.append(row)
        ideal = ideal_cost(stack)
    finally:
        stack.close()
    return {"rows": rows, "ideal": ideal}


def ideal_cost(stack: Stack) -> dict[str, float]:
    """One DELETE and one status call, measured from a client with a warm connection, zero idle."""
    ids = [f"ideal-{n:03d}" for n in range(60)]
    stack.seed("ideal", ids)
    samples = []
    with httpx.Client(base_url=stack.emulator.url, headers={"X-Auth-Token": TOKEN}) as client:
        client.get("/healthz")
        for instance in ids:
            began = time.perf_counter()
            client.delete(f"/v1/ideal/instances/{instance}")
            client.get(f"/v1/ideal/instances/{instance}/status")
            samples.append((time.perf_counter() - began) * 1000)
    return {"busy_ms": median(samples[10:]), "calls": 2.0, "lag_median": 0.0, "lag_p95": 0.0, "lag_max": 0.0}


# -- 2. throughput -------------------------------------------------------------------------------
THREADS_COMPARED = 16  # the THREADS for the per-event figures
SHIPPED_THREADS = 256  # deploy/Dockerfile, Knative, Cloud Run, VM, and `reaper serve`'s default
THROUGHPUT_POINTS = [
    # (label, source, threads, CloudDC latency s)
    ("no-op", NOOP_SOURCE, THREADS_COMPARED, 0.0),
    ("reaper", None, THREADS_COMPARED, 0.0),
    ("reaper", None, 64, 0.0),
    ("reaper", None, 128, 0.0),
    ("reaper", None, 192, 0.0),
    ("reaper", None, 256, 0.0),
    ("reaper", None, 64, 0.1),
    ("reaper", None, 128, 0.1),
    ("reaper", None, 192, 0.1),
    ("reaper", None, 256, 0.1),
]


def measured_load(
    process: Process, upstream: list[Process], project: str, prefix: str, count: int, in_flight: int
) -> dict[str, Any]:
    """One bounded load run (<= 8 s), with the server's and its upstreams' CPU per answered event."""
    assert process.proc is not None
    pids = [p.proc.pid for p in upstream if p.proc is not None]
    before, upstream_before = cpu_seconds(process.proc.pid), sum(cpu_seconds(pid) for pid in pids)
    result = load(process.url + "/", project, prefix, count, in_flight, 8.0)
    answered = max(result["ok"], 1)
    result["cpu_ms"] = (cpu_seconds(process.proc.pid) - before) * 1000 / answered
    result["upstream_ms"] = (sum(cpu_seconds(pid) for pid in pids) - upstream_before) * 1000 / answered
    return result


def run_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs (errors summed)."""
    return {
        "rate": median([r["ok"] / r["seconds"] for r in results]),
        "p50": median([r["p50"] for r in results]),
        "p99": median([r["p99"] for r in results]),
        "cpu_ms": median([r["cpu_ms"] for r in results]),
        "upstream_ms": median([r["upstream_ms"] for r in results]),
        "errors": sum(r["sent"] - r["ok"] for r in results),
    }


def start_stub(stack: Stack, latency: float) -> Process:
    """``bench/stub_upstream.py`` answering as CloudDC (after ``latency``) and the delay service would."""
    port = free_port()
    name = f"stub-template-{port}"
    stack.seed(name, [name])
    listed = stack.admin.get(
        f"/v1/{name}/instances", params={"instance_id": name}, headers={"X-Auth-Token": TOKEN}
    )
    template = listed.json()["instances"][0]  # a running instance, as the emulator shows it
    argv = [sys.executable, "-m", "bench.stub_upstream", str(port), json.dumps(template), str(latency)]
    return Process(argv, port).start()


def stub_env(stub: Process) -> dict[str, str]:
    """A function's settings with CloudDC and the delay service both answered by ``stub``."""
    return {**NO_FOLLOW_UPS, "CLOUDDC_ENDPOINT": stub.url, "REAPER_DELAY_SERVICE_URL": stub.url}


def throughput() -> list[dict[str, Any]]:
    say("[2/7] throughput through gunicorn on a CPU of its own, canned upstream, <= 8 s per run")
    rows = []
    with cpu_of_its_own() as cpus:
        stack = Stack(termination_seconds=3600)
        stubs: dict[float, Process] = {}
        try:
            for index, (label, source, threads, latency) in enumerate(THROUGHPUT_POINTS):
                if latency not in stubs:
                    stubs[latency] = start_stub(stack, latency)
                stub = stubs[latency]
                process, _ = stack.function(source=source, threads=threads, cpus=cpus, **stub_env(stub))
                # Enough in flight to keep every thread busy while upstream calls wait.
                in_flight = max(96, threads * 3 // 2)
                results = [
                    measured_load(process, [stub], "tp", f"p{index}r{run}-", 4000, in_flight)
                    for run in range(RUNS)
                ]
                stack.stop_function(process)
                row = {
                    "label": label,
                    "threads": threads,
                    "latency_ms": latency * 1000,
                    "own_cpu": cpus is not None,
                    **run_summary(results),
                }
                say(
                    f"      {label:7} threads={threads:<4} latency={latency * 1000:>4.0f} ms  {row['rate']:7.1f} ev/s"
                )
                rows.append(row)
        finally:
            for stub in stubs.values():
                stub.stop()
            stack.close()
    return rows


def interleaved(
    stack: Stack,
    upstream: list[Process],
    variants: Mapping[str, tuple[Path | None, set[int] | None]],
    env: dict[str, str],
    project: str,
) -> dict[str, Any]:
    """Each variant (function source, CPUs) at THREADS=16, one after the other, RUNS times: medians of each."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for run in range(RUNS):
        for index, (name, (source, cpus)) in enumerate(variants.items()):
            process, _ = stack.function(source=source, threads=THREADS_COMPARED, cpus=cpus, **env)
            ids = f"{project}{run}v{index}-"
            if stack.emulator in upstream:
                stack.seed(project, [f"{ids}{n:06d}" for n in range(4000)])
            samples[name].append(measured_load(process, upstream, project, ids, 4000, 96))
            stack.stop_function(process)
    return {name: run_summary(runs) for name, runs in samples.items()}


def doubles() -> dict[str, Any]:
    """§2b: no-op and reaper with the emulator and delay service (the test doubles) as upstream."""
    say("[2b] no-op and reaper with the emulator and delay service as upstream, <= 8 s per run")
    with cpu_of_its_own() as cpus:
        stack = Stack(termination_seconds=3600)
        try:
            variants = {"no-op": (NOOP_SOURCE, cpus), "reaper": (None, cpus)}
            return interleaved(stack, [stack.emulator, stack.delay], variants, dict(NO_FOLLOW_UPS), "doubles")
        finally:
            stack.close()


def placement() -> dict[str, Any]:
    """§2c: no-op and reaper, canned upstream, on a CPU of their own or free to use every CPU."""
    say("[2c] CPU placement: the function on a CPU of its own vs free to move, canned upstream")
    with cpu_of_its_own() as cpus:
        if cpus is None:
            return {}
        stack = Stack(termination_seconds=3600)
        stub = start_stub(stack, 0.0)
        env = stub_env(stub)
        every = cpus | os.sched_getaffinity(0)
        variants = {
            "no-op, own CPU": (NOOP_SOURCE, cpus),
            "reaper, own CPU": (None, cpus),
            "no-op, every CPU": (NOOP_SOURCE, every),
            "reaper, every CPU": (None, every),
        }
        try:
            return interleaved(stack, [stub], variants, env, "placement")
        finally:
            stub.stop()
            stack.close()


# -- 3. cold start -------------------------------------------------------------------------------
COLD_PAIRS = 11


def cold_start() -> dict[str, Any]:
    say(
        f"[3/7] cold start: process start to first answered event, {COLD_PAIRS} interleaved pairs; import time"
    )
    stack = Stack(termination_seconds=5)
    starts: dict[str, list[float]] = {"no-op": [], "reaper": []}
    imports: dict[str, list[float]] = {"no-op": [], "reaper": []}
    sources = {"no-op": NOOP_SOURCE, "reaper": None}
    # One client for every poll: httpx.post() builds a TLS context per call (~30 ms), which would
    # quantise the measurement.
    poller = httpx.Client(timeout=5)
    try:
        for _ in range(COLD_PAIRS):
            for label, source in sources.items():
                port = free_port()
                argv = served(port, source)
                env = {**os.environ, **stack.function_env(PORT=str(port))}
                began = time.perf_counter()
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                headers, body = binary_event("cold-absent", "cold")
                while True:
                    try:
                        if poller.post(f"http://127.0.0.1:{port}/", headers=headers, content=body).is_success:
                            break
                    except httpx.TransportError:
                        time.sleep(0.002)
                starts[label].append((time.perf_counter() - began) * 1000)
                os.killpg(proc.pid, 15)
                proc.wait(10)
                module = "bench.noop_main" if source else "function.main"
                code = (
                    f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
                )
                done = subprocess.run(
                    [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
                )
                imports[label].append(float(done.stdout.strip().splitlines()[-1]) * 1000)
    finally:
        poller.close()
        stack.close()
    ratios = [r / n for r, n in zip(starts["reaper"], starts["no-op"], strict=True)]
    return {
        **{
            label: {"start_ms": median(starts[label]), "import_ms": median(imports[label])}
            for label in sources
        },
        "pairs": COLD_PAIRS,
        "pair_ratio_median": median(ratios),
        "pair_ratio_range": [min(ratios), max(ratios)],
    }


# -- 4. memory -----------------------------------------------------------------------------------
def memory() -> dict[str, float]:
    say("[4/7] memory: RSS of one idle worker, then after 2,000 and 10,000 events")
    stack = Stack(termination_seconds=3600)
    try:
        env = NO_FOLLOW_UPS
        noop, _ = stack.function(source=NOOP_SOURCE, threads=64)
        process, _ = stack.function(source=None, threads=64, cpus=None, **env)
        assert process.proc is not None
        assert noop.proc is not None
        time.sleep(1)
        worker = worker_pid(process.proc.pid)
        result = {"noop_idle": rss_mb(worker_pid(noop.proc.pid)), "idle": rss_mb(worker)}
        stack.seed("mem", [f"m{n:06d}" for n in range(10_000)])
        load(process.url + "/", "mem", "m", 2_000, 64, 60)
        result["after_2000"] = rss_mb(worker)
        ids = [f"m{n:06d}" for n in range(2_000, 10_000)]
        stack.seed("mem2", ids)
        load(process.url + "/", "mem", "x", 0, 1, 1)
        summary = load(process.url + "/", "mem2", "m", 10_000, 64, 90)
        result["events"] = 2_000 + summary["ok"]
        result["after_10000"] = rss_mb(worker)
    finally:
        stack.close()
    return result


# -- 5. transports -------------------------------------------------------------------------------
def transports() -> list[dict[str, Any]]:
    say("[5/7] scheduling latency per follow-up, per transport")
    from cloudevents.http import CloudEvent

    from function.schedulers.cloudtasks import CloudTasksScheduler
    from function.schedulers.local import LocalScheduler
    from function.schedulers.qstash import QStashScheduler
    from function.schedulers.rabbitmq import RabbitMQScheduler
    from function.secret import Secret
    from tests.fakes.cloudtasks import FakeCloudTasks
    from tests.fakes.qstash import FakeQStash

    stack = Stack(termination_seconds=5)
    tasks = FakeCloudTasks()
    qstash = FakeQStash("qstash-bench-token", "sig-bench-" + "k" * 32)
    target = "http://127.0.0.1:9/"  # never called within the measured window (delay 1 h)
    queue = "projects/bench/locations/local/queues/reaper"
    makers: list[tuple[str, str, Callable[[], Any]]] = [
        ("local", "reaper delay-service (SQLite, real)", lambda: LocalScheduler(stack.delay.url, target)),
        (
            "cloudtasks",
            "loopback fake of the REST API",
            lambda: CloudTasksScheduler(
                queue=queue,
                target_url=target,
                service_account="r@bench.iam.gserviceaccount.com",
                api_base=tasks.url,
                metadata_host=tasks.url.removeprefix("http://"),
            ),
        ),
        (
            "qstash",
            "loopback fake of the REST API",
            lambda: QStashScheduler(
                base_url=qstash.url, token=Secret("qstash-bench-token"), target_url=target
            ),
        ),
        (
            "rabbitmq",
            "real broker, publisher confirms",
            lambda: RabbitMQScheduler(Secret("amqp://guest:guest@127.0.0.1:5672/"), "reaper.bench"),
        ),
    ]
    rows = []
    try:
        for name, against, make in makers:
            try:
                scheduler = make()
                runs = []
                for run in range(RUNS):
                    samples = []
                    for n in range(200):
                        event = CloudEvent(
                            {"type": "instance-status-check", "source": "/bench", "id": f"{name}-{run}-{n}"},
                            {"n": n},
                        )
                        began = time.perf_counter()
                        scheduler.schedule(event, 3600, f"{name}-{run}-{n}-{time.time()}")
                        samples.append((time.perf_counter() - began) * 1000)
                    runs.append(samples[10:])
                scheduler.close()
                rows.append(
                    {
                        "name": name,
                        "against": against,
                        "p50": median([median(r) for r in runs]),
                        "p99": median([pct(r, 0.99) for r in runs]),
                    }
                )
            except Exception as exc:  # noqa: BLE001 - a transport that cannot run here is reported, not fatal
                rows.append(
                    {"name": name, "against": f"not measured: {type(exc).__name__}", "p50": None, "p99": None}
                )
        purge_rabbitmq("reaper.bench")
    finally:
        tasks.close()
        qstash.close()
        stack.close()
    return rows


def purge_rabbitmq(queue: str) -> None:
    import pika

    from function.schedulers import rabbitmq

    connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/"))
    channel = connection.channel()
    for name in (
        queue,
        rabbitmq.dead_queue(queue),
        *(rabbitmq.wait_queue(queue, b) for b in rabbitmq.BUCKETS_MS),
    ):
        channel.queue_delete(name)
    connection.close()


# -- 6. sweep ------------------------------------------------------------------------------------
def sweep_cost() -> dict[str, float]:
    say("[6/7] expiry sweep: 1,000 instances, 300 expired")
    stack = Stack(termination_seconds=2)
    runs = []
    try:
        process, log_path = stack.function(threads=64, REAPER_CHECK_DELAY="1")
        for run in range(RUNS):
            project = f"sweep{run}"
            specs = []
            for n in range(1000):
                expired = n % 10 < 3
                metadata = {"reaper-expires-at": "2026-01-01T00:00:00Z"} if expired else {}
                specs.append({"id": f"w{run}-{n:04d}", "project_id": project, "metadata": metadata})
            stack.admin.post("/admin/instances", json=specs).raise_for_status()
            expired_ids = [str(s["id"]) for s in specs if s["metadata"]]
            headers, _ = binary_event("-", project, "instance-sweep")
            body = json.dumps({"project_id": project}).encode()
            httpx.post(process.url + "/", headers=headers, content=body, timeout=60).raise_for_status()
            deadline = time.monotonic() + 60
            while stack.sink.count(expired_ids) < len(expired_ids) and time.monotonic() < deadline:
                time.sleep(0.5)
            lines = [
                line
                for line in log_lines(log_path)
                if line.get("message") == "handled" and line.get("project_id") == project
            ]
            sweep_ms = sum(line["busy_ms"] for line in lines if line["event_type"] == "instance-sweep")
            total_ms = sum(line["busy_ms"] for line in lines)
            calls = [c for c in stack.calls() if c["project_id"] == project]
            runs.append(
                {
                    "sweep_ms": sweep_ms,
                    "busy_per_instance_ms": total_ms / len(expired_ids),
                    "calls_per_instance": len(calls) / len(expired_ids),
                    "batch_deletes": sum(c["call"] == "batch-delete" for c in calls),
                    "lists": sum(c["call"] == "list" for c in calls),
                    "finished": stack.sink.count(expired_ids),
                }
            )
    finally:
        stack.close()
    return {key: median([r[key] for r in runs]) for key in runs[0]}


# -- 7. instructions per event -------------------------------------------------------------------
INSTRUCTION_BATCHES = (10, 60)


def instructions() -> dict[str, Any]:
    say(f"[7/7] instructions per event under callgrind (batches of {INSTRUCTION_BATCHES} events, difference)")
    if shutil.which("valgrind") is None:
        return {"error": "valgrind not installed"}
    stack = Stack(termination_seconds=3600)
    out: dict[str, Any] = {}
    try:
        env = {
            **os.environ,
            **stack.function_env(
                REAPER_SELF_URL="http://127.0.0.1:9/",
                K_SINK=stack.sink.url,
                REAPER_LOG_LEVEL="INFO",
                PYTHONHASHSEED="0",
                **NO_FOLLOW_UPS,
            ),
        }
        for index, label in enumerate(FUNCTIONS):
            totals = []
            for count in INSTRUCTION_BATCHES:
                project = f"instr-{index}-{count}"
                stack.seed(project, [f"{project}-{n:05d}" for n in range(count)])
                target = stack.workdir / f"callgrind.{index}.{count}"
                subprocess.run(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={target}",
                     sys.executable, "-m", "bench.instructions", label, str(count), project],
                    env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    timeout=600,
                )  # fmt: skip
                totals.append(callgrind_total(target))
            small, large = INSTRUCTION_BATCHES
            out[label] = (totals[1] - totals[0]) / (large - small)
    finally:
        stack.close()
    return out


def callgrind_total(path: Path) -> int:
    """The instruction count (Ir) a callgrind output file sums up."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no totals in {path}")


# -- report --------------------------------------------------------------------------------------
def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{p} {metadata.version(p)}"
        for p in (
            "functions-framework",
            "gunicorn",
            "flask",
            "httpx",
            "cloudevents",
            "fastjsonschema",
            "orjson",
        )
    )
    return [
        f"- machine: {os.cpu_count()} cores ({cpu}), {memory_gb:.0f} GiB, {platform.platform()}",
        f"- Python {platform.python_version()}; {versions}",
        "- everything on one machine: load generator, function, emulator, delay service and broker share the cores",
    ]
