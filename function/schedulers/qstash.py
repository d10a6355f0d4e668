"""The ``qstash`` transport: Upstash QStash publish with a delay, and verification of its deliveries.

Publishing: ``POST {QSTASH_URL}/v2/publish/{REAPER_SELF_URL}`` with ``Upstash-Delay`` and
``Upstash-Deduplication-Id``. Receiving: each delivery carries an ``Upstash-Signature`` HS256 JWT
(issuer ``Upstash``, ``sub`` = our URL, ``exp``/``nbf``, ``body`` = base64url SHA-256 of the raw
body), checked with the current signing key, then the next one (key rotation).
"""

from __future__ import annotations

import base64
import hashlib
import math
from typing import Final

import httpx
import jwt
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from function import outbound
from function.errors import BadEventError, HandOffError
from function.secret import Secret

_LEEWAY: Final = 5.0


class QStashScheduler:
    """Publishes follow-ups through QStash."""

    def __init__(self, *, base_url: str, token: Secret, target_url: str, timeout: float = 10.0) -> None:
        # QStash takes the destination URL verbatim after /v2/publish/ (its documented form).
        self._endpoint = f"{base_url.rstrip('/')}/v2/publish/{target_url}"
        self._token = token
        self._http = outbound.client(timeout=timeout)

    def schedule(self, event: CloudEvent, delay: float, dedup_key: str) -> None:
        """Publish ``event`` for delivery after ``delay`` seconds (rounded up to whole seconds)."""
        headers, body = to_structured(event)
        request_headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Content-Type": headers["content-type"],
            "Upstash-Delay": f"{max(0, math.ceil(delay))}s",
            "Upstash-Deduplication-Id": dedup_key,
        }
        try:
            response = self._http.post(self._endpoint, content=body, headers=request_headers)
        except httpx.HTTPError as exc:
            raise HandOffError(f"QStash unreachable: {type(exc).__name__}") from None
        if not response.is_success:
            raise HandOffError(f"QStash answered {response.status_code}")

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()


class SignatureVerifier:
    """Checks ``Upstash-Signature`` on deliveries; any failure is a 401 with no side effect."""

    def __init__(self, url: str, keys: list[Secret]) -> None:
        self._url = url
        self._keys = keys

    def verify(self, signature: str | None, body: bytes) -> None:
        """Raise ``BadEventError`` (401) unless one of the keys validates the signature for ``body``."""
        if not signature:
            raise BadEventError("missing Upstash-Signature", status=401)
        expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")
        for key in self._keys:
            try:
                claims = jwt.decode(
                    signature,
                    key.reveal(),
                    algorithms=["HS256"],
                    issuer="Upstash",
                    leeway=_LEEWAY,
                    options={"require": ["iss", "sub", "exp", "nbf", "body"], "verify_aud": False},
                )
            except jwt.InvalidTokenError:
                continue
            if claims["sub"] != self._url:
                raise BadEventError("Upstash-Signature is for another URL", status=401)
            if str(claims["body"]).rstrip("=") != expected:
                raise BadEventError("Upstash-Signature does not match the body", status=401)
            return
        raise BadEventError("invalid Upstash-Signature", status=401)
