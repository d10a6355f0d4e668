"""The ``local`` transport: hands follow-ups to ``reaper delay-service`` over loopback HTTP."""

from __future__ import annotations

from typing import Final

import httpx
from cloudevents.http import CloudEvent

from function import outbound
from function.errors import HandOffError

_OK: Final = frozenset({200, 201, 202})


class LocalScheduler:
    """Client of the delay service's ``POST /v1/events``."""

    def __init__(
        self,
        service_url: str,
        target_url: str,
        *,
        timeout: float = 5.0,
        deadline: float = outbound.DEADLINE,
    ) -> None:
        self._target = target_url
        self._http = outbound.Endpoint(
            service_url, timeout=httpx.Timeout(timeout), connect_retries=1, deadline=deadline
        )

    def schedule(self, event: CloudEvent, delay: float, dedup_key: str) -> None:
        """Ask the delay service to deliver ``event`` to the function after ``delay`` seconds."""
        body = {
            "target": self._target,
            "delay_seconds": delay,
            "dedup_key": dedup_key,
            "event": {**event.get_attributes(), "data": event.get_data()},  # the SDK's to_dict, in one step
        }
        try:
            answer = self._http.send(self._http.call("POST", "/v1/events", json=body))
        except httpx.HTTPError as exc:
            raise HandOffError(f"delay service unreachable: {type(exc).__name__}") from None
        if answer.status not in _OK:
            raise HandOffError(f"delay service answered {answer.status}")

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()
