"""``reaper send``: fire an instance-expired or sweep event at a deployment, in any accepted shape,
authenticated with whichever inbound method the deployment expects (``--auth``)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from function import catalog

SHAPES: Final = ("binary", "structured", "pubsub", "timer", "dms-rabbitmq", "dms-kafka", "webhook")
AUTH_METHODS: Final = ("webhook", "qstash", "platform")


def sign(
    headers: dict[str, str], body: bytes, auth: str, *, secret: str | None, url: str, now: float | None = None
) -> dict[str, str]:
    """``headers`` plus what inbound method ``auth`` checks (Standard Webhooks or an Upstash-Signature)."""
    when = now if now is not None else time.time()
    if auth == "platform":
        return headers
    if not secret:
        raise ValueError(f"--auth {auth} needs --secret (REAPER_WEBHOOK_SECRET / QSTASH_CURRENT_SIGNING_KEY)")
    if auth == "webhook":
        from standardwebhooks.webhooks import Webhook

        message_id = f"msg_{uuid.uuid4().hex}"
        stamp = datetime.fromtimestamp(int(when), UTC)
        signature = Webhook(secret).sign(message_id, stamp, body.decode())
        return {**headers, "webhook-id": message_id, "webhook-timestamp": str(int(when)),
                "webhook-signature": signature}  # fmt: skip
    if auth == "qstash":
        import jwt

        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")
        claims = {"iss": "Upstash", "sub": url, "iat": int(when), "nbf": int(when), "exp": int(when) + 300,
                  "jti": f"jwt_{uuid.uuid4().hex}", "body": digest}  # fmt: skip
        return {**headers, "Upstash-Signature": jwt.encode(claims, secret, algorithm="HS256")}
    raise ValueError(f"unknown --auth {auth!r}; one of {', '.join(AUTH_METHODS)}")


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
    now: float | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body for one event in the given envelope ``shape`` (not yet authenticated: ``sign``)."""
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
        return json_headers, json.dumps(data).encode()
    raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")


def send(
    url: str, shape: str, instance_id: str | None, project_id: str | None, *, auth: str, secret: str | None
) -> int:
    """POST the event, authenticated with ``auth``, print the answer, return 0 on 2xx."""
    headers, body = build_request(shape, instance_id, project_id)
    headers = sign(headers, body, auth, secret=secret, url=url)
    response = httpx.post(url, headers=headers, content=body, timeout=30)
    print(f"HTTP {response.status_code}")
    if response.content:
        print(response.text)
    return 0 if response.is_success else 1
