"""A credential fetched with an expiry, refreshed ahead of it by one caller at a time.

Shared by the IAM token and the metadata security key. While one thread refreshes, the others keep
using the value that is still valid; only when none is valid do they wait, and never longer than
one HTTP timeout. A failed fetch is retried after a growing pause, not on every call, so a down IAM
endpoint costs each handler one fast ``CredentialsError`` (503: the source redelivers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from function.errors import CredentialsError

T = TypeVar("T")
_MARGIN_FRACTION: Final = 0.2
_MAX_MARGIN: Final = 600.0
_FIRST_BACKOFF: Final = 1.0
_MAX_BACKOFF: Final = 60.0


class Refreshing(Generic[T]):
    """Holds the current value and its expiry; ``get`` refreshes when it is due."""

    def __init__(
        self, fetch: Callable[[], tuple[T, float]], *, wait: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._fetch = fetch
        self._wait = wait
        self._clock = clock
        self._cond = threading.Condition()
        self._value: T | None = None
        self._expires = 0.0
        self._refresh_at = 0.0
        self._refreshing = False
        self._backoff = 0.0
        self._retry_at = 0.0

    def get(self) -> T:
        """The current value, refreshed first if it is due and nobody else is refreshing it."""
        with self._cond:
            now = self._clock()
            if self._value is not None and now < self._refresh_at:
                return self._value
            valid = self._value is not None and now < self._expires
            if valid and (self._refreshing or now < self._retry_at):
                assert self._value is not None
                return self._value
            if not valid and now < self._retry_at:
                raise CredentialsError("credentials could not be refreshed; trying again shortly")
            if self._refreshing:
                self._cond.wait_for(lambda: not self._refreshing, timeout=self._wait)
                if self._value is not None and self._clock() < self._expires:
                    return self._value
                raise CredentialsError("credentials are being refreshed; not ready in time")
            self._refreshing = True
        return self._refresh()

    def invalidate(self, seen: T) -> None:
        """The API refused ``seen`` (401): the next ``get`` fetches anew, unless someone already did."""
        with self._cond:
            if self._value == seen:
                self._refresh_at = 0.0
                self._expires = 0.0
                self._retry_at = 0.0

    def _refresh(self) -> T:
        try:
            value, expires = self._fetch()
        except CredentialsError:
            with self._cond:
                self._refreshing = False
                self._backoff = min(_MAX_BACKOFF, max(_FIRST_BACKOFF, self._backoff * 2))
                self._retry_at = self._clock() + self._backoff
                self._cond.notify_all()
                if self._value is not None and self._clock() < self._expires:
                    return self._value
            raise
        with self._cond:
            now = self._clock()
            lifetime = max(expires - now, 0.0)
            self._value, self._expires = value, expires
            self._refresh_at = expires - min(_MAX_MARGIN, lifetime * _MARGIN_FRACTION)
            self._refreshing, self._backoff, self._retry_at = False, 0.0, 0.0
            self._cond.notify_all()
            return value
