"""``reaper serve``: the function behind gunicorn with reaper's own limits, everywhere it runs.

functions-framework's own command starts gunicorn with no worker timeout and no request-line limit
(``timeout=0``, ``limit_request_line=0``): a hung worker is never replaced and a 1 MiB request line
reaches the application. The Makefile, the demo, the tests and every deploy file start the function
through this command instead, with the limits below; the application itself is functions-framework's
(``create_app``), so the targets and signatures are unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

from function import envvars
from function.errors import SettingsError, refuse_to_start

_LOG = logging.getLogger("reaper.serve")

DEFAULT_SOURCE: Final = Path(__file__).with_name("main.py")
LIMITS: Final[dict[str, Any]] = {
    "worker_class": "gthread",
    # A worker whose heartbeat stops (a handler stuck past any HTTP timeout) is replaced; handlers
    # take milliseconds and every outbound call has its own timeout (REAPER_HTTP_TIMEOUT).
    "timeout": 60,
    # SIGTERM (every scale-down on Cloud Run and Knative): requests in hand finish, no new ones start.
    # 8 s fits inside Cloud Run's 10 s between SIGTERM and SIGKILL; a request still running then was not
    # answered 2xx, so its source redelivers it (tests/integration/test_reliability.py, SIGTERM under load).
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
    options = {
        **LIMITS,
        "bind": f"{host}:{port}",
        "workers": envvars.integer(environ, "WORKERS", 1),
        "threads": envvars.integer(environ, "THREADS", 256),
    }
    if envvars.boolean(environ, "REAPER_PIN_WORKERS", default=False):
        options["post_fork"] = pin_worker
    return options


def least_used_cpu(allowed: Iterable[int], siblings: Iterable[set[int]]) -> int:
    """The allowed CPU that the fewest sibling workers are pinned to (the lowest on a tie).

    A sibling not pinned to one CPU counts for none: it has not chosen yet (or pinning is off for it).
    """
    used = Counter(next(iter(cpus)) for cpus in siblings if len(cpus) == 1)
    return min(sorted(allowed), key=lambda cpu: used[cpu])


def pin_worker(server: Any, worker: Any) -> None:
    """gunicorn's ``post_fork`` hook: keep this worker, and every thread it starts, on one CPU.

    A worker is one Python process: its threads take turns holding one GIL, so it can never use more
    than one CPU for Python code. Free to move, they hand the GIL from CPU to CPU, and on a 2-vCPU VM
    each event cost 1.6-1.7x the CPU (docs/benchmarks.md §2c). Off by default: on a shared host
    whose containers all see every CPU, each would pin its first worker to the same one.
    """
    siblings = []
    for pid in server.WORKERS:
        if pid != worker.pid:
            with contextlib.suppress(OSError):  # a sibling that just exited
                siblings.append(os.sched_getaffinity(pid))
    cpu = least_used_cpu(os.sched_getaffinity(0), siblings)
    os.sched_setaffinity(0, {cpu})
    _LOG.info("worker pinned", extra={"worker_pid": worker.pid, "cpu": cpu})


def serve(source: str, target: str, signature: str, host: str, port: int) -> None:
    """Load the function (bad settings stop here, with one line) and serve it until SIGTERM."""
    from functions_framework import create_app

    try:
        options = gunicorn_options(host, port)
    except SettingsError as exc:
        refuse_to_start(exc)
    app = create_app(target, source, signature)  # type: ignore[no-untyped-call]
    run_gunicorn(lambda: app, options)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """Gunicorn embedded: one worker process (state lives there), gthread, HTTP keep-alive."""

    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Called in the worker after the fork: threads, sockets and databases are created there.
        return self._factory()


def run_gunicorn(factory: Callable[[], Any], options: dict[str, Any]) -> None:
    """Run gunicorn in this process with ``options`` until SIGTERM/SIGINT."""
    _Gunicorn(factory, options).run()
