"""Wire the adapters together once per process, from validated settings."""

from __future__ import annotations

import logging

from function import jsonlog, schedulers
from function.clouddc import CloudDCClient
from function.credentials import TokenSource
from function.reaping import Reaper
from function.results import ResultSink
from function.settings import Settings

_LOG = logging.getLogger("reaper.start")


def build(settings: Settings) -> Reaper:
    """Create the shared clients and the reaper; logs the effective settings once."""
    jsonlog.configure(settings.log_level)
    tokens = TokenSource(settings.auth_token, settings.auth_token_file)
    reaper = Reaper(
        settings=settings,
        client=CloudDCClient(settings.endpoint, tokens, timeout=settings.http_timeout),
        tokens=tokens,
        scheduler=schedulers.from_settings(settings),
        sink=ResultSink(settings.sink_url, timeout=settings.http_timeout),
    )
    _LOG.info("settings", extra={"settings": settings.public_view()})
    return reaper
