"""Wire the adapters together once per process, from validated settings."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from function import jsonlog, schedulers
from function.clouddc import CloudDCClient
from function.credentials import TokenSource
from function.handoff import HandOff
from function.reaping import Reaper
from function.results import ResultSink
from function.settings import Settings

if TYPE_CHECKING:
    from function.schedulers.qstash import SignatureVerifier

_LOG = logging.getLogger("reaper.start")


def build(settings: Settings) -> Reaper:
    """Create the shared clients and the reaper; logs the effective settings once."""
    jsonlog.configure(settings.log_level)
    tokens = TokenSource(
        settings.auth_token, settings.auth_token_file, from_request=settings.token_from_request
    )
    handoff = HandOff(
        schedulers.from_settings(settings),
        ResultSink(settings.sink_url, timeout=settings.http_timeout),
        settings.event_source,
        time.time,
    )
    reaper = Reaper(
        settings=settings,
        client=CloudDCClient(settings.endpoint, tokens, timeout=settings.http_timeout),
        tokens=tokens,
        handoff=handoff,
    )
    _LOG.info("settings", extra={"settings": settings.public_view()})
    return reaper


def qstash_verifier(settings: Settings) -> SignatureVerifier | None:
    """A verifier for QStash deliveries when signing keys are configured, else None."""
    keys = [k for k in (settings.qstash_current_signing_key, settings.qstash_next_signing_key) if k]
    if not keys:
        return None
    from function.schedulers.qstash import SignatureVerifier

    return SignatureVerifier(settings.self_url, keys)
