"""``reaper delay-service``: the embedded default delay transport (design §6, ``local``).

A loopback-only HTTP service that stores each scheduled event in SQLite and POSTs it, as a
structured CloudEvent, to its target when due; 5xx answers, 408/429 and transport failures are
retried with backoff, other 4xx answers are dead-lettered at once (kept, and listed by
``GET /v1/events``). Survives restarts (pending rows are delivered after the restart) and ignores
duplicate dedup keys.

It is no open relay for other local processes: targets must match one of ``--allow-target``
(default: ``REAPER_SELF_URL``), schedule bodies are capped and parsed strictly, and its database
files are readable by their owner only.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import flask
import httpx
from werkzeug.serving import BaseWSGIServer

from function import jsontext, outbound
from function.bodylimit import BodyLimit
from function.delaystore import DelayStore, Delivery
from function.wsgi import json_response, threaded_server

_LOG = logging.getLogger("reaper.delay")
MAX_DELAY: Final = 30 * 24 * 3600.0
_RETRY_BASE: Final = 1.0
_RETRY_CAP: Final = 300.0
_MAX_ATTEMPTS: Final = 50
_RETENTION: Final = 7 * 24 * 3600.0
_BATCH: Final = 64
MAX_BODY_BYTES: Final = 256 * 1024
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})
ANY_PORT: Final = ":*"


def target_allowed(target: str, allowed: tuple[str, ...]) -> bool:
    """True when ``target`` has the scheme, host and port of an allowed URL and lies under its path.

    An allowed URL may say ``:*`` for its port (any port on that host: the test suite's many functions).
    """
    try:
        wanted = urlsplit(target)
        port = wanted.port or (443 if wanted.scheme == "https" else 80)
    except ValueError:
        return False
    if not wanted.hostname:
        return False
    for pattern in allowed:
        any_port = ANY_PORT in pattern
        rule = urlsplit(pattern.replace(ANY_PORT, "", 1))
        rule_port = rule.port or (443 if rule.scheme == "https" else 80)
        if (
            rule.scheme == wanted.scheme
            and rule.hostname == wanted.hostname
            and (any_port or rule_port == port)
            and (wanted.path or "/").startswith(rule.path or "/")
        ):
            return True
    return False


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
                headers={"Content-Type": "application/cloudevents+json"},
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


def create_app(store: DelayStore, dispatcher: Dispatcher, allowed_targets: tuple[str, ...]) -> flask.Flask:
    """The schedule API: ``POST /v1/events`` and a read-only view for operators and tests."""
    app = flask.Flask("reaper-delay-service")
    app.wsgi_app = BodyLimit(app.wsgi_app, MAX_BODY_BYTES)  # type: ignore[method-assign]

    @app.post("/v1/events")
    def schedule() -> flask.Response:
        try:
            body = jsontext.loads(flask.request.get_data())
        except jsontext.UnreadableError as exc:
            return json_response({"error": str(exc)}, 400)
        problem = _check_request(body, allowed_targets)
        if problem:
            return json_response({"error": problem}, 400)
        assert isinstance(body, dict)
        now = time.time()
        due_at = now + float(body["delay_seconds"])
        payload = json.dumps(body["event"], separators=(",", ":")).encode()
        added = store.add(str(body["dedup_key"]), str(body["target"]), payload, due_at, now)
        if added:
            dispatcher.wake()
        return json_response({"duplicate": not added, "due_at": due_at}, 202 if added else 200)

    @app.get("/v1/events")
    def overview() -> flask.Response:
        return json_response(
            {"counts": store.counts(), "next_due": store.next_due(), "dead": store.dead()}, 200
        )

    @app.get("/healthz")
    def healthz() -> flask.Response:
        return json_response({"ok": True}, 200)

    return app


def _check_request(body: Any, allowed_targets: tuple[str, ...]) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    target = body.get("target")
    if not isinstance(target, str) or urlsplit(target).scheme not in ("http", "https"):
        return "target must be an http(s) URL"
    if not target_allowed(target, allowed_targets):
        return "target is not one this delay service delivers to (see --allow-target)"
    delay = body.get("delay_seconds")
    if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay <= MAX_DELAY:
        return f"delay_seconds must be a number from 0 to {int(MAX_DELAY)}"
    key = body.get("dedup_key")
    if not isinstance(key, str) or not 0 < len(key) <= 256:
        return "dedup_key must be a string of 1 to 256 characters"
    event = body.get("event")
    if not isinstance(event, dict) or not all(
        isinstance(event.get(a), str) for a in ("specversion", "id", "source", "type")
    ):
        return "event must be a structured CloudEvent object"
    return None


def wsgi_app(db_path: Path | str, allowed_targets: tuple[str, ...]) -> flask.Flask:
    """The service as a WSGI app with its store and a running dispatcher (for gunicorn's worker)."""
    store = DelayStore(db_path)
    dispatcher = Dispatcher(store)
    dispatcher.start()
    _LOG.info("delay service ready", extra={"db": str(db_path), "allowed_targets": list(allowed_targets)})
    return create_app(store, dispatcher, allowed_targets)


class DelayService:
    """The store, the dispatcher and the HTTP server, started and stopped together."""

    def __init__(self, host: str, port: int, db_path: Path | str, allowed_targets: tuple[str, ...]) -> None:
        if not is_loopback(host):
            raise ValueError(f"the delay service listens on loopback only, not {host!r}")
        self.store = DelayStore(db_path)
        self.dispatcher = Dispatcher(self.store)
        app = create_app(self.store, self.dispatcher, allowed_targets)
        self.server: BaseWSGIServer = threaded_server(host, port, app)

    def serve_forever(self) -> None:
        """Run until ``shutdown`` (or a signal) stops the server."""
        self.dispatcher.start()
        _LOG.info("delay service listening", extra={"port": self.server.server_port})
        try:
            self.server.serve_forever()
        finally:
            self.dispatcher.stop()
            self.store.close()

    def shutdown(self) -> None:
        """Stop serving (from another thread)."""
        self.server.shutdown()
