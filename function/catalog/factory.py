"""Outgoing CloudEvents with deterministic ids, so brokers and sinks can de-duplicate redeliveries."""

from __future__ import annotations

import hashlib
from typing import Any, Final

from cloudevents.http import CloudEvent

from function.mediatypes import JSON
from function.utctime import rfc3339

_ID_PREFIX: Final = "reaper-"


def event_id(*parts: str) -> str:
    """A deterministic event id, so brokers and sinks can de-duplicate redeliveries."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]
    return _ID_PREFIX + digest


def make_event(
    event_type: str, data: dict[str, Any], *, key: str, source: str, subject: str, now: float
) -> CloudEvent:
    """Build an outgoing CloudEvent whose id is derived from ``key``."""
    attributes = {
        "type": event_type,
        "source": source,
        "id": event_id(event_type, key),
        "subject": subject,
        "time": rfc3339(now),
        "datacontenttype": JSON,
    }
    return CloudEvent(attributes, data)
