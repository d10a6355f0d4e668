"""One JSON line per log record on stderr, with every registered secret redacted (``redaction``).

Plain ``logging`` with a small formatter rather than structlog/python-json-logger: the whole need
is one ``jsontext.dumps`` and a redaction pass, which is less code than configuring a dependency.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from function import jsontext
from function.redaction import redact, redact_values, values_need_redaction
from function.tracing import context as tracing_context
from function.utctime import second_text

_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
# What explain reads back: the step lines of a chain.
STEP_HANDLED: Final = "handled"
SHARED_READ_ANNOUNCED: Final = "announced from a shared read"


def _redacted_text(value: object) -> str:
    """What the line writes for a value JSON cannot hold (its ``str``), redacted before it is escaped."""
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, the step's trace and ``extra``.

    ``severity`` is what Cloud Logging reads as the level; inside a handler step the line carries the
    step's ``trace_id``, ``span_id`` and ``step`` (its position in the instance's chain), and with
    ``google_project`` set, Cloud Logging's own trace fields, so a line opens its trace there.
    """

    def __init__(self, google_project: str | None = None) -> None:
        super().__init__()
        self._google_project = google_project

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a redacted JSON line."""
        payload: dict[str, Any] = {
            "time": f"{second_text(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        step = tracing_context.current()
        if step is not None:
            payload.update(trace_id=step.trace_id, span_id=step.span_id, step=step.step)
            if self._google_project:
                payload["logging.googleapis.com/trace"] = (
                    f"projects/{self._google_project}/traces/{step.trace_id}"
                )
                payload["logging.googleapis.com/spanId"] = step.span_id
                payload["logging.googleapis.com/trace_sampled"] = step.sampled
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info)
        if values_need_redaction():
            payload = redact_values(payload)
        return redact(jsontext.dumps(payload, default=_redacted_text).decode())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record arrives (runners and tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Emit to the current stderr."""
        self.stream = sys.stderr
        super().emit(record)


def configure(level: str = "INFO", google_project: str | None = None) -> None:
    """Route the ``reaper`` loggers to stderr as JSON lines at ``level`` (idempotent; the last call wins)."""
    logger = logging.getLogger("reaper")
    logger.setLevel(level.upper())
    for existing in logger.handlers:
        if isinstance(existing.formatter, JsonFormatter):
            existing.setFormatter(JsonFormatter(google_project))
            return
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(google_project))
    logger.addHandler(handler)
    logger.propagate = False
