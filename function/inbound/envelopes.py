"""Recognise the envelopes events arrive in and unwrap them into CloudEvents (``handle_http`` only).

Accepted, detected automatically:
- CloudEvents, binary or structured (also structured JSON sent as ``application/json``, as EventGrid does);
- Google Pub/Sub push: ``{"message": {"data": <base64>, "attributes", "messageId"}, "subscription"}``
  whose data is an instance-expired payload, a sweep request or a structured CloudEvent;
- Huawei FunctionGraph event invocations: timer triggers (``user_event`` string) and DMS RabbitMQ / Kafka
  trigger records (``records[].messages[]``); EventGrid delivers CloudEvents, handled above;
- a plain JSON webhook ``{"instance_id": ..., "project_id": ...}``.

Unwrapping says nothing about trust: who sent the request is checked for every envelope alike
(``function.inbound.auth``), and at most ``max_messages`` events are taken from one request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any, Final

from function import catalog
from function.errors import BadEventError
from function.inbound import strictjson
from function.inbound.events import (
    InboundEvent,
    binary_attributes,
    check_attributes,
    from_document,
    from_request,
)

# Pub/Sub as a CloudEvent: functions-framework's conversion of a push, and Eventarc's delivery.
PUBSUB_PUBLISHED: Final = "google.cloud.pubsub.topic.v1.messagePublished"
ACCEPTED: Final = (
    "a CloudEvent (binary or structured), a Pub/Sub push message, a FunctionGraph timer or "
    "DMS RabbitMQ/Kafka trigger event, or a JSON webhook {instance_id, project_id}"
)


def unwrap(
    headers: Mapping[str, str], body: bytes, *, max_messages: int
) -> list[InboundEvent | BadEventError]:
    """The events carried by one request, in order; ``BadEventError`` when it is none of the shapes.

    In a multi-message envelope (DMS records) a bad message is returned as its error, in its place,
    so one bad message does not stop the rest; more than ``max_messages`` messages is a 413.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if "ce-specversion" in lowered:
        if lowered.get("ce-type") == PUBSUB_PUBLISHED:
            return [pubsub_delivery(lowered, body)]  # Eventarc's Pub/Sub delivery, binary mode
        return [from_request(lowered, body)]
    if content_type.startswith("application/cloudevents"):
        if _type_of(body) == PUBSUB_PUBLISHED:
            return [pubsub_delivery(lowered, body)]
        return [from_request(lowered, body)]
    document = _json(body)
    if not isinstance(document, dict):
        raise BadEventError(f"unrecognised request: expected {ACCEPTED}")
    if "specversion" in document:
        if document.get("type") == PUBSUB_PUBLISHED:
            return [pubsub_delivery(lowered, body)]
        return [from_document(document)]
    message = document.get("message")
    if isinstance(message, dict) and "data" in message:
        return [_pubsub(message, str(document.get("subscription", "pubsub")))]
    trigger = str(document.get("trigger_type", "")).upper()
    if trigger == "TIMER" and "user_event" in document:
        return [_timer(document)]
    if isinstance(document.get("records"), list) and trigger in (
        "RABBITMQ",
        "KAFKA",
        "DMS_RABBITMQ",
        "DMS_KAFKA",
        "",
    ):
        return _dms_records(document, trigger or "DMS", max_messages)
    if "instance_id" in document:
        webhook_id = lowered.get("webhook-id")
        event_id = f"webhook-{webhook_id}" if webhook_id else "webhook-" + _digest(body)
        return [_payload(document, event_id=event_id[:256], source="/webhook")]
    raise BadEventError(f"unrecognised request: expected {ACCEPTED}")


def _type_of(body: bytes) -> object:
    """The ``type`` of a structured CloudEvent body (None when it is not one; its reader says why)."""
    try:
        document = _json(body)
    except BadEventError:
        return None
    return document.get("type") if isinstance(document, dict) else None


