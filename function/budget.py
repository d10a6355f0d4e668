"""The API budget per project, shared by every instance through the state store (``core.budget``).

Set ``REAPER_MAX_CALLS_PER_SECOND`` and every CloudDC call of a project is first counted in that
project's current quarter second (one store round trip, an atomic increment); a call the budget cannot
admit is not made, and its step waits as a delayed event. A 429 slows the whole fleet down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from function.core import budget
from function.state import StateStore

_SLOWDOWN_KEPT: Final = 600.0  # a slowdown is forgotten once fully recovered (well within this)


class Budgets:
    """Admit and slow down, per project, in the shared store: one budget for the whole fleet."""

    def __init__(self, store: StateStore, cap: float, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._cap = cap
        self._clock = clock

    def take(self, project_id: str) -> float:
        """0.0 when a call may go now; else the seconds until the budget has room."""
        now = self._clock()
        window = f"budget:{project_id}:{budget.quarter(now)}"
        count, held = self._store.count(window, 2.0, also_read=_slowdown_key(project_id))
        rate = budget.rate_now(budget.Slowdown.parse(held), now, self._cap)
        return budget.wait_for(count, rate, now)

    def throttled(self, project_id: str) -> None:
        """The gateway answered 429: the whole fleet's calls to this project slow down."""
        now = self._clock()
        key = _slowdown_key(project_id)
        rate = budget.rate_now(budget.Slowdown.parse(self._store.read(key)), now, self._cap)
        # Two instances meeting 429s at once may each write: the later halving wins, which is as slow.
        self._store.write(key, budget.throttled(rate, now).text(), _SLOWDOWN_KEPT)


def _slowdown_key(project_id: str) -> str:
    return f"budget:{project_id}:slowdown"
