"""functions-framework entry points: ``handle`` (CloudEvent signature) and ``handle_http`` (HTTP).

Both are thin over one ``Reaper``. Status codes are the contract with every trigger:
2xx handled, 4xx bad request (no side effect, JSON body says why), 5xx hand-off failed (redeliver).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Final, TypeVar, cast

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import HTTPException

from function import credentials, inbound, tracing
from function.catalog import INTERNAL_TYPES
from function.errors import BadEventError, RetryableError, SettingsError, refuse_to_start
from function.inbound import envelopes
from function.inbound.auth import Authenticator, Caller
from function.inbound.bodylimit import BodyLimit
from function.reaping import Reaper
from function.runtime import authenticator, build
from function.settings import Settings

_LOG = logging.getLogger("reaper.http")
_STRUCTURED: Final = "application/cloudevents+json"
PUBSUB_PUBLISHED: Final = "google.cloud.pubsub.topic.v1.messagePublished"
QSTASH_NON_RETRYABLE: Final = 489
_ENTERED = "reaper_entered"
_CALLER = "reaper_caller"
_HEADERS = "reaper_headers"
# Only JSON is read (design §7): a browser can POST text/plain cross-site, and nothing else is ours.
_READABLE: Final = frozenset({"application/json", "application/cloudevents+json"})
_Handler = TypeVar("_Handler", bound=Callable[..., flask.Response])
# functions-framework's errorhandler is Flask's, untyped once re-exported: give it its real shape.
_errorhandler = cast(
    Callable[[type[Exception]], Callable[[_Handler], _Handler]], functions_framework.errorhandler
)


def _start() -> Reaper:
    try:
        return build(Settings.from_env())
    except SettingsError as exc:
        refuse_to_start(exc)


REAPER = _start()
AUTHENTICATOR: Authenticator = authenticator(REAPER.settings)


def _check_shape() -> flask.Response | None:
    """Refuse (415) bodies reaper does not read, before the framework parses anything."""
    request = flask.request
    if request.path == "/init":
        return None
    mimetype = request.mimetype.lower()
    if mimetype.startswith("application/cloudevents-batch"):
        return _json_error(415, "batched CloudEvents are not accepted; send one per request")
    if mimetype in _READABLE or (not mimetype and "ce-specversion" in request.headers):
        return None
    shown = mimetype or "none"
    return _json_error(
        415, f"Content-Type {shown[:60]!r} is not read; send application/json or {_STRUCTURED}"
    )


def _caller() -> Caller:
    """This request's credentials, checked lazily by the first external event that needs them."""
    caller = flask.g.get(_CALLER)
    if caller is None:
        body = flask.request.get_data(cache=True)  # cached: the framework has read it already
        caller = Caller(AUTHENTICATOR, _headers(), body)
        flask.g.setdefault(_CALLER, caller)
    return cast(Caller, caller)


def _headers() -> dict[str, str]:
    """This request's headers as a plain dict, built once (werkzeug reads them out of the WSGI environ)."""
    headers = flask.g.get(_HEADERS)
    if headers is None:
        headers = flask.g.setdefault(_HEADERS, dict(flask.request.headers.items()))
    return cast(dict[str, str], headers)


def _final_for_qstash(response: flask.Response) -> flask.Response:
    """QStash retries every non-2xx but 489 + ``Upstash-NonRetryable-Error``: say a refusal is final.

    The JSON body keeps the real status; QStash moves the message to its dead-letter queue.
    """
    if 400 <= response.status_code < 500 and "Upstash-Signature" in flask.request.headers:
        response.status_code = QSTASH_NON_RETRYABLE
        response.headers["Upstash-NonRetryable-Error"] = "true"
    return response


if flask.has_app_context():
    # functions-framework loads this module inside its app's context: configure that app.
    _app = flask.current_app
    _app.wsgi_app = BodyLimit(_app.wsgi_app, REAPER.settings.max_body_bytes)  # type: ignore[method-assign]
    _app.before_request(_check_shape)
    _app.after_request(_final_for_qstash)


