"""The port: what reaper asks of its shared state, and the one error every adapter raises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from function.errors import RetryableError


class StoreUnavailableError(RetryableError):
    """The state store did not answer in time: fail closed (503, the source redelivers; no DELETE)."""


class StateStore(Protocol):
    """Claims that expire: the first to claim a live key wins, everyone else is told no.

    ``owner``: a claim taken with an owner is won again (and renewed) by the same owner, so a chain can
    retry its own delete; without one, nobody wins a live key twice (a replayed request id).
    """

    def claim(self, key: str, ttl: float, owner: str | None = None) -> bool:
        """True when this call holds ``key`` for ``ttl`` seconds now; False when someone else does."""

    def claim_many(self, keys: Sequence[str], ttl: float, owner: str | None = None) -> list[bool]:
        """``claim`` for each key, in one round trip; the answers in the keys' order."""

    def count(self, key: str, ttl: float, *, also_read: str | None = None) -> tuple[int, str | None]:
        """Add one to the counter ``key`` (kept ``ttl`` seconds), atomically: its new value, and the value
        of ``also_read`` in the same round trip."""

    def read(self, key: str) -> str | None:
        """The value ``write`` left at ``key``, or None."""

    def write(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` at ``key`` for ``ttl`` seconds."""

    def release(self, key: str) -> None:
        """Give ``key`` up (its work failed transiently and will come again)."""

    def ping(self) -> None:
        """Raise ``StoreUnavailableError`` unless the store answers."""