def pubsub_delivery(headers: Mapping[str, str], body: bytes) -> InboundEvent:
    """The event inside a ``google.cloud.pubsub.topic.v1.messagePublished`` delivery.

    functions-framework turns a Pub/Sub push into that CloudEvent, and Eventarc delivers Pub/Sub to
    Cloud Run functions as one (binary mode); either way its data is the push body.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if "ce-specversion" in lowered:
        check_attributes(binary_attributes(lowered))
        payload = _json(body)
    else:
        document = _json(body)
        if isinstance(document, dict) and "specversion" in document:
            check_attributes(document)
            payload = document.get("data")
        else:
            payload = document  # a plain push the framework converted
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, dict) or "data" not in message:
        raise BadEventError("a Pub/Sub messagePublished event must carry data.message.data", status=422)
    assert isinstance(payload, dict)
    return _pubsub(message, str(payload.get("subscription") or "pubsub"))


def _json(raw: bytes) -> Any:
    try:
        return strictjson.loads(raw)
    except BadEventError as exc:
        raise BadEventError(f"{exc.message}: expected {ACCEPTED}") from None


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:32]


def _payload(
    data: dict[str, Any], *, event_id: str, source: str, event_type: str | None = None
) -> InboundEvent:
    """An event from a bare payload: a sweep request when it says so, else an expiry."""
    kind = event_type or str(data.get("type") or "")
    if kind not in (catalog.INSTANCE_SWEEP, catalog.INSTANCE_EXPIRED):
        kind = catalog.INSTANCE_SWEEP if data.get("sweep") is True else catalog.INSTANCE_EXPIRED
    fields = {k: v for k, v in data.items() if k not in ("type", "sweep")}
    subject = fields.get("instance_id") if isinstance(fields.get("instance_id"), str) else None
    return InboundEvent(id=event_id, type=kind, source=source, subject=subject, data=fields)


def _embedded(text: str | bytes, *, event_id: str, source: str) -> InboundEvent:
    """A message body that is either a structured CloudEvent or a bare payload."""
    raw = text.encode() if isinstance(text, str) else text
    document = _json(raw)
    if not isinstance(document, dict):
        raise BadEventError("an enveloped message must be a JSON object", status=422)
    if "specversion" in document:
        return from_document(document)
    return _payload(document, event_id=event_id, source=source)


def _pubsub(message: dict[str, Any], subscription: str) -> InboundEvent:
    try:
        data = base64.b64decode(str(message["data"]), validate=True)
    except (binascii.Error, ValueError):
        raise BadEventError("Pub/Sub message.data is not base64") from None
    message_id = str(message.get("messageId") or message.get("message_id") or _digest(data))
    event = _embedded(data, event_id=f"pubsub-{message_id}", source=subscription)
    attributes = message.get("attributes") or {}
    wanted = attributes.get("type") if isinstance(attributes, dict) else None
    if wanted in (catalog.INSTANCE_SWEEP, catalog.INSTANCE_EXPIRED) and event.id.startswith("pubsub-"):
        return InboundEvent(event.id, str(wanted), event.source, event.subject, event.data)
    return event


def _timer(document: dict[str, Any]) -> InboundEvent:
    # FunctionGraph passes the trigger's configured "additional information" as a string.
    user_event = document.get("user_event")
    name = str(document.get("trigger_name", "timer"))
    event_id = f"timer-{name}-{document.get('time', '')}"
    source = f"/functiongraph/timer/{name}"
    text = user_event.strip() if isinstance(user_event, str) else ""
    if text in ("", "sweep", catalog.INSTANCE_SWEEP):
        return InboundEvent(event_id, catalog.INSTANCE_SWEEP, source, None, {})
    event = _embedded(text, event_id=event_id, source=source)
    if event.type == catalog.INSTANCE_EXPIRED and "instance_id" not in event.data:
        return InboundEvent(event.id, catalog.INSTANCE_SWEEP, event.source, None, event.data)
    return event


def _dms_records(
    document: dict[str, Any], trigger: str, max_messages: int
) -> list[InboundEvent | BadEventError]:
    events: list[InboundEvent | BadEventError] = []
    records = document["records"]
    lists = [r.get("messages") if isinstance(r, dict) else None for r in records]
    if any(not isinstance(messages, list) for messages in lists):
        raise BadEventError("DMS trigger record without a messages list")
    count = sum(len(m) for m in lists if isinstance(m, list))
    if count > max_messages:
        raise BadEventError(
            f"{count} messages in one request; at most {max_messages} (REAPER_MAX_MESSAGES_PER_REQUEST)", 413
        )
    for record, messages in zip(records, lists, strict=True):
        assert isinstance(messages, list)
        topic = str(record.get("topic_id") or record.get("queue") or "dms")
        for text in messages:
            source = f"/functiongraph/{trigger.lower()}/{topic}"
            try:
                if not isinstance(text, str):
                    raise BadEventError("DMS trigger messages must be strings")
                events.append(_embedded(text, event_id=f"dms-{_digest(text.encode())}", source=source))
            except BadEventError as exc:
                events.append(exc)
    if not events:
        raise BadEventError("DMS trigger event carries no messages")
    return events
