"""A bounded load generator: POST binary CloudEvents from an asyncio client, count and time them."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass

import httpx


@dataclass
class LoadResult:
    sent: int
    ok: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(url: str, ids: list[str], project: str, concurrency: int, max_seconds: float) -> LoadResult:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for instance in ids:
        queue.put_nowait(instance)
    latencies: list[float] = []
    ok = 0
    sent = 0
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal ok, sent
            while time.monotonic() < deadline:
                try:
                    instance = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                headers = {
                    "ce-specversion": "1.0",
                    "ce-id": f"load-{instance}",
                    "ce-source": "/bench",
                    "ce-type": "instance-expired",
                    "content-type": "application/json",
                }
                body = json.dumps({"instance_id": instance, "project_id": project}).encode()
                began = time.perf_counter()
                sent += 1
                response = await client.post(url, headers=headers, content=body)
                latencies.append((time.perf_counter() - began) * 1000)
                ok += response.is_success

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - started
    return LoadResult(sent, ok, seconds, latencies)


def run(url: str, ids: list[str], project: str, concurrency: int, max_seconds: float) -> LoadResult:
    """Send one event per id (bounded by ``max_seconds``) with ``concurrency`` in flight."""
    return asyncio.run(_run(url, ids, project, concurrency, max_seconds))


if __name__ == "__main__":
    # Used as a separate process: python -m bench.load URL PROJECT PREFIX COUNT CONCURRENCY SECONDS
    target, project_id, prefix, count, conc, secs = sys.argv[1:7]
    result = run(target, [f"{prefix}{n:06d}" for n in range(int(count))], project_id, int(conc), float(secs))
    print(
        json.dumps(
            {
                "sent": result.sent,
                "ok": result.ok,
                "seconds": result.seconds,
                "p50": result.percentile(0.5),
                "p99": result.percentile(0.99),
                "median": statistics.median(result.latencies_ms) if result.latencies_ms else None,
            }
        )
    )
