"""The body limit, enforced before Flask sees the request: at most limit + 1 bytes are ever read.

Flask's ``MAX_CONTENT_LENGTH`` trusts ``Content-Length`` and reads a chunked body truncated to the
limit, which reaper then handled as if whole. This WSGI middleware reads the body itself, whatever
its framing, answers 413 (and closes the connection, so the server does not drain a huge body) when
it is larger, and otherwise hands the application a complete, in-memory body.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any, Final

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_CHUNK: Final = 64 * 1024


class BodyLimit:
    """WSGI middleware: a body larger than ``limit`` bytes gets 413 with a JSON reason."""

    def __init__(self, app: WsgiApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Read the body (bounded), then call the application with it, or refuse."""
        declared = str(environ.get("CONTENT_LENGTH") or "").strip()
        if declared.isdigit() and int(declared) > self._limit:
            return self._refuse(start_response)
        chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        if declared.isdigit():
            body = self._read(environ.get("wsgi.input"), int(declared))
        elif chunked or environ.get("wsgi.input_terminated"):
            # No length given: the server de-chunks and ends the stream; read at most limit + 1.
            body = self._read(environ.get("wsgi.input"), self._limit + 1)
        else:
            body = b""  # HTTP/1.1: no Content-Length and no chunking means no body
        if len(body) > self._limit:
            return self._refuse(start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True
        return self._app(environ, start_response)

    @staticmethod
    def _read(stream: Any, most: int) -> bytes:
        """Up to ``most`` bytes, never asking the stream for more (a raw socket would block)."""
        if stream is None:
            return b""
        parts: list[bytes] = []
        size = 0
        while size < most:
            chunk = stream.read(min(_CHUNK, most - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)

    def _refuse(self, start_response: Callable[..., Any]) -> Iterable[bytes]:
        # gunicorn drops Connection headers set by the app; its Response can be told directly.
        force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
        if callable(force_close):
            force_close()
        body = json.dumps({"error": f"body larger than {self._limit} bytes", "status": 413}).encode()
        start_response(
            "413 Request Entity Too Large",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ],
        )
        return [body]
