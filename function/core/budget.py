"""The API budget's arithmetic: calls counted per quarter second, slowed by 429s (pure; the store counts).

``cap`` (``REAPER_MAX_CALLS_PER_SECOND``) calls in any one second, whatever the instances: time is cut into
quarter seconds, and each quarter admits a fifth of the rate, so a sliding second (which touches five
quarters at most) never holds more than the rate. Counting is one atomic increment in the shared store per
call, so instances never contend. A 429 halves the rate for the whole fleet; it recovers toward the cap by
a tenth of the cap per second. A call the budget cannot admit now is not made: its step waits as a delayed
event, as after a 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

OVER_BUDGET: Final = "over-budget"  # the failure of a call not made: the budget said wait
QUARTERS: Final = 4  # counting windows per second
MIN_RATE: Final = 5.0  # one call per quarter: the least the counting can say
_RECOVERY: Final = 0.1  # of the cap, per second since the last 429


class Slowdown(NamedTuple):
    """The rate a 429 left, and when."""

    rate: float
    at: float

    def text(self) -> str:
        """As the store keeps it."""
        return f"{self.rate:.4f} {self.at:.4f}"

    @classmethod
    def parse(cls, text: str | None) -> Slowdown | None:
        """The stored slowdown; None when there is none (or it cannot be read)."""
        try:
            rate, at = (text or "").split()
            return cls(float(rate), float(at))
        except ValueError:
            return None


def quarter(now: float) -> int:
    """The counting window ``now`` falls in."""
    return math.floor(now * QUARTERS)


def rate_now(slowdown: Slowdown | None, now: float, cap: float) -> float:
    """The rate allowed at ``now``: the cap, or what the last 429 left of it, recovering since."""
    if slowdown is None:
        return cap
    return max(MIN_RATE, min(cap, slowdown.rate + cap * _RECOVERY * max(now - slowdown.at, 0.0)))


def wait_for(count: int, rate: float, now: float) -> float:
    """0.0 when the ``count``-th call of this quarter is admitted; else the seconds until a quarter with room.

    The count says how far over the call is: the k-th call over waits for the quarter that admits it if
    every call before it came back first, so a burst's deferred calls spread out instead of all coming
    back to the same quarter and crowding it again.
    """
    admitted = max(1, math.floor(rate / (QUARTERS + 1)))
    if count <= admitted:
        return 0.0
    later = 1 + (count - admitted - 1) // admitted  # quarters from now, the next being 1
    return max((quarter(now) + later) / QUARTERS - now, 0.01)


def throttled(rate: float, now: float) -> Slowdown:
    """The gateway answered 429 while ``rate`` was allowed: half of it, from now."""
    return Slowdown(max(MIN_RATE, rate / 2.0), now)
