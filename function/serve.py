"""``reaper serve``: the function behind gunicorn with reaper's own limits, everywhere it runs.

functions-framework's own command starts gunicorn with no worker timeout and no request-line limit
(``timeout=0``, ``limit_request_line=0``): a hung worker is never replaced and a 1 MiB request line
reaches the application. The Makefile, the demo, the tests and every deploy file start the function
through this command instead, with the limits below; the application itself is functions-framework's
(``create_app``), so the targets and signatures are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from function.wsgi import run_gunicorn

DEFAULT_SOURCE: Final = Path(__file__).with_name("main.py")
LIMITS: Final[dict[str, Any]] = {
    "worker_class": "gthread",
    # A worker whose heartbeat stops (a handler stuck past any HTTP timeout) is replaced; handlers
    # take milliseconds and every outbound call has its own timeout (REAPER_HTTP_TIMEOUT).
    "timeout": 60,
    # SIGTERM (every scale-down on Cloud Run and Knative): requests in hand finish, no new ones start.
    # 8 s fits inside Cloud Run's 10 s between SIGTERM and SIGKILL; a request still running then was not
    # answered 2xx, so its source redelivers it (tests/test_reliability.py, SIGTERM under load).
    "graceful_timeout": 8,
    # Longer than the 60 s idle timeout of common load balancers, so they close idle connections first.
    "keepalive": 75,
    "limit_request_line": 8190,
    "limit_request_fields": 64,
    # FunctionGraph's X-CFF-Auth-Token is several KB; 16 KiB per header leaves room and no more.
    "limit_request_field_size": 16384,
    "accesslog": None,
    "errorlog": "-",
    "loglevel": "warning",
}


def gunicorn_options(host: str, port: int, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The gunicorn settings for the function: reaper's limits, workers and threads from the environment."""
    environ = os.environ if env is None else env
    return {
        **LIMITS,
        "bind": f"{host}:{port}",
        "workers": int(environ.get("WORKERS", "1")),
        "threads": int(environ.get("THREADS", "128")),
    }


def serve(source: str, target: str, signature: str, host: str, port: int) -> None:
    """Load the function (bad settings stop here, with one line) and serve it until SIGTERM."""
    from functions_framework import create_app

    app = create_app(target, source, signature)  # type: ignore[no-untyped-call]
    run_gunicorn(lambda: app, gunicorn_options(host, port))
