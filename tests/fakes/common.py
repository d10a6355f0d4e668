"""Shared machinery for loopback fakes of hosted delay services: a server thread and a delivery loop."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from reaper.servers import threaded_server


@dataclass(order=True)
class Pending:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    headers: dict[str, str] = field(compare=False)
    attempts: int = field(default=0, compare=False)


class DelayedDelivery:
    """Delivers queued requests when due, retrying non-2xx a few times, like the hosted services do."""

    def __init__(
        self,
        sign: Callable[[Pending], dict[str, str]] | None = None,
        final: Callable[[httpx.Response], bool] = lambda response: False,
    ) -> None:
        self._heap: list[Pending] = []
        self._final = final
        self._seq = itertools.count()
        self._lock = threading.Condition()
        self._sign = sign
        self._stop = False
        self.delivered: list[tuple[float, Pending, int]] = []
        self._http = httpx.Client(timeout=10)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def add(self, due: float, url: str, body: bytes, headers: dict[str, str]) -> None:
        with self._lock:
            heapq.heappush(self._heap, Pending(due, next(self._seq), url, body, headers))
            self._lock.notify()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._thread.join(5)
        self._http.close()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stop and (not self._heap or self._heap[0].due > time.time()):
                    timeout = None if not self._heap else max(self._heap[0].due - time.time(), 0)
                    self._lock.wait(timeout if timeout is not None else 0.5)
                if self._stop:
                    return
                item = heapq.heappop(self._heap)
            headers = {**item.headers, **(self._sign(item) if self._sign else {})}
            try:
                response: httpx.Response | None = self._http.post(
                    item.url, content=item.body, headers=headers
                )
            except httpx.HTTPError:
                response = None
            status = response.status_code if response is not None else 0
            self.delivered.append((time.time(), item, status))
            final = response is not None and self._final(response)
            if not 200 <= status < 300 and not final and item.attempts < 5:
                item.attempts += 1
                self.add(time.time() + 1, item.url, item.body, item.headers)


class LoopbackServer:
    """Runs a WSGI app on 127.0.0.1 in a thread."""

    def __init__(self, app: Any) -> None:
        self.server = threaded_server("127.0.0.1", 0, app)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
