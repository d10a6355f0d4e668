"""The CloudDC API client (design §2): one keep-alive endpoint, explicit timeouts, safe paths.

Every call returns a ``core.ApiAnswer``; HTTP errors and transport failures are answers, not
exceptions, because the core decides what each one means.

An answer is believed only when it is what the API documents (design §10): a success status of the call,
a JSON content type, a body that parses completely with the strict reader (duplicate keys refused) into
the documented shape, the ids that were asked for and every page. Anything else is the failure
``unreadable-answer`` (``status`` None: retried with back-off, bounded by the deadline) — never "absent",
never "terminated". A gateway's HTML page, a body cut short, a listing of another instance or a record
with ``reaper-protected`` twice all end there.
"""

from __future__ import annotations

import email.utils
import logging
import re
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, NamedTuple, TypeVar
from urllib.parse import quote

import httpx

from function import jsontext, outbound, redaction, tracing
from function.budget import Budgets
from function.core import ApiAnswer
from function.core.budget import OVER_BUDGET
from function.core.ids import valid_id
from function.credentials import Credentials
from function.errors import BadEventError

_LOG = logging.getLogger("reaper.clouddc")
_MAX_ERROR_TEXT: Final = 300
UNREADABLE: Final = "unreadable-answer"
# An id read follows next_marker at most this many pages (100 ids fit one page; a marker on the last
# page may lead to one empty page): a server that always names a next page makes the read incomplete.
_MAX_ID_PAGES: Final = 4
_JSON_TYPE: Final = re.compile(r"^application/(?:[\w.+-]+\+)?json$", re.I)


