"""A string that never shows itself: safe to pass around, log and repr."""

from __future__ import annotations

from typing import Final

from function import redaction

_MASK: Final = "***"


class Secret:
    """Holds a credential; ``repr``/``str`` are masked and the value is registered for log redaction."""

    __slots__ = ("_value",)

    def __init__(self, value: str, *, scope: str = "configured") -> None:
        """``scope``: ``configured`` (kept for the process), ``rotating`` (a refreshed series),
        ``request`` (a caller's token: redacted by its request alone, see ``redaction.request_secret``)."""
        self._value = value
        if scope != "request":
            redaction.register_secret(value, rotating=scope == "rotating")

    def reveal(self) -> str:
        """Return the real value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")
