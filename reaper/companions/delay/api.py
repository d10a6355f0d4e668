"""The schedule API: ``POST /v1/events`` (strictly read, capped, allowlisted) and an operator's view."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import flask

from function import jsontext
from function.bodylimit import BodyLimit
from reaper.companions.delay.allowlist import target_allowed
from reaper.companions.delay.dispatcher import Dispatcher
from reaper.companions.delay.store import DelayStore
from reaper.servers import json_response

_LOG = logging.getLogger("reaper.delay")
MAX_DELAY: Final = 30 * 24 * 3600.0
MAX_BODY_BYTES: Final = 256 * 1024


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
