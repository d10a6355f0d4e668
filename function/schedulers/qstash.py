"""The ``qstash`` transport: Upstash QStash publish with a delay.

Publishing: ``POST {QSTASH_URL}/v2/publish/{REAPER_SELF_URL}`` with ``Upstash-Delay`` and
``Upstash-Deduplication-Id``. Deliveries are reaper's signed follow-ups (``function.signing``); the
``Upstash-Signature`` of external events is checked by the ``qstash`` inbound method
(``function.inbound.auth``).
"""

from __future__ import annotations

import math

import httpx
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from function import outbound
from function.errors import HandOffError
from function.secret import Secret


class QStashScheduler:
    """Publishes follow-ups through QStash."""

    def __init__(
        self,
        *,
        base_url: str,
        token: Secret,
        target_url: str,
        timeout: float = 10.0,
        deadline: float = outbound.DEADLINE,
    ) -> None:
        # QStash takes the destination URL verbatim after /v2/publish/ (its documented form).
        self._endpoint = f"{base_url.rstrip('/')}/v2/publish/{target_url}"
        self._token = token
        self._http = outbound.client(timeout=timeout, deadline=deadline)

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
