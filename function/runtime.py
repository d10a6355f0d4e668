"""Wire the adapters together once per process, from validated settings."""

from __future__ import annotations

import logging
import time

from function import credentials, jsonlog, schedulers, state, tracing
from function.budget import Budgets
from function.clouddc import CloudDCClient
from function.handoff import HandOff
from function.inbound.auth import Authenticator, methods_from
from function.reaping import Reaper
from function.results import ResultSink
from function.settings import Settings
from function.signing import EventSigner

_LOG = logging.getLogger("reaper.start")


def build(settings: Settings) -> Reaper:
    """Create the shared clients and the reaper; logs the effective settings once."""
    jsonlog.configure(settings.log_level, settings.google_project)
    tracing.install(tracing.from_env())
    tokens = credentials.from_settings(settings)
    assert settings.event_key is not None  # validated by Settings
    signer = EventSigner(settings.event_key, settings.event_key_previous)
    store = state.open_store(settings.state_url, timeout=settings.state_timeout)
    handoff = HandOff(
        schedulers.from_settings(settings),
        ResultSink(settings.sink_url, timeout=settings.http_timeout, deadline=settings.http_deadline),
        settings.event_source,
        time.time,
        signer,
        store,
    )
    cap = settings.max_calls_per_second
    reaper = Reaper(
        settings=settings,
        client=CloudDCClient(
            settings.endpoint,
            tokens,
            timeout=settings.http_timeout,
            deadline=settings.http_deadline,
            max_body=settings.max_answer_bytes,
            budget=Budgets(store, cap) if cap is not None else None,
        ),
        tokens=tokens,
        handoff=handoff,
        signer=signer,
    )
    _LOG.info("settings", extra={"settings": settings.public_view()})
    if "platform" in settings.inbound_auth:
        _LOG.warning(
            "REAPER_INBOUND_AUTH includes 'platform': external events are accepted from anyone who can "
            "reach this function; the platform in front must authenticate every invocation"
        )
    return reaper


def authenticator(settings: Settings, store: state.StateStore) -> Authenticator:
    """The methods of ``REAPER_INBOUND_AUTH``, in order; replays are claimed in ``store``."""
    return Authenticator(methods_from(settings, store))
