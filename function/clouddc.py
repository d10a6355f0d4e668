"""The CloudDC API client (design §2): one keep-alive endpoint, explicit timeouts, safe paths.

Every call returns a ``core.ApiAnswer``; HTTP errors and transport failures are answers, not
exceptions, because the core decides what each one means.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from typing import Any, Final
from urllib.parse import quote

import httpx

from function import jsonlog, outbound, tracing
from function.core import ApiAnswer
from function.credentials import Credentials
from function.errors import BadEventError

ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_LOG = logging.getLogger("reaper.clouddc")
_MAX_ERROR_TEXT: Final = 300


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it is a safe CloudDC id, else raise ``BadEventError`` (422)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        shown = value[:40] + "..." if isinstance(value, str) and len(value) > 40 else value
        raise BadEventError(
            f"{kind} {shown!r} is not a valid id (letters, digits, '_' or '-', at most 64)",
            status=422,
        )
    return value


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class CloudDCClient:
    """Calls DeleteInstance, ShowInstanceStatus and ListInstances for one endpoint."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._credentials = credentials
        self._http = outbound.Endpoint(
            endpoint,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Accept": "application/json"},
        )

    def delete_instance(self, project_id: str, instance_id: str) -> ApiAnswer:
        """DeleteInstance: 204 means the asynchronous delete was accepted."""
        return self._call("DELETE", self._instance_path(project_id, instance_id))

    def show_status(self, project_id: str, instance_id: str) -> ApiAnswer:
        """ShowInstanceStatus: 200 carries ``state`` (``operation_state`` and ``error`` when known)."""
        return self._call("GET", self._instance_path(project_id, instance_id) + "/status")

    def list_instances(
        self,
        project_id: str,
        *,
        instance_ids: tuple[str, ...] | None = None,
        marker: str | None = None,
        limit: int = 100,
    ) -> tuple[ApiAnswer, list[dict[str, Any]], str | None]:
        """ListInstances: one page of records and the next marker (``instance_id`` takes <= 100 ids)."""
        query: dict[str, str | int] = {"limit": limit}
        if instance_ids:
            query["instance_id"] = ",".join(check_id("instance_id", i) for i in instance_ids)
        if marker:
            query["marker"] = marker
        project = quote(check_id("project_id", project_id), safe="")
        answer, body = self._call_json("GET", f"/v1/{project}/instances", query=query)
        records = body.get("instances") if answer.status == 200 else None
        page_info = body.get("page_info") or {}
        next_marker = page_info.get("next_marker") if isinstance(page_info, dict) else None
        return (
            answer,
            [r for r in records if isinstance(r, dict)] if isinstance(records, list) else [],
            str(next_marker) if next_marker else None,
        )

    def batch_delete(self, project_id: str, instance_ids: tuple[str, ...]) -> ApiAnswer:
        """DeleteInstances (batch): 202 means the deletes were accepted."""
        body = {"instance_id_set": [check_id("instance_id", i) for i in instance_ids]}
        project = quote(check_id("project_id", project_id), safe="")
        answer, _ = self._call_json("POST", f"/v1/{project}/instances/batch-delete", json=body)
        return answer

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    @staticmethod
    def _instance_path(project_id: str, instance_id: str) -> str:
        project = quote(check_id("project_id", project_id), safe="")
        instance = quote(check_id("instance_id", instance_id), safe="")
        return f"/v1/{project}/instances/{instance}"

    def _call(self, method: str, path: str) -> ApiAnswer:
        return self._call_json(method, path)[0]

    def _call_json(self, method: str, path: str, **kwargs: Any) -> tuple[ApiAnswer, dict[str, Any]]:
        call = self._http.call(method, path, **kwargs)
        self._credentials.apply(call)  # a token header, or an AK/SK signature over the whole request
        started = time.perf_counter()
        try:
            answer = self._http.send(call)
        except httpx.TimeoutException as exc:
            tracing.telemetry().count_call(method, "timeout")
            return self._failed(method, path, started, "timeout", exc), {}
        except httpx.TransportError as exc:
            tracing.telemetry().count_call(method, "connection-error")
            return self._failed(method, path, started, "connection-error", exc), {}
        tracing.telemetry().count_call(method, answer.status)
        body = _json_object(answer)
        if _LOG.isEnabledFor(logging.DEBUG):  # the fields cost more than the check, on every call
            _LOG.debug(
                "clouddc call",
                extra={
                    "method": method,
                    "path": path,
                    "http_status": answer.status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return _answer_from(answer, body, time.time()), body

    @staticmethod
    def _failed(method: str, path: str, started: float, failure: str, exc: Exception) -> ApiAnswer:
        _LOG.warning(
            "clouddc call failed",
            extra={
                "method": method,
                "path": path,
                "failure": failure,
                "error_type": type(exc).__name__,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return ApiAnswer(None, failure=failure, error_msg=type(exc).__name__)


def _answer_from(response: outbound.Answer, body: dict[str, Any], now: float) -> ApiAnswer:
    state = body.get("state")
    # Error bodies carry error_code/error_msg; ShowInstanceStatus says why a delete failed in "error".
    error = body.get("error")
    cause: dict[str, Any] = error if isinstance(error, dict) else body
    code = body.get("error_code") or cause.get("error_code")
    message = body.get("error_msg") or cause.get("error_msg")
    operation = body.get("operation_state")
    return ApiAnswer(
        status=response.status,
        state=state if isinstance(state, str) else None,
        operation_state=str(operation)[:_MAX_ERROR_TEXT] if isinstance(operation, str) else None,
        # An upstream message may echo what it was sent (the token): redact before it travels on.
        error_code=jsonlog.redact(str(code))[:_MAX_ERROR_TEXT] if code is not None else None,
        error_msg=jsonlog.redact(str(message))[:_MAX_ERROR_TEXT] if message is not None else None,
        retry_after=parse_retry_after(response.headers.get("retry-after"), now),
    )


def _json_object(response: outbound.Answer) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
