"""The result sink: every result event is logged, and POSTed to ``K_SINK`` when it is set.

A sink that is down is retried briefly (immediate connection retries, one more attempt after a 5xx,
no sleeping in the handler); if it is still down, ``emit`` raises ``HandOffError``: the step answers 503 and
its source redelivers it, and the redelivered step re-reads the state and emits the same result id, so a
result is delivered at least once. A sink that refuses the event (4xx) cannot be helped by redelivery: the
outcome stays in the log line, which carries the whole event.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

import httpx
from cloudevents.conversion import to_dict, to_structured
from cloudevents.http import CloudEvent

from function import outbound
from function.errors import HandOffError

_LOG = logging.getLogger("reaper.results")
_ATTEMPTS: Final = 2
# delivered; refused (4xx: final, the log keeps it); unavailable (5xx, unreachable: redeliver the step).
SinkAnswer = Literal["delivered", "refused", "unavailable", "no-sink"]


class ResultSink:
    """Announces outcomes: a structured CloudEvent POSTed to the sink, and one log line."""

    def __init__(
        self,
        sink_url: str | None,
        *,
        timeout: float = 5.0,
        deadline: float = outbound.DEADLINE,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = sink_url
        self._http = outbound.client(
            timeout=timeout,
            transport=transport or outbound.keep_alive(connect_retries=2, deadline=deadline),
        )

    def emit(self, event: CloudEvent) -> SinkAnswer:
        """Announce ``event``; raise ``HandOffError`` when the sink is down, so the step is redelivered."""
        answer = self._post(event) if self._url else "no-sink"
        _LOG.info(
            "result",
            extra={
                "result_type": event["type"],
                "result_id": event["id"],
                "result": to_dict(event)["data"],
                "sink": answer,
            },
        )
        if answer == "unavailable":
            raise HandOffError("result sink unavailable")
        return answer

    def _post(self, event: CloudEvent) -> SinkAnswer:
        assert self._url is not None
        headers, body = to_structured(event)
        for _ in range(_ATTEMPTS):
            try:
                response = self._http.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                _LOG.warning("result sink unreachable", extra={"error_type": type(exc).__name__})
                return "unavailable"
            if response.is_success:
                return "delivered"
            if response.status_code < 500:
                _LOG.warning("result sink refused", extra={"http_status": response.status_code})
                return "refused"
        _LOG.warning("result sink failed", extra={"http_status": response.status_code})
        return "unavailable"

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()
