"""The process-wide secret registry: every value registered here is redacted from what reaper writes.

Two tiers, neither of which caller input can touch: secrets from the configuration (kept for the life
of the process) and tokens the process fetched itself as they rotate (the most recent kept). Tokens a
caller brings (X-CFF-Auth-Token) are redacted only inside their own request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

REDACTED: Final = "[REDACTED]"
_MIN_SECRET_LEN: Final = 6
_MAX_ROTATING: Final = 256
_configured: set[str] = set()
_rotating: OrderedDict[str, None] = OrderedDict()
_secrets_lock = threading.Lock()
# Longest first, rebuilt only when a secret is added: redaction runs on every log line.
_ordered: tuple[str, ...] = ()
# Whether some configured secret is written differently in JSON (a '"', '\\' or control character is
# escaped): only then must values be redacted before they are serialized, not just the line after.
_escaped_in_json: bool = False
_request_secrets: ContextVar[tuple[str, ...]] = ContextVar("reaper_request_secrets", default=())


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


def values_need_redaction() -> bool:
    """Whether some live secret is written escaped in JSON, so values must be redacted before serializing."""
    return _escaped_in_json or any(_changes_in_json(secret) for secret in _request_secrets.get())
