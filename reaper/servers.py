"""Servers for what runs beside the function: gunicorn (delay service, emulator), werkzeug (sinks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from function.serve import run_gunicorn


def json_response(body: Any, status: int = 200) -> flask.Response:
    """A compact JSON response (``flask.jsonify`` costs the local services ~10 % of their CPU per call)."""
    return flask.Response(json.dumps(body, separators=(",", ":")), status, mimetype="application/json")


class QuietRequestHandler(WSGIRequestHandler):
    """No access lines (the services log JSON decisions) and no noise for injected resets."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the access line."""

    def log_error(self, format: str, *args: Any) -> None:
        """Skip write errors on sockets reset on purpose."""


def threaded_server(host: str, port: int, app: Any) -> BaseWSGIServer:
    """A threaded, quiet WSGI server (port 0 picks a free one)."""
    return make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)


def serve_forever(factory: Callable[[], Any], host: str, port: int, *, threads: int = 32) -> None:
    """Serve the WSGI app ``factory()`` builds with gunicorn until SIGTERM/SIGINT.

    Werkzeug's development server closes every connection after one request; production clients
    (and the real CloudDC API) keep connections alive, so the local services must too.
    """
    run_gunicorn(
        factory,
        {
            "bind": f"{host}:{port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": threads,
            "keepalive": 30,
            "timeout": 0,
            "graceful_timeout": 10,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
        },
    )
