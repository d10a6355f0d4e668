"""The embedded default: claims in this process's memory, bounded, for one process only."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

_MAX_ENTRIES: Final = 100_000
_MAX_COUNTERS: Final = 1_000


class MemoryStore:
    """Claims until they expire; the oldest are forgotten first beyond ``max_entries``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = _MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._until: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        # Counters and values: a few per project at a time (the budget's quarters), pruned when expired.
        self._counts: dict[str, tuple[float, int]] = {}
        self._values: dict[str, tuple[float, str]] = {}

    def claim(self, key: str, ttl: float, owner: str | None = None) -> bool:
        """True when ``key`` is free (or ``owner``'s already); False while someone else holds it."""
        return self.claim_many((key,), ttl, owner)[0]

    def claim_many(self, keys: Sequence[str], ttl: float, owner: str | None = None) -> list[bool]:
        """``claim`` for each key under one lock."""
        now = self._clock()
        won = []
        with self._lock:
            self._prune(now)
            for key in keys:
                held = self._until.get(key)
                if held is not None and held[0] > now and (owner is None or held[1] != owner):
                    won.append(False)
                    continue
                self._until[key] = (now + ttl, owner)
                self._until.move_to_end(key)
                won.append(True)
            while len(self._until) > self._max:
                self._until.popitem(last=False)
        return won

    def count(self, key: str, ttl: float, *, also_read: str | None = None) -> tuple[int, str | None]:
        """Add one to ``key`` under the store's lock."""
        now = self._clock()
        with self._lock:
            if len(self._counts) > _MAX_COUNTERS:
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
            until, value = self._counts.get(key, (0.0, 0))
            value = value + 1 if until > now else 1
            self._counts[key] = (until if until > now else now + ttl, value)
            held = self._values.get(also_read) if also_read is not None else None
        return value, held[1] if held is not None and held[0] > now else None

    def read(self, key: str) -> str | None:
        """The live value at ``key``."""
        held = self._values.get(key)
        return held[1] if held is not None and held[0] > self._clock() else None

    def write(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` until ``ttl`` from now."""
        with self._lock:
            self._values[key] = (self._clock() + ttl, value)

    def release(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._until.pop(key, None)

    def ping(self) -> None:
        """Always answers."""

    def _prune(self, now: float) -> None:
        # Oldest first; an entry outliving a later one only delays pruning, never a correct answer.
        while self._until and next(iter(self._until.values()))[0] <= now:
            self._until.popitem(last=False)
