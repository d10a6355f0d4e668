"""The embedded default: claims in this process's memory, bounded, for one process only."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

_MAX_ENTRIES: Final = 100_000


class MemoryStore:
    """Claims until they expire; the oldest are forgotten first beyond ``max_entries``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = _MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._until: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

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