class UnreadableAnswerError(Exception):
    """An answer that is not what the API documents; the message says how (no body text in it)."""


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it is a safe CloudDC id, else raise ``BadEventError`` (422)."""
    if not isinstance(value, str) or not valid_id(value):
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
        deadline: float = outbound.DEADLINE,
        max_body: int = outbound.MAX_BODY,
        budget: Budgets | None = None,
    ) -> None:
        self._budget = budget
        self._credentials = credentials
        self._max_body = max_body
        self._http = outbound.Endpoint(
            endpoint,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Accept": "application/json", "Accept-Encoding": "gzip, deflate"},
            deadline=deadline,
            max_body=max_body,
        )

    def delete_instance(self, project_id: str, instance_id: str) -> ApiAnswer:
        """DeleteInstance: 204 means the asynchronous delete was accepted."""
        return self._call("DELETE", self._instance_path(project_id, instance_id), _read_nothing, project_id)[
            0
        ]

    def show_status(self, project_id: str, instance_id: str) -> ApiAnswer:
        """ShowInstanceStatus: 200 carries ``state`` (``operation_state`` and ``error`` when known)."""
        path = self._instance_path(project_id, instance_id) + "/status"
        return self._call("GET", path, _read_status, project_id)[0]

    def list_instances(
        self,
        project_id: str,
        *,
        instance_ids: tuple[str, ...] | None = None,
        marker: str | None = None,
        limit: int = 100,
    ) -> tuple[ApiAnswer, list[dict[str, Any]], str | None]:
        """ListInstances: one page of records and the next marker (``instance_id`` takes <= 100 ids).

        A read by ids answers for every id asked: it follows ``next_marker`` until each is listed or no page
        follows (then the rest are absent); records of ids not asked for make the answer unreadable.
        """
        query: dict[str, str | int] = {"limit": limit}
        if instance_ids:
            query["instance_id"] = ",".join(check_id("instance_id", i) for i in instance_ids)
        if marker:
            query["marker"] = marker
        project = quote(check_id("project_id", project_id), safe="")
        path = f"/v1/{project}/instances"
        answer, page = self._call("GET", path, _read_page, project_id, query=query)
        if answer.status != 200 or not instance_ids:
            return answer, page.records if answer.status == 200 else [], page.next_marker
        asked, found = frozenset(instance_ids), page.records
        for _ in range(_MAX_ID_PAGES):
            listed = {r["id"] for r in found}
            if not listed <= asked or len(listed) != len(found):
                why = "the listing names ids not asked for, or one twice"
                return self._unreadable("GET", path, why), [], None
            if page.next_marker is None or len(found) == len(asked):
                return answer, found, None
            more = {**query, "marker": page.next_marker}
            answer, page = self._call("GET", path, _read_page, project_id, query=more)
            if answer.status != 200:
                return answer, [], None
            found = found + page.records
        why = f"more than {_MAX_ID_PAGES} pages for {len(asked)} ids"
        return self._unreadable("GET", path, why), [], None

    def batch_delete(self, project_id: str, instance_ids: tuple[str, ...]) -> ApiAnswer:
        """DeleteInstances (batch): 202 means the deletes were accepted."""
        body = {"instance_id_set": [check_id("instance_id", i) for i in instance_ids]}
        project = quote(check_id("project_id", project_id), safe="")
        path = f"/v1/{project}/instances/batch-delete"
        return self._call("POST", path, _read_accepted, project_id, json=body)[0]

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    @staticmethod
    def _instance_path(project_id: str, instance_id: str) -> str:
        project = quote(check_id("project_id", project_id), safe="")
        instance = quote(check_id("instance_id", instance_id), safe="")
        return f"/v1/{project}/instances/{instance}"

    def _call(
        self, method: str, path: str, read: _Reader[_T], project_id: str, **kwargs: Any
    ) -> tuple[ApiAnswer, _T]:
        """One call; its answer, and what ``read`` found in a success body (``read``'s empty value else).

        With an API budget, a call it cannot pay for now is not made: the answer is the failure
        ``over-budget`` with the wait as its ``retry_after``, which the core plans like a 429's.
        """
        if self._budget is not None and (wait := self._budget.take(project_id)) > 0:
            tracing.telemetry().count_call(method, OVER_BUDGET)
            return ApiAnswer(None, failure=OVER_BUDGET, retry_after=wait), read.empty
        call = self._http.call(method, path, **kwargs)
        self._credentials.apply(call)  # a token header, or an AK/SK signature over the whole request
        started = time.perf_counter()
        try:
            answer = self._http.send(call)
        except httpx.TimeoutException as exc:
            tracing.telemetry().count_call(method, "timeout")
            return self._failed(method, path, started, "timeout", exc), read.empty
        except httpx.TransportError as exc:
            failure = "certificate-error" if _certificate_refused(exc) else "connection-error"
            tracing.telemetry().count_call(method, failure)
            return self._failed(method, path, started, failure, exc), read.empty
        if answer.status == 429 and self._budget is not None:
            self._budget.throttled(project_id)
        try:
            try:
                body = _body(answer, self._max_body)
            except UnreadableAnswerError:
                if answer.status < 400:
                    raise
                body = None  # an error status stands; only its error_code and error_msg are lost
            value = read.success(body) if answer.status in read.statuses else read.empty
            if answer.status < 400 and answer.status not in read.statuses:
                raise UnreadableAnswerError(f"status {answer.status} is not an answer of this call")
            document = body if isinstance(body, dict) else {}
            if answer.status == 404 and not ("error_code" in document or "error_msg" in document):
                # "Not found" is believed from CloudDC's own error body, not from a gateway's page.
                raise UnreadableAnswerError("a 404 without CloudDC's error body")
        except UnreadableAnswerError as exc:
            tracing.telemetry().count_call(method, UNREADABLE)
            return self._unreadable(method, path, str(exc), answer.status), read.empty
        tracing.telemetry().count_call(method, answer.status)
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
        return _answer_from(answer, document, time.time()), value

    @staticmethod
    def _unreadable(method: str, path: str, why: str, status: int | None = None) -> ApiAnswer:
        _LOG.warning(
            "clouddc answer not believed",
            extra={
                "method": method,
                "path": path,
                "http_status": status,
                "failure": UNREADABLE,
                "error": why,
            },
        )
        return ApiAnswer(None, failure=UNREADABLE, error_msg=why[:_MAX_ERROR_TEXT])

    @staticmethod
    def _failed(method: str, path: str, started: float, failure: str, exc: Exception) -> ApiAnswer:
        # The transport's own text (never the request's): what failed, e.g. the certificate's reason.
        reason = redaction.redact(str(exc))[:_MAX_ERROR_TEXT] or type(exc).__name__
        _LOG.warning(
            "clouddc call failed",
            extra={
                "method": method,
                "path": path,
                "failure": failure,
                "error_type": type(exc).__name__,
                "error": reason,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return ApiAnswer(None, failure=failure, error_msg=reason)


def _answer_from(response: outbound.Answer, body: Mapping[str, Any], now: float) -> ApiAnswer:
    state = body.get("state")
    # Error bodies carry error_code/error_msg; ShowInstanceStatus says why a delete failed in "error".
    error = body.get("error")
    cause: Mapping[str, Any] = error if isinstance(error, dict) else body
    code = body.get("error_code") or cause.get("error_code")
    message = body.get("error_msg") or cause.get("error_msg")
    operation = body.get("operation_state")
    return ApiAnswer(
        status=response.status,
        state=state if isinstance(state, str) else None,
        operation_state=str(operation)[:_MAX_ERROR_TEXT] if isinstance(operation, str) else None,
        # An upstream message may echo what it was sent (the token): redact before it travels on.
        error_code=redaction.redact(str(code))[:_MAX_ERROR_TEXT] if code is not None else None,
        error_msg=redaction.redact(str(message))[:_MAX_ERROR_TEXT] if message is not None else None,
        retry_after=parse_retry_after(response.headers.get("retry-after"), now),
    )


def _certificate_refused(exc: httpx.TransportError) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__
    return str(exc).startswith("certificate verify failed")


def _body(answer: outbound.Answer, max_body: int) -> object:
    """The answer's body as strict JSON (None when empty), decoded as its Content-Encoding says."""
    content = answer.content
    encoding = answer.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        content = _decompressed(content, encoding, max_body)
    elif encoding not in ("", "identity"):
        raise UnreadableAnswerError(f"Content-Encoding {encoding[:20]!r} is not one reaper reads")
    if not content:
        return None
    media_type = answer.headers.get("content-type", "").split(";", 1)[0].strip()
    if not _JSON_TYPE.match(media_type):
        raise UnreadableAnswerError(f"the body is {media_type[:40] or 'untyped'!r}, not JSON")
    try:
        return jsontext.loads(content, "the body")
    except jsontext.UnreadableError as exc:
        raise UnreadableAnswerError(str(exc)) from None


def _decompressed(content: bytes, encoding: str, max_body: int) -> bytes:
    """A gzip or deflate body, decoded whole and within the body cap (a small bomb stays small)."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS)
    try:
        plain = decoder.decompress(content, max_body + 1)
    except zlib.error:
        raise UnreadableAnswerError(f"the {encoding} body does not decode") from None
    if len(plain) > max_body:
        raise UnreadableAnswerError(f"the {encoding} body decodes to more than {max_body} bytes")
    if not decoder.eof or decoder.unused_data:
        raise UnreadableAnswerError(f"the {encoding} body is cut short or has bytes after its end")
    return plain


_T = TypeVar("_T")


class _Reader(NamedTuple, Generic[_T]):
    """What one call's success answers are, and what to read from their body."""

    statuses: frozenset[int]
    success: Callable[[object], _T]
    empty: _T


class Page(NamedTuple):
    """One ListInstances page: its records (each an object with a string id) and the next marker."""

    records: list[dict[str, Any]]
    next_marker: str | None


def _object(body: object, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise UnreadableAnswerError(f"{what} is not a JSON object")
    return body


def _page(body: object) -> Page:
    document = _object(body, "the listing")
    records = document.get("instances")
    if not isinstance(records, list):
        raise UnreadableAnswerError("the listing has no instances list")
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise UnreadableAnswerError("a listed instance is not an object with a string id")
        if not isinstance(record.get("state"), str):
            raise UnreadableAnswerError("a listed instance has no state")
        if not isinstance(record.get("metadata", {}), dict | None):
            # Protection and expiry live there: a record whose metadata cannot be read is not judged.
            raise UnreadableAnswerError("a listed instance's metadata is not an object")
    page_info = document.get("page_info")
    if page_info is not None and not isinstance(page_info, dict):
        raise UnreadableAnswerError("the listing's page_info is not an object")
    marker = (page_info or {}).get("next_marker")
    if marker is not None and not isinstance(marker, str):
        raise UnreadableAnswerError("the listing's next_marker is not a string")
    return Page(records, marker or None)


def _status(body: object) -> None:
    if not isinstance(_object(body, "the status").get("state"), str):
        raise UnreadableAnswerError("the status has no state")


def _nothing(body: object) -> None:
    if body is not None:
        _object(body, "the answer")


_read_page: Final = _Reader(frozenset({200}), _page, Page([], None))
_read_status: Final = _Reader(frozenset({200}), _status, None)
_read_nothing: Final = _Reader(frozenset({200, 202, 204}), _nothing, None)
_read_accepted: Final = _Reader(frozenset({200, 202}), _nothing, None)
