"""OpenTelemetry for reaper (the ``reaper[otel]`` extra): imported only when ``OTEL_*`` asks for it.

Configured by the standard variables alone: ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``
(``otlp``, the default when an endpoint is set, or ``console``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the
exporter's own variables, ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (read by the SDK's
``Resource``), ``OTEL_METRIC_EXPORT_INTERVAL``. Each handler step is a span whose parent is the
inbound context; its span id is the one the step's follow-ups and results carry.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from function.tracing import AttributeValue, Span, Telemetry
from function.tracing.context import Parent, StepContext, active, parse_traceparent, start


class _OtelSpan(Span):
    recording = True

    def __init__(self, context: StepContext, span: trace.Span) -> None:
        super().__init__(context)
        self._span = span

    def set(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """Record the attributes that have a value."""
        self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})


class OtelTelemetry(Telemetry):
    """Spans and counters through the OpenTelemetry SDK."""

    def __init__(self, env: Mapping[str, str]) -> None:
        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "reaper"})
        traces = _exporter_name(env, "OTEL_TRACES_EXPORTER")
        provider = TracerProvider(resource=resource)
        if traces == "console":
            # Synchronous: a console span is written when the step ends (tests, local runs).
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
        elif traces == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = provider.get_tracer("reaper")
        self._provider = provider
        readers: list[MetricReader] = []
        metrics = _exporter_name(env, "OTEL_METRICS_EXPORTER")
        if metrics == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stdout)))
        elif metrics == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        self._meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        meter = self._meter_provider.get_meter("reaper")
        self._instances = meter.create_counter(
            "reaper.instances", description="instances by result and reason"
        )
        self._calls = meter.create_counter(
            "reaper.clouddc.calls", description="CloudDC calls by method and status"
        )
        self._follow_ups = meter.create_counter("reaper.follow_ups", description="follow-ups by transport")
        self._failures = meter.create_counter("reaper.hand_off.failures", description="hand-offs that failed")

    @contextmanager
    def step(self, name: str, parent: Parent) -> Iterator[Span]:
        """The step as a server span, child of the inbound context (or a new root)."""
        parsed = parse_traceparent(parent.traceparent)
        remote = None
        if parsed is not None:
            trace_id, span_id, sampled = parsed
            state = TraceState.from_header([parent.tracestate]) if parent.tracestate else None
            remote = trace.set_span_in_context(
                NonRecordingSpan(
                    SpanContext(
                        int(trace_id, 16),
                        int(span_id, 16),
                        is_remote=True,
                        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
                        trace_state=state,
                    )
                )
            )
        with self._tracer.start_as_current_span(name, context=remote, kind=SpanKind.SERVER) as span:
            own = span.get_span_context()
            context = start(parent, span_id=format(own.span_id, "016x"))
            if parsed is None:  # a new root: the SDK chose the trace id
                context = context._replace(trace_id=format(own.trace_id, "032x"))
            span.set_attribute("reaper.step", context.step)
            with active(context):
                yield _OtelSpan(context, span)

    def count_call(self, method: str, status: int | str | None) -> None:
        """Count one CloudDC call."""
        self._calls.add(1, {"method": method, "status": str(status)})

    def count_result(self, kind: str, reason: str | None) -> None:
        """Count one instance's result."""
        self._instances.add(1, {"result": kind, "reason": reason or ""})

    def count_follow_up(self, transport: str) -> None:
        """Count one follow-up handed on."""
        self._follow_ups.add(1, {"transport": transport})

    def count_hand_off_failure(self, what: str) -> None:
        """Count one failed hand-off."""
        self._failures.add(1, {"what": what})


def _exporter_name(env: Mapping[str, str], variable: str) -> str:
    """The exporter a signal asks for: its variable, else ``otlp`` when an OTLP endpoint is set."""
    chosen = (env.get(variable) or "").strip().lower()
    if chosen:
        return chosen
    return "otlp" if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