def _json_error(status: int, message: str) -> flask.Response:
    response = flask.jsonify({"error": message, "status": status})
    response.status_code = status
    return response


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """CloudEvent target: the framework parsed the event; reap and let the status code speak."""
    flask.g.setdefault(_ENTERED, True)
    headers, body = _headers(), flask.request.get_data(cache=True)
    if event["type"] == PUBSUB_PUBLISHED:
        inbound_event = envelopes.pubsub_delivery(headers, body)
    else:
        # The framework parsed leniently (last duplicate key wins, a missing id invented): re-check strictly.
        inbound.check_request(headers, body)
        inbound_event = inbound.from_cloudevent(event)
    with _platform_token():
        REAPER.handle(_traced(inbound_event), _caller())


def _traced(event: inbound.InboundEvent) -> inbound.InboundEvent:
    """The HTTP ``traceparent`` header is the parent of an event that names none itself."""
    header = flask.request.headers.get("traceparent")
    if event.parent.traceparent or not header:
        return event
    parent = tracing.Parent(header[:128], (flask.request.headers.get("tracestate") or "")[:512] or None)
    return dataclasses.replace(event, parent=parent)


@functions_framework.http
def handle_http(request: flask.Request) -> flask.Response:
    """HTTP target: CloudEvents and the common envelopes (Pub/Sub push, FunctionGraph, webhooks)."""
    flask.g.setdefault(_ENTERED, True)
    if request.path == "/init":
        # FunctionGraph custom-image event functions call POST /init once before /invoke.
        return flask.jsonify({"initialized": True})
    events = envelopes.unwrap(
        _headers(),
        request.get_data(cache=True),
        max_messages=REAPER.settings.max_messages_per_request,
    )
    if len(events) == 1:
        event = events[0]
        if isinstance(event, BadEventError):
            raise event
        with _platform_token():
            return flask.jsonify(REAPER.handle(_traced(event), _caller()).as_json())
    # One rule for a batch (DMS records): the request is authenticated once, unless every message is
    # one of reaper's own signed events; then it is answered 200 with one outcome per message, a bad
    # message's outcome carrying its 4xx (redelivering the batch cannot mend it); only a retryable
    # failure fails the whole batch (5xx), so its source redelivers it.
    if not all(isinstance(e, inbound.InboundEvent) and e.type in INTERNAL_TYPES for e in events):
        _caller().authenticate()
    with _platform_token():
        return flask.jsonify({"outcomes": [_handle_one(event) for event in events]})


def _platform_token() -> AbstractContextManager[None]:
    """FunctionGraph's per-request agency credentials, when REAPER_TOKEN_FROM_REQUEST allows them."""
    if not REAPER.settings.token_from_request:
        return contextlib.nullcontext()
    return credentials.request_credentials(_headers(), REAPER.settings.project_id)


def _handle_one(event: inbound.InboundEvent | BadEventError) -> dict[str, object]:
    try:
        if isinstance(event, BadEventError):
            raise event
        return REAPER.handle(_traced(event), _caller()).as_json()
    except BadEventError as exc:
        _LOG.info("rejected message", extra={"http_status": exc.status, "error": exc.message})
        return {"error": exc.message, "status": exc.status}


@_errorhandler(BadEventError)
def _bad_event(exc: BadEventError) -> flask.Response:
    _LOG.info("rejected", extra={"http_status": exc.status, "error": exc.message})
    return _json_error(exc.status, exc.message)


def _release_replay_claims() -> None:
    """A request answered 5xx will be delivered again: let its signature through once more."""
    caller = flask.g.get(_CALLER)
    if isinstance(caller, Caller):
        caller.release()


@_errorhandler(RetryableError)
def _retryable(exc: RetryableError) -> flask.Response:
    _release_replay_claims()
    _LOG.warning("could not hand on; asking the source to redeliver", extra={"error": str(exc)})
    return _json_error(503, f"temporarily unable to hand on the work: {exc}")


@_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> flask.Response:
    status = exc.code or 400
    if status == 400:
        # The framework's own 400 text echoes request headers: answer with ours instead.
        return _not_parsed("not a CloudEvent this function accepts")
    return _json_error(status, exc.name)


@_errorhandler(Exception)
def _unexpected(exc: Exception) -> flask.Response:
    if not flask.g.get(_ENTERED):
        # functions-framework raised while parsing the request (JSON array, batch body, ...).
        return _not_parsed(f"not a CloudEvent this function accepts ({type(exc).__name__})")
    _release_replay_claims()
    _LOG.exception("unexpected error")
    return _json_error(500, "internal error")


def _not_parsed(message: str) -> flask.Response:
    return _json_error(400, message)
