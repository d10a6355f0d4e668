"""The result sink: every result event is logged, and POSTed to ``K_SINK`` when it is set.

A sink that is down is retried briefly (immediate connection retries, one more attempt after a 5xx,
no sleeping in the handler); after that the outcome stays in the log line, which carries the whole event.
"""

from __future__ import annotations

import logging
from typing import Final

import httpx
from cloudevents.conversion import to_dict, to_structured
from cloudevents.http import CloudEvent

from function import outbound

_LOG = logging.getLogger("reaper.results")
_ATTEMPTS: Final = 2


class ResultSink:
    """Announces outcomes: a structured CloudEvent POSTed to the sink, and one log line."""

    def __init__(
        self, sink_url: str | None, *, timeout: float = 5.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._url = sink_url
        self._http = outbound.client(
            timeout=timeout,
            transport=transport or httpx.HTTPTransport(retries=2, verify=outbound.tls_context()),
        )

    def emit(self, event: CloudEvent) -> bool:
        """Announce ``event``; True when the sink took it (or there is no sink)."""
        delivered = self._post(event) if self._url else None
        _LOG.info(
            "result",
            extra={
                "result_type": event["type"],
                "result_id": event["id"],
                "result": to_dict(event)["data"],
                "sink_delivered": delivered,
            },
        )
        return delivered is not False

    def _post(self, event: CloudEvent) -> bool:
        assert self._url is not None
        headers, body = to_structured(event)
        for _ in range(_ATTEMPTS):
            try:
                response = self._http.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                _LOG.warning("result sink unreachable", extra={"error_type": type(exc).__name__})
                return False
            if response.is_success:
                return True
            if response.status_code < 500:
                break
        _LOG.warning("result sink refused", extra={"http_status": response.status_code})
        return False

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()
