"""Turn an incoming request into one validated event, or a ``BadEventError`` saying what is wrong.

Accepts CloudEvents in binary and structured mode (also structured JSON sent as
``application/json``); batch mode is refused with 415. A request is read here directly, not through
the cloudevents SDK: reaper needs six attributes and the data, and the SDK's objects cost more than
the rest of the parse (docs/performance-notes.md). The SDK stays the CloudEvent target's parser, and
the tests' oracle: ``tests/unit/test_parse_fuzz.py`` checks both read every request alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from function.catalog import INBOUND_TYPES, INSTANCE_SWEEP, TYPE_ALIASES
from function.errors import BadEventError
from function.inbound import strictjson
from function.mediatypes import STRUCTURED
from function.signing import EXTENSION
from function.tracing.context import Parent

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

BATCH: Final = "application/cloudevents-batch+json"
_REQUIRED_ATTRIBUTES: Final = {"id": 256, "source": 1024, "type": 256, "specversion": 16}
_SPECVERSIONS: Final = ("1.0", "0.3")  # what the cloudevents SDK reads, and so the CloudEvent target


class InboundEvent(NamedTuple):
    """The parts of an incoming CloudEvent the function uses."""

    id: str
    type: str
    source: str
    subject: str | None
    data: dict[str, Any]
    signature: str | None = None  # the ``reapersignature`` extension: internal events only
    # Where it comes from in a trace: its ``traceparent``, ``tracestate`` and ``reaperstep`` extensions.
    parent: Parent = Parent()


def from_cloudevent(event: CloudEvent) -> InboundEvent:
    """Check an event the framework already parsed."""
    # One read-only view: each SDK accessor call costs as much again.
    return _event(event.get_attributes(), event.get_data())


def _event(attributes: Mapping[str, object], data: object) -> InboundEvent:
    """The event these context attributes (lower-case names) and data make, checked."""
    event_type = str(attributes["type"])
    event_type = TYPE_ALIASES.get(event_type, event_type)
    if event_type not in INBOUND_TYPES:
        raise BadEventError(f"unknown event type {event_type!r}; accepted: {', '.join(INBOUND_TYPES)}")
    if isinstance(data, bytes | bytearray):
        data = _decode_json(bytes(data), "data")
    if data is None and event_type == INSTANCE_SWEEP:
        data = {}  # a bare scheduler tick sweeps the default project
    if not isinstance(data, dict):
        raise BadEventError("event data must be a JSON object", status=422)
    subject = attributes.get("subject")
    signature = attributes.get(EXTENSION)
    parent = Parent(
        traceparent=_text(attributes.get("traceparent")),
        tracestate=_text(attributes.get("tracestate")),
        step=_text(attributes.get("reaperstep")),
    )
    return InboundEvent(
        id=str(attributes["id"]),
        type=event_type,
        source=str(attributes["source"]),
        subject=str(subject) if subject is not None else None,
        data=data,
        signature=str(signature) if signature is not None else None,
        parent=parent,
    )


def _text(value: object) -> str | None:
    return str(value)[:1024] if value is not None else None


def check_attributes(attributes: Mapping[str, object]) -> None:
    """The required attributes as the sender sent them (the SDK would invent a missing id), sanely sized."""
    for name, limit in _REQUIRED_ATTRIBUTES.items():
        value = attributes.get(name)
        if not isinstance(value, str) or not value.strip():
            raise BadEventError(f"CloudEvent attribute {name!r} is missing or empty")
        if len(value) > limit:
            raise BadEventError(f"CloudEvent attribute {name!r} is longer than {limit} characters")
    if attributes["specversion"] not in _SPECVERSIONS:
        raise BadEventError(
            f"CloudEvents specversion {attributes['specversion']!r} is not read; send {_SPECVERSIONS[0]}"
        )


def binary_attributes(lowered: Mapping[str, str]) -> dict[str, str]:
    """The context attributes of a binary-mode request, from its headers with lower-cased names."""
    return {k[3:]: v for k, v in lowered.items() if k.startswith("ce-")}


def from_request(headers: Mapping[str, str], body: bytes) -> InboundEvent:
    """Parse a raw HTTP request (binary or structured CloudEvent)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if content_type == BATCH:
        raise BadEventError("batched CloudEvents are not accepted; send one per request", 415)
    if _structured(lowered, content_type):
        return from_document(_decode_json(body, "body"))
    if "ce-specversion" not in lowered:
        raise BadEventError(
            f"not a CloudEvent: send binary mode (ce-* headers) or structured mode ({STRUCTURED})",
            status=415 if content_type else 400,
        )
    attributes = binary_attributes(lowered)
    check_attributes(attributes)
    return _event(attributes, body or None)


def check_request(headers: Mapping[str, str], body: bytes) -> None:
    """Refuse what a lenient parser let through: duplicate keys, deep nesting, missing or huge attributes."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if _structured(lowered, content_type):
        document = _decode_json(body, "body")
        check_attributes(document if isinstance(document, dict) else {})
    else:
        check_attributes(binary_attributes(lowered))
        _decode_json(body, "data")


def _structured(lowered: Mapping[str, str], content_type: str) -> bool:
    """Structured mode is said by the content type, whatever ce- headers ride along."""
    return content_type == STRUCTURED or (
        "ce-specversion" not in lowered and content_type == "application/json"
    )


def from_document(document: object) -> InboundEvent:
    """An event from a parsed structured-mode document."""
    if not isinstance(document, dict):
        raise BadEventError("a structured CloudEvent must be a JSON object")
    if "specversion" not in document:
        raise BadEventError("not a CloudEvent: 'specversion' is missing")
    check_attributes(document)
    return _event(document, document.get("data"))


def _decode_json(raw: bytes, what: str) -> object:
    return strictjson.loads(raw, what) if raw else None
