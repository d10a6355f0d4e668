"""``reaper delay-service``: the embedded default delay transport (design §6, ``local``).

The package: ``api`` (the schedule API), ``dispatcher`` (due deliveries), ``store`` (SQLite),
``allowlist`` (which targets and hosts).

A loopback-only HTTP service that stores each scheduled event in SQLite and POSTs it, as a
structured CloudEvent, to its target when due; 5xx answers, 408/429 and transport failures are
retried with backoff, other 4xx answers are dead-lettered at once (kept, and listed by
``GET /v1/events``). Survives restarts (pending rows are delivered after the restart) and ignores
duplicate dedup keys.

It is no open relay for other local processes: targets must match one of ``--allow-target``
(default: ``REAPER_SELF_URL``), schedule bodies are capped and parsed strictly, and its database
files are readable by their owner only.
"""

from __future__ import annotations

from pathlib import Path

from reaper.companions.delay.allowlist import is_loopback
from reaper.servers import serve_forever


def serve(
    host: str, port: int, db_path: Path | str, allowed_targets: tuple[str, ...], *, threads: int
) -> None:
    """Serve the delay service on a loopback ``host`` until a signal stops it."""
    from reaper.companions.delay.api import wsgi_app

    if not is_loopback(host):
        raise ValueError(f"the delay service listens on loopback only, not {host!r}")
    serve_forever(lambda: wsgi_app(db_path, allowed_targets), host, port, threads=threads)
