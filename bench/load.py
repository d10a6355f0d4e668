"""A bounded load generator: binary CloudEvents over raw asyncio keep-alive connections.

A hand-written HTTP/1.1 client on purpose: httpx's async pool costs milliseconds of CPU per request
at high concurrency, which made the generator, not the server, the bottleneck on two cores.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    sent: int
    ok: int
    seconds: float
    latencies_ms: list[float]

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _request(host: str, path: str, instance: str, project: str) -> bytes:
    body = json.dumps({"instance_id": instance, "project_id": project}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"ce-specversion: 1.0\r\nce-id: load-{instance}\r\nce-source: /bench\r\n"
        f"ce-type: instance-expired\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the server closes the connection after this response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    closing = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            closing = True
    if length:
        await reader.readexactly(length)
    return status, closing


async def _run(url: str, ids: list[str], project: str, concurrency: int, max_seconds: float) -> LoadResult:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    pending = list(reversed(ids))
    latencies: list[float] = []
    counts = {"sent": 0, "ok": 0}
    deadline = time.monotonic() + max_seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while pending and time.monotonic() < deadline:
                instance = pending.pop()
                began = time.perf_counter()
                counts["sent"] += 1
                writer.write(_request(f"{host}:{port}", path, instance, project))
                try:
                    status, closing = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append((time.perf_counter() - began) * 1000)
                counts["ok"] += 200 <= status < 300
                if closing:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(ids) or 1)))))
    return LoadResult(counts["sent"], counts["ok"], time.monotonic() - started, latencies)


def run(url: str, ids: list[str], project: str, concurrency: int, max_seconds: float) -> LoadResult:
    """Send one event per id (bounded by ``max_seconds``) with ``concurrency`` connections in flight."""
    return asyncio.run(_run(url, ids, project, concurrency, max_seconds))


if __name__ == "__main__":
    # Used as a separate process: python -m bench.load URL PROJECT PREFIX COUNT CONCURRENCY SECONDS
    target, project_id, prefix, count, conc, secs = sys.argv[1:7]
    result = run(target, [f"{prefix}{n:06d}" for n in range(int(count))], project_id, int(conc), float(secs))
    summary = {
        "sent": result.sent,
        "ok": result.ok,
        "seconds": result.seconds,
        "p50": result.percentile(0.5),
        "p99": result.percentile(0.99),
    }
    print(json.dumps(summary))
