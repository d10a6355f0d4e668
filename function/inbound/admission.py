"""What a request must be before Flask sees it, and what a QStash delivery is told when it is refused.

A WSGI middleware rather than Flask ``before_request``/``after_request`` hooks: it reads two environ
keys per request, where each hook costs a Flask dispatch (docs/performance-notes.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Final

from function.mediatypes import STRUCTURED

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Only JSON is read (design §7): a browser can POST text/plain cross-site, and nothing else is ours.
READABLE: Final = frozenset({"application/json", STRUCTURED})
QSTASH_NON_RETRYABLE: Final = "489 Non-Retryable"
_INIT: Final = "/init"  # FunctionGraph's initializer: no body to read


def refusal(content_type: str, binary_mode: bool) -> str | None:
    """Why a body of this Content-Type is not read (415), or None when it is."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    if mimetype.startswith("application/cloudevents-batch"):
        return "batched CloudEvents are not accepted; send one per request"
    if mimetype in READABLE or (not mimetype and binary_mode):
        return None
    shown = mimetype or "none"
    return f"Content-Type {shown[:60]!r} is not read; send application/json or {STRUCTURED}"


class Admission:
    """WSGI middleware: 415 for bodies reaper does not read; a QStash delivery's 4xx becomes final (489).

    QStash retries every non-2xx but 489 with ``Upstash-NonRetryable-Error``: a refusal it is told is
    final goes to its dead-letter queue instead of being retried. The JSON body keeps the real status.
    """

    def __init__(self, app: WsgiApp) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Refuse, or call the application (telling QStash a refusal is final)."""
        if "HTTP_UPSTASH_SIGNATURE" in environ:
            start_response = _final_for_qstash(start_response)
        if environ.get("PATH_INFO") != _INIT:
            why = refusal(str(environ.get("CONTENT_TYPE") or ""), "HTTP_CE_SPECVERSION" in environ)
            if why is not None:
                body = json.dumps({"error": why, "status": 415}).encode()
                start_response(
                    "415 Unsupported Media Type",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                )
                return [body]
        return self._app(environ, start_response)


def _final_for_qstash(start_response: Callable[..., Any]) -> Callable[..., Any]:
    def final(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if status.startswith("4"):
            status = QSTASH_NON_RETRYABLE
            headers = [*headers, ("Upstash-NonRetryable-Error", "true")]
        return start_response(status, headers, exc_info)

    return final
