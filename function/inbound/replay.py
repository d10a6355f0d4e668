"""Ids already seen inside a signature's validity: a captured, validly signed request works once.

In-process and bounded, which is enough for the window it guards (minutes) on one instance; several
instances behind a load balancer each keep their own (noted in the README's Safety section).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

_MAX_ENTRIES: Final = 100_000


class SeenIds:
    """Claims ids until they expire; a second claim of a live id is refused."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = _MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._until: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is claimed within ``ttl`` seconds; False for a replay."""
        now = self._clock()
        with self._lock:
            self._prune(now)
            until = self._until.get(key)
            if until is not None and until > now:
                return False
            self._until[key] = now + ttl
            self._until.move_to_end(key)
            while len(self._until) > self._max:
                self._until.popitem(last=False)
            return True

    def release(self, key: str) -> None:
        """Forget ``key``: the request it came with failed transiently and will be delivered again."""
        with self._lock:
            self._until.pop(key, None)

    def _prune(self, now: float) -> None:
        # Oldest first; an entry outliving a later one only delays pruning, never a correct answer.
        while self._until and next(iter(self._until.values())) <= now:
            self._until.popitem(last=False)
