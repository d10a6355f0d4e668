"""Delivers due events from the store as structured CloudEvents, retrying with backoff or dead-lettering."""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import httpx

from function import outbound
from function.mediatypes import STRUCTURED
from reaper.companions.delay.store import DelayStore, Delivery

_LOG = logging.getLogger("reaper.delay")
_RETRY_BASE: Final = 1.0
_RETRY_CAP: Final = 300.0
_MAX_ATTEMPTS: Final = 50
_RETENTION: Final = 7 * 24 * 3600.0
_BATCH: Final = 64
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})


class Dispatcher:
    """Delivers due events from the store on a small worker pool; wakes early on new schedules."""

    def __init__(self, store: DelayStore, *, workers: int = 8, timeout: float = 10.0) -> None:
        self._store = store
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver")
        self._http = outbound.client(timeout=timeout)
        self._thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)

    def start(self) -> None:
        """Begin delivering."""
        self._thread.start()

    def wake(self) -> None:
        """Something new was scheduled: look again now."""
        self._wake.set()

    def stop(self) -> None:
        """Stop taking new work and wait for deliveries in progress."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def _loop(self) -> None:
        last_prune = 0.0
        while not self._stop.is_set():
            now = time.time()
            for delivery in self._store.claim_due(now, _BATCH):
                self._pool.submit(self._deliver, delivery)
            if now - last_prune > 3600:
                self._store.prune(now - _RETENTION)
                last_prune = now
            next_due = self._store.next_due()
            wait = 1.0 if next_due is None else min(max(next_due - time.time(), 0.02), 1.0)
            self._wake.wait(wait)
            self._wake.clear()

    def _deliver(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            response = self._http.post(
                delivery.target,
                content=delivery.body,
                headers={"Content-Type": STRUCTURED},
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        if status is not None and 200 <= status < 300:
            self._store.delivered(delivery.dedup_key, status)
            _LOG.info(
                "delivered",
                extra={"dedup_key": delivery.dedup_key, "http_status": status, "latency_ms": latency_ms},
            )
            return
        if status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX:
            # The function refused the event itself: asking again cannot change its mind.
            self._store.give_up(delivery.dedup_key, status, "refused")
            _LOG.error(
                "delivery refused; dead-lettered",
                extra={"dedup_key": delivery.dedup_key, "http_status": status},
            )
            return
        attempts = delivery.attempts + 1
        if attempts >= _MAX_ATTEMPTS:
            self._store.give_up(delivery.dedup_key, status, error)
            _LOG.error(
                "delivery abandoned",
                extra={"dedup_key": delivery.dedup_key, "http_status": status, "error": error},
            )
            return
        backoff = min(_RETRY_CAP, _RETRY_BASE * 2.0 ** (attempts - 1)) * (0.5 + random.random() / 2)
        self._store.retry_at(delivery.dedup_key, time.time() + backoff, status, error)
        self._wake.set()
        _LOG.warning(
            "delivery failed; will retry",
            extra={
                "dedup_key": delivery.dedup_key,
                "http_status": status,
                "error": error,
                "attempts": attempts,
                "retry_in": round(backoff, 2),
            },
        )
