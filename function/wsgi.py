"""The threaded werkzeug server shared by reaper's local services (emulator, delay service, sinks)."""

from __future__ import annotations

from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietRequestHandler(WSGIRequestHandler):
    """No access lines (the services log JSON decisions) and no noise for injected resets."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the access line."""

    def log_error(self, format: str, *args: Any) -> None:
        """Skip write errors on sockets reset on purpose."""


def threaded_server(host: str, port: int, app: Any) -> BaseWSGIServer:
    """A threaded, quiet WSGI server (port 0 picks a free one)."""
    return make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)
