"""One JSON line per log record on stderr, with every registered secret redacted.

Plain ``logging`` with a small formatter rather than structlog/python-json-logger: the whole need
is one ``jsontext.dumps`` and a redaction pass, which is less code than configuring a dependency.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

from function import jsontext
from function.tracing import context as tracing_context
from function.utctime import second_text

REDACTED: Final = "[REDACTED]"
_MIN_SECRET_LEN: Final = 6
_MAX_ROTATING: Final = 256
# Two process-wide tiers, neither of which caller input can touch: secrets from the configuration
# (kept for the life of the process) and tokens the process fetched itself as they rotate (the most
# recent kept). Tokens a caller brings (X-CFF-Auth-Token) are redacted only inside their own request.
_configured: set[str] = set()
_rotating: OrderedDict[str, None] = OrderedDict()
_secrets_lock = threading.Lock()
# Longest first, rebuilt only when a secret is added: redaction runs on every log line.
_ordered: tuple[str, ...] = ()
# Whether some configured secret is written differently in JSON (a '"', '\\' or control character is
# escaped): only then must values be redacted before they are serialized, not just the line after.
_escaped_in_json: bool = False
_request_secrets: ContextVar[tuple[str, ...]] = ContextVar("reaper_request_secrets", default=())
_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def register_secret(value: str, *, rotating: bool = False) -> None:
    """Remember a value that must never appear in any log line (``rotating``: one of a refreshed series)."""
    global _ordered, _escaped_in_json
    if len(value) < _MIN_SECRET_LEN:
        return
    with _secrets_lock:
        if value in _configured or (rotating and value in _rotating):
            return
        if rotating:
            _rotating[value] = None
            while len(_rotating) > _MAX_ROTATING:
                _rotating.popitem(last=False)
        else:
            _configured.add(value)
        _ordered = tuple(sorted(_configured | set(_rotating), key=len, reverse=True))
        _escaped_in_json = any(_changes_in_json(secret) for secret in _ordered)


@contextmanager
def request_secret(value: str | None) -> Iterator[None]:
    """Redact ``value`` in log lines written inside this block only (a token the caller brought)."""
    if not value or len(value) < _MIN_SECRET_LEN:
        yield
        return
    marker = _request_secrets.set((*_request_secrets.get(), value))
    try:
        yield
    finally:
        _request_secrets.reset(marker)


def redact(text: str) -> str:
    """Replace every registered secret, and this request's own, in ``text``."""
    for secret in (*_request_secrets.get(), *_ordered):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_values(value: Any) -> Any:
    """``value`` with every secret redacted in each string it holds (keys too), before it is serialized.

    Redacting the serialized line alone misses a secret that JSON writes escaped (``"``, ``\\``, a control
    character): the line holds ``\\"`` where the secret has ``"``.
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_values(k): redact_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(item) for item in value]
    return value


def _changes_in_json(secret: str) -> bool:
    return any(ch in '"\\' or ch < " " for ch in secret)


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
        if _escaped_in_json or any(_changes_in_json(secret) for secret in _request_secrets.get()):
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
