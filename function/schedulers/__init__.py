"""Delay transports (design §6): one interface, ``schedule(event, delay, dedup_key)``, at-least-once."""

from __future__ import annotations

from typing import Protocol

from cloudevents.http import CloudEvent

from function.settings import Settings


class Scheduler(Protocol):
    """Delivers ``event`` back to the function after ``delay`` seconds; raises ``HandOffError``."""

    def schedule(self, event: CloudEvent, delay: float, dedup_key: str) -> None:
        """Hand the event to the transport; return once it is durably accepted."""

    def close(self) -> None:
        """Release connections."""


def from_settings(settings: Settings) -> Scheduler:
    """The transport named by ``REAPER_SCHEDULER``, imported lazily so cold start pays only for it."""
    if settings.scheduler == "local":
        from function.schedulers.local import LocalScheduler

        return LocalScheduler(settings.delay_service_url, settings.self_url, timeout=settings.http_timeout)
    raise NotImplementedError(settings.scheduler)  # refused earlier by Settings
