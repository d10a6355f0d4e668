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
from typing import TypeVar, cast

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import HTTPException

from function import credentials, inbound, jsontext, tracing
from function.bodylimit import BodyLimit
from function.catalog import INTERNAL_TYPES
from function.errors import BadEventError, RetryableError, SettingsError, refuse_to_start
from function.inbound import envelopes
from function.inbound.admission import Admission
from function.inbound.auth import Authenticator, Caller
from function.inbound.headers import from_environ as headers_of
from function.reaping import Reaper
from function.runtime import authenticator, build
from function.settings import Settings
from function.state import StoreUnavailableError

_LOG = logging.getLogger("reaper.http")
_ARRIVAL = "reaper_arrival"
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
AUTHENTICATOR: Authenticator = authenticator(REAPER.settings, REAPER.store)


@dataclasses.dataclass(frozen=True, slots=True)
class _Arrival:
    """One request as reaper reads it: headers (lower-case names), body, and who sent it."""

    headers: dict[str, str]
    body: bytes
    caller: Caller  # checked lazily, by the first external event that needs it


def _arrival() -> _Arrival:
    """This request, read once; its presence also says reaper's own code was entered."""
    known = flask.g.get(_ARRIVAL)
    if known is None:
        request = flask.request
        headers = headers_of(request.environ)
        body = request.get_data(cache=True)  # cached: the body limit has read it already
        known = _Arrival(headers, body, Caller(AUTHENTICATOR, headers, body))
        setattr(flask.g, _ARRIVAL, known)
    return cast(_Arrival, known)


if flask.has_app_context():
    # functions-framework loads this module inside its app's context: configure that app.
    _app = flask.current_app
    # The body is read (bounded) first, then its shape is checked, before the framework parses anything.
    _app.wsgi_app = BodyLimit(Admission(_app.wsgi_app), REAPER.settings.max_body_bytes)  # type: ignore[method-assign]


def _json_error(status: int, message: str) -> flask.Response:
    return _json({"error": message, "status": status}, status)


def _json(document: object, status: int = 200) -> flask.Response:
    """A JSON answer."""
    # Sorted and compact, as flask.jsonify writes it, without building an encoder per answer.
    return flask.Response(
        jsontext.dumps(document, sort_keys=True) + b"\n", status, mimetype="application/json"
    )


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    """CloudEvent target: the framework parsed the event; reap and let the status code speak."""
    arrival = _arrival()
    if event["type"] == envelopes.PUBSUB_PUBLISHED:
        inbound_event = envelopes.pubsub_delivery(arrival.headers, arrival.body)
    else:
        # The framework parsed leniently (last duplicate key wins, a missing id invented): re-check strictly.
        inbound.check_request(arrival.headers, arrival.body)
        inbound_event = inbound.from_cloudevent(event)
    with _platform_token(arrival):
        REAPER.handle(_traced(inbound_event, arrival), arrival.caller)


def _traced(event: inbound.InboundEvent, arrival: _Arrival) -> inbound.InboundEvent:
    """The HTTP ``traceparent`` header is the parent of an event that names none itself."""
    header = arrival.headers.get("traceparent")
    if event.parent.traceparent or not header:
        return event
    parent = tracing.Parent(header[:128], (arrival.headers.get("tracestate") or "")[:512] or None)
    return event._replace(parent=parent)


@functions_framework.http
def handle_http(request: flask.Request) -> flask.Response:
    """HTTP target: CloudEvents and the common envelopes (Pub/Sub push, FunctionGraph, webhooks)."""
    arrival = _arrival()
    if request.path == "/init":
        # FunctionGraph custom-image event functions call POST /init once before /invoke.
        return _json({"initialized": True})
    events = envelopes.unwrap(
        arrival.headers, arrival.body, max_messages=REAPER.settings.max_messages_per_request
    )
    if len(events) == 1:
        event = events[0]
        if isinstance(event, BadEventError):
            raise event
        with _platform_token(arrival):
            return _json(REAPER.handle(_traced(event, arrival), arrival.caller).as_json())
    # One rule for a batch (DMS records): the request is authenticated once, unless every message is
    # one of reaper's own signed events; then it is answered 200 with one outcome per message, a bad
    # message's outcome carrying its 4xx (redelivering the batch cannot mend it); only a retryable
    # failure fails the whole batch (5xx), so its source redelivers it.
    if not all(isinstance(e, inbound.InboundEvent) and e.type in INTERNAL_TYPES for e in events):
        arrival.caller.authenticate()
    with _platform_token(arrival):
        return _json({"outcomes": [_handle_one(event, arrival) for event in events]})


def _platform_token(arrival: _Arrival) -> AbstractContextManager[None]:
    """FunctionGraph's per-request agency credentials, when REAPER_TOKEN_FROM_REQUEST allows them."""
    if not REAPER.settings.token_from_request:
        return contextlib.nullcontext()
    return credentials.request_credentials(arrival.headers, REAPER.settings.project_id)


def _handle_one(event: inbound.InboundEvent | BadEventError, arrival: _Arrival) -> dict[str, object]:
    try:
        if isinstance(event, BadEventError):
            raise event
        return REAPER.handle(_traced(event, arrival), arrival.caller).as_json()
    except BadEventError as exc:
        _LOG.info("rejected message", extra={"http_status": exc.status, "error": exc.message})
        return {"error": exc.message, "status": exc.status}


@_errorhandler(BadEventError)
def _bad_event(exc: BadEventError) -> flask.Response:
    _LOG.info("rejected", extra={"http_status": exc.status, "error": exc.message})
    return _json_error(exc.status, exc.message)


def _release_replay_claims() -> None:
    """A request answered 5xx will be delivered again: let its signature through once more."""
    arrival = flask.g.get(_ARRIVAL)
    if isinstance(arrival, _Arrival):
        try:
            arrival.caller.release()
        except StoreUnavailableError as exc:
            # The claim expires by itself; until then a redelivery with this signature is refused (401).
            _LOG.warning("replay claim not released", extra={"error": str(exc)})


@_errorhandler(RetryableError)
def _retryable(exc: RetryableError) -> flask.Response:
    _release_replay_claims()
    if not exc.recorded:  # a step's own failure is logged inside it, with its trace and its calls
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
    if flask.g.get(_ARRIVAL) is None:
        # functions-framework raised while parsing the request (JSON array, batch body, ...).
        return _not_parsed(f"not a CloudEvent this function accepts ({type(exc).__name__})")
    _release_replay_claims()
    _LOG.exception("unexpected error")
    return _json_error(500, "internal error")


def _not_parsed(message: str) -> flask.Response:
    return _json_error(400, message)
