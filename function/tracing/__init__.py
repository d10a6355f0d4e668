"""Tracing and metrics for reaper's steps: W3C trace context always, OpenTelemetry only when configured.

With no ``OTEL_*`` exporter set, a step costs a span id and a context variable, and no OpenTelemetry
module is imported (cold start and per-event CPU stay as measured). With one set (``reaper[otel]``),
``function.tracing.otel`` builds the SDK from the standard variables and every step becomes a span.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final

from function.tracing.context import Parent, StepContext, active, current, outgoing, start

__all__ = [
    "Parent",
    "Span",
    "StepContext",
    "Telemetry",
    "active",
    "current",
    "install",
    "outgoing",
    "telemetry",
]

AttributeValue = str | int | float | bool | Sequence[str] | Sequence[int]
_DISABLED: Final = frozenset({"", "none"})


class Span:
    """A handler step: its trace context, and attributes an exporter may record."""

    recording = False  # nothing records attributes: callers need not build them

    def __init__(self, context: StepContext) -> None:
        self.context = context

    def set(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """Record attributes on the span (nothing to record without an exporter)."""


class Telemetry:
    """Trace contexts without an exporter: ids for the logs and the events, nothing else."""

    @contextmanager
    def step(self, name: str, parent: Parent) -> Iterator[Span]:
        """Run a handler step as a child of ``parent`` (``name`` names the span where one is recorded)."""
        with active(start(parent)) as context:
            yield Span(context)

    def count_call(self, method: str, status: int | str | None) -> None:
        """Count one CloudDC call by method and status."""

    def count_result(self, kind: str, reason: str | None) -> None:
        """Count one instance's result by kind and reason."""

    def count_follow_up(self, transport: str) -> None:
        """Count one follow-up handed to the delay transport."""

    def count_hand_off_failure(self, what: str) -> None:
        """Count one failed hand-off (a follow-up or a result that could not be passed on)."""


def configured(env: Mapping[str, str]) -> bool:
    """True when the standard variables ask for an exporter (and the SDK is not disabled)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = (env.get("OTEL_TRACES_EXPORTER"), env.get("OTEL_METRICS_EXPORTER"))
    endpoints = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT"), env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    return any(e is not None and e.strip().lower() not in _DISABLED for e in exporters) or any(endpoints)


def from_env(env: Mapping[str, str] | None = None) -> Telemetry:
    """OpenTelemetry when configured by ``OTEL_*`` (imported only then), else plain trace contexts."""
    environ = os.environ if env is None else env
    if not configured(environ):
        return Telemetry()
    from function.tracing.otel import OtelTelemetry  # the optional extra, loaded only when asked for

    return OtelTelemetry(environ)


_telemetry: Telemetry = Telemetry()


def telemetry() -> Telemetry:
    """The process's telemetry (plain until ``install``)."""
    return _telemetry


def install(chosen: Telemetry) -> None:
    """Use ``chosen`` for every step from now on (once, at start)."""
    global _telemetry
    _telemetry = chosen
