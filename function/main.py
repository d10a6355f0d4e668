"""functions-framework entry points: ``handle`` (CloudEvent signature) and ``handle_http`` (HTTP).

Both are thin over one ``Reaper``. Status codes are the contract with every trigger:
2xx handled, 4xx bad request (no side effect, JSON body says why), 5xx hand-off failed (redeliver).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar, cast

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import HTTPException

from function import credentials, envelopes, inbound
from function.errors import BadEventError, RetryableError, SettingsError
from function.reaping import Reaper
from function.runtime import build, qstash_verifier
from function.settings import Settings

_LOG = logging.getLogger("reaper.http")
_ENTERED = "reaper_entered"
_Handler = TypeVar("_Handler", bound=Callable[..., flask.Response])
# functions-framework's errorhandler is Flask's, untyped once re-exported: give it its real shape.
_errorhandler = cast(
    Callable[[type[Exception]], Callable[[_Handler], _Handler]], functions_framework.errorhandler
)


def _start() -> Reaper:
    try:
        return build(Settings.from_env())
    except SettingsError as exc:
        # One clear line, not a traceback: a bad setting is an operator's typo.
        print(f"reaper: bad setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


REAPER = _start()
QSTASH_VERIFIER = qstash_verifier(REAPER.settings)


def _verify_qstash() -> None:
    """Refuse (401) a delivery without a valid Upstash-Signature, before anything else runs."""
    assert QSTASH_VERIFIER is not None
    body = flask.request.get_data(cache=True)  # cached: the framework parses it afterwards
    QSTASH_VERIFIER.verify(flask.request.headers.get("Upstash-Signature"), body)


if flask.has_app_context():
    # functions-framework loads this module inside its app's context: configure that app.
    flask.current_app.config["MAX_CONTENT_LENGTH"] = REAPER.settings.max_body_bytes
    if QSTASH_VERIFIER is not None:
        flask.current_app.before_request(_verify_qstash)


def _json_error(status: int, message: str) -> flask.Response:
    response = flask.jsonify({"error": message, "status": status})
    response.status_code = status
    return response


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """CloudEvent target: the framework parsed the event; reap and let the status code speak."""
    flask.g.setdefault(_ENTERED, True)
    with _platform_token():
        REAPER.handle(inbound.from_cloudevent(event))


@functions_framework.http
def handle_http(request: flask.Request) -> flask.Response:
    """HTTP target: CloudEvents and the common envelopes (Pub/Sub push, FunctionGraph, webhooks)."""
    flask.g.setdefault(_ENTERED, True)
    if request.path == "/init":
        # FunctionGraph custom-image event functions call POST /init once before /invoke.
        return flask.jsonify({"initialized": True})
    events = envelopes.unwrap(
        dict(request.headers.items()),
        request.get_data(cache=False),
        webhook_secret=REAPER.settings.webhook_secret,
        now=time.time(),
    )
    if len(events) == 1:
        event = events[0]
        if isinstance(event, BadEventError):
            raise event
        with _platform_token():
            return flask.jsonify(REAPER.handle(event).as_json())
    if all(isinstance(e, BadEventError) for e in events):
        raise BadEventError("no usable message in the batch: " + "; ".join(map(str, events)))
    # One bad message does not stop the rest; a retryable failure still fails the batch (5xx).
    with _platform_token():
        return flask.jsonify({"outcomes": [_handle_one(event) for event in events]})


def _platform_token() -> AbstractContextManager[None]:
    """FunctionGraph's per-request agency token, when REAPER_TOKEN_FROM_REQUEST allows it."""
    header = flask.request.headers.get("X-CFF-Auth-Token") if REAPER.settings.token_from_request else None
    return credentials.request_token(header)


def _handle_one(event: inbound.InboundEvent | BadEventError) -> dict[str, object]:
    try:
        if isinstance(event, BadEventError):
            raise event
        return REAPER.handle(event).as_json()
    except BadEventError as exc:
        _LOG.info("rejected message", extra={"http_status": exc.status, "error": exc.message})
        return {"error": exc.message, "status": exc.status}


@_errorhandler(BadEventError)
def _bad_event(exc: BadEventError) -> flask.Response:
    _LOG.info("rejected", extra={"http_status": exc.status, "error": exc.message})
    return _json_error(exc.status, exc.message)


@_errorhandler(RetryableError)
def _retryable(exc: RetryableError) -> flask.Response:
    _LOG.warning("could not hand on; asking the source to redeliver", extra={"error": str(exc)})
    return _json_error(503, f"temporarily unable to hand on the work: {exc}")


@_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> flask.Response:
    status = exc.code or 400
    if status == 400:
        # The framework's own 400 text echoes request headers: answer with ours instead.
        return _not_parsed("not a CloudEvent this function accepts")
    message = f"body larger than {REAPER.settings.max_body_bytes} bytes" if status == 413 else exc.name
    if status == 413:
        # The HTTP signature's after_request hook re-reads the body unless the response is
        # streamed; re-reading an oversized body raises again and turns our 413 into a 500.
        body = flask.json.dumps({"error": message, "status": status})
        return flask.Response(iter([body]), status=status, mimetype="application/json")
    return _json_error(status, message)


@_errorhandler(Exception)
def _unexpected(exc: Exception) -> flask.Response:
    if not flask.g.get(_ENTERED):
        # functions-framework raised while parsing the request (JSON array, batch body, ...).
        return _not_parsed(f"not a CloudEvent this function accepts ({type(exc).__name__})")
    _LOG.exception("unexpected error")
    return _json_error(500, "internal error")


def _not_parsed(message: str) -> flask.Response:
    content_type = (flask.request.content_type or "").lower()
    if content_type.startswith("application/cloudevents-batch"):
        return _json_error(415, "batched CloudEvents are not accepted; send one per request")
    return _json_error(400, message)
