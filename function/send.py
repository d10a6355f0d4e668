"""``reaper send``: fire an instance-expired or sweep event at a deployment, in any accepted shape."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any, Final

import httpx
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from function import catalog
from function.envelopes import sign_webhook

SHAPES: Final = ("binary", "structured", "pubsub", "timer", "dms-rabbitmq", "dms-kafka", "webhook")


def payload(instance_id: str | None, project_id: str | None) -> tuple[str, dict[str, Any]]:
    """The event type and data for an expiry (with an instance) or a sweep (without)."""
    data: dict[str, Any] = {"project_id": project_id} if project_id else {}
    if instance_id is None:
        return catalog.INSTANCE_SWEEP, data
    return catalog.INSTANCE_EXPIRED, {"instance_id": instance_id, **data, "reason": "reaper send"}


def build_request(
    shape: str,
    instance_id: str | None,
    project_id: str | None,
    *,
    secret: str | None = None,
    now: float | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body for one event in the given envelope ``shape``."""
    event_type, data = payload(instance_id, project_id)
    json_headers = {"Content-Type": "application/json"}
    if shape in ("binary", "structured"):
        attributes = {"type": event_type, "source": "/reaper/send", "id": f"send-{uuid.uuid4()}"}
        if instance_id:
            attributes["subject"] = instance_id
        event = CloudEvent(attributes, data)
        headers, body = to_binary(event) if shape == "binary" else to_structured(event)
        return dict(headers), body
    bare = json.dumps({"type": event_type, **data}).encode()
    if shape == "pubsub":
        message = {"data": base64.b64encode(bare).decode(), "messageId": str(uuid.uuid4().int)[:16],
                   "attributes": {"type": event_type}}  # fmt: skip
        return json_headers, json.dumps({"message": message, "subscription": "reaper-send"}).encode()
    if shape == "timer":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        timer = {"version": "v1.0", "time": stamp, "trigger_type": "TIMER", "trigger_name": "reaper-send",
                 "user_event": bare.decode()}  # fmt: skip
        return json_headers, json.dumps(timer).encode()
    if shape in ("dms-rabbitmq", "dms-kafka"):
        trigger = "RABBITMQ" if shape == "dms-rabbitmq" else "KAFKA"
        record = {"messages": [bare.decode()], "topic_id": "reaper-send"}
        dms = {"event_version": "v1.0", "event_time": int(now or time.time()), "trigger_type": trigger,
               "records": [record]}  # fmt: skip
        return json_headers, json.dumps(dms).encode()
    if shape == "webhook":
        if not secret:
            raise ValueError("--as webhook needs --secret (or REAPER_WEBHOOK_SECRET)")
        body = json.dumps(data).encode()
        signature = sign_webhook(secret, body, int(now if now is not None else time.time()))
        return {**json_headers, "X-Reaper-Signature": signature}, body
    raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")


def send(url: str, shape: str, instance_id: str | None, project_id: str | None, secret: str | None) -> int:
    """POST the event, print the answer, return 0 on 2xx."""
    headers, body = build_request(shape, instance_id, project_id, secret=secret)
    response = httpx.post(url, headers=headers, content=body, timeout=30)
    print(f"HTTP {response.status_code}")
    if response.content:
        print(response.text)
    return 0 if response.is_success else 1
