"""Turn an incoming request into one validated event, or a ``BadEventError`` saying what is wrong.

Accepts CloudEvents in binary and structured mode (also structured JSON sent as
``application/json``); batch mode is refused with 415.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cloudevents import exceptions as ce_errors
from cloudevents.http import CloudEvent, from_dict, from_http

from function.catalog import INBOUND_TYPES, INSTANCE_SWEEP, TYPE_ALIASES
from function.errors import BadEventError
from function.signing import EXTENSION

_BATCH: Final = "application/cloudevents-batch+json"
_STRUCTURED: Final = "application/cloudevents+json"


@dataclass(frozen=True)
class InboundEvent:
    """The parts of an incoming CloudEvent the function uses."""

    id: str
    type: str
    source: str
    subject: str | None
    data: dict[str, Any]
    signature: str | None = None  # the ``reapersignature`` extension: internal events only


def from_cloudevent(event: CloudEvent) -> InboundEvent:
    """Check an event the framework already parsed."""
    event_type = str(event["type"])
    event_type = TYPE_ALIASES.get(event_type, event_type)
    if event_type not in INBOUND_TYPES:
        raise BadEventError(f"unknown event type {event_type!r}; accepted: {', '.join(INBOUND_TYPES)}")
    data = event.get_data()
    if isinstance(data, bytes | bytearray):
        data = _decode_json(bytes(data), "data")
    if data is None and event_type == INSTANCE_SWEEP:
        data = {}  # a bare scheduler tick sweeps the default project
    if not isinstance(data, dict):
        raise BadEventError("event data must be a JSON object", status=422)
    subject = event.get("subject")
    signature = event.get(EXTENSION)
    return InboundEvent(
        id=str(event["id"]),
        type=event_type,
        source=str(event["source"]),
        subject=str(subject) if subject is not None else None,
        data=data,
        signature=str(signature) if signature is not None else None,
    )


def from_request(headers: Mapping[str, str], body: bytes) -> InboundEvent:
    """Parse a raw HTTP request (binary or structured CloudEvent)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if content_type == _BATCH:
        raise BadEventError("batched CloudEvents are not accepted; send one per request", 415)
    try:
        if "ce-specversion" in lowered:
            event = from_http(dict(lowered), body, data_unmarshaller=_raw)
        elif content_type in (_STRUCTURED, "application/json"):
            document = _decode_json(body, "body")
            if not isinstance(document, dict):
                raise BadEventError("a structured CloudEvent must be a JSON object")
            if "specversion" not in document:
                raise BadEventError("not a CloudEvent: 'specversion' is missing")
            event = from_dict(document)
        else:
            raise BadEventError(
                f"not a CloudEvent: send binary mode (ce-* headers) or structured mode ({_STRUCTURED})",
                status=415 if content_type else 400,
            )
    except ce_errors.GenericException as exc:
        raise BadEventError(f"not a valid CloudEvent: {_first_line(exc)}") from None
    return from_cloudevent(event)


def _raw(body: bytes | str | None) -> bytes | str | None:
    return body


def _decode_json(raw: bytes, what: str) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadEventError(f"{what} is not valid UTF-8 JSON") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
