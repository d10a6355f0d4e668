"""A loopback fake of Upstash QStash's publish API that delivers with real signatures.

It checks requests against the documented API (``/v2/publish/<destination URL>``, bearer token,
``Upstash-Delay`` / ``Upstash-Not-Before`` / ``Upstash-Deduplication-Id`` headers), de-duplicates,
and delivers when due with an ``Upstash-Signature`` HS256 JWT signed by the test signing key, so the
function's real verifier runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from typing import Any

import jwt
from werkzeug.wrappers import Request, Response

from tests.fakes.common import DelayedDelivery, LoopbackServer, Pending

DELAY = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def sign(
    key: str, url: str, body: bytes, *, now: float | None = None, lifetime: int = 300, **claims: Any
) -> str:
    """An Upstash-Signature JWT as QStash makes it."""
    issued = int(now if now is not None else time.time())
    payload = {
        "iss": "Upstash",
        "sub": url,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": "jwt_" + secrets.token_hex(8),
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode(),
        **claims,
    }
    return jwt.encode(payload, key, algorithm="HS256")


class FakeQStash:
    def __init__(self, token: str, signing_key: str) -> None:
        self.token = token
        self.signing_key = signing_key
        self.published: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.dedup: dict[str, str] = {}
        # QStash retries every non-2xx answer but a 489 that says Upstash-NonRetryable-Error: true.
        self.delivery = DelayedDelivery(
            sign=self._signature,
            final=lambda r: r.status_code == 489 and r.headers.get("Upstash-NonRetryable-Error") == "true",
        )
        self.server = LoopbackServer(Request.application(self._app))
        self.url = self.server.url

    def close(self) -> None:
        self.delivery.stop()
        self.server.close()

    def _signature(self, item: Pending) -> dict[str, str]:
        return {"Upstash-Signature": sign(self.signing_key, item.url, item.body)}

    def _bad(self, message: str, status: int = 400) -> Response:
        self.problems.append(message)
        return Response(json.dumps({"error": message}), status, mimetype="application/json")

    def _app(self, request: Request) -> Response:
        raw_path = request.environ.get("RAW_URI") or request.full_path
        if request.method != "POST" or not request.path.startswith("/v2/publish/"):
            return self._bad(f"no route {request.method} {request.path}", 404)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._bad("invalid token", 401)
        destination = raw_path.split("/v2/publish/", 1)[1].rstrip("?")
        if not destination.startswith(("http://", "https://")):
            return self._bad(f"destination {destination!r} is not a URL")
        delay = 0
        if "Upstash-Delay" in request.headers:
            match = DELAY.match(request.headers["Upstash-Delay"])
            if not match:
                return self._bad("Upstash-Delay must be like 10s, 5m, 2h or 1d")
            delay = int(match.group(1)) * UNITS[match.group(2)]
        due = time.time() + delay
        if "Upstash-Not-Before" in request.headers:
            due = float(request.headers["Upstash-Not-Before"])
        dedup = request.headers.get("Upstash-Deduplication-Id")
        if dedup is not None and dedup in self.dedup:
            return Response(
                json.dumps({"messageId": self.dedup[dedup], "deduplicated": True}),
                202,
                mimetype="application/json",
            )
        message_id = "msg_" + secrets.token_hex(8)
        if dedup is not None:
            self.dedup[dedup] = message_id
        body = request.get_data()
        self.published.append({"destination": destination, "delay": delay, "dedup": dedup, "body": body})
        headers = {
            "Content-Type": request.headers.get("Content-Type", "application/octet-stream"),
            "Upstash-Message-Id": message_id,
        }
        self.delivery.add(due, destination, body, headers)
        return Response(json.dumps({"messageId": message_id}), 201, mimetype="application/json")
