"""W3C trace context along a chain of events: parse what came in, start a step, say what goes out.

Every step of one instance's reaping is a span of one trace: the inbound event's ``traceparent``
extension (CloudEvents distributed tracing), else the HTTP ``traceparent`` header, else a new root.
Follow-ups and results carry the step's own context, so the next step is its child. This module is
pure standard library: tracing costs a few string operations per event when no exporter is configured.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final, NamedTuple

_TRACEPARENT: Final = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_MAX_TRACESTATE: Final = 512
_MAX_STEP: Final = 1_000_000


class StepContext(NamedTuple):
    """One step's place in its trace: its own span id, its parent's, and its position in the chain."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    sampled: bool = True
    state: str | None = None
    step: int = 1

    @property
    def traceparent(self) -> str:
        """This step as a ``traceparent`` value (what its follow-ups and results carry)."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


class Parent(NamedTuple):
    """What an inbound event says about where it comes from (all optional)."""

    traceparent: str | None = None
    tracestate: str | None = None
    step: str | None = None  # the ``reaperstep`` extension of reaper's own follow-ups


def new_span_id() -> str:
    """A random, non-zero 64-bit span id in hex."""
    return _random_hex(64)


def _random_hex(bits: int) -> str:
    # W3C trace context asks for random ids, not secret ones: Mersenne Twister (seeded from the OS),
    # not a getrandom() syscall per id.
    while not (value := random.getrandbits(bits)):
        continue
    return f"{value:0{bits // 4}x}"


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled) from a valid version-00 ``traceparent``; None for anything else."""
    match = _TRACEPARENT.match(value.strip().lower()) if value else None
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def start(parent: Parent, span_id: str | None = None) -> StepContext:
    """The context of a step that continues ``parent`` (or a new root when it names none)."""
    parsed = parse_traceparent(parent.traceparent)
    step = (
        int(parent.step) if parent.step and parent.step.isdigit() and 0 < int(parent.step) < _MAX_STEP else 1
    )
    state = parent.tracestate[:_MAX_TRACESTATE] if parent.tracestate and parsed else None
    own = span_id or new_span_id()
    if parsed is None:
        return StepContext(_random_hex(128), own, None, True, None, step)
    trace_id, parent_span, sampled = parsed
    return StepContext(trace_id, own, parent_span, sampled, state, step)


_current: ContextVar[StepContext | None] = ContextVar("reaper_step", default=None)


def current() -> StepContext | None:
    """The step being handled in this thread (None outside a handler)."""
    return _current.get()


@contextmanager
def active(step: StepContext) -> Iterator[StepContext]:
    """Make ``step`` the current one for the log lines and events made inside the block."""
    token = _current.set(step)
    try:
        yield step
    finally:
        _current.reset(token)


def outgoing(*, next_step: bool) -> dict[str, str]:
    """CloudEvents extensions for an event made in the current step: a follow-up is the next step."""
    step = current()
    if step is None:
        return {}
    extensions = {"traceparent": step.traceparent, "reaperstep": str(step.step + (1 if next_step else 0))}
    if step.state:
        extensions["tracestate"] = step.state
    return extensions
