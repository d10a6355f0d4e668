"""This process's estimate of how long an accepted delete takes, learned from the deletes it saw end."""

from __future__ import annotations

import threading

from function import core


class DeleteTimes:
    """This process's estimate of how long an accepted delete takes (thread-safe; the core computes it)."""

    def __init__(self, seed: float) -> None:
        self._estimate = core.Estimate(seed)
        self._lock = threading.Lock()

    def current(self) -> core.Estimate:
        """The estimate with what its last deletes showed."""
        return self._estimate

    def learn(self, observed: core.DeleteTiming, policy: core.Policy) -> None:
        """Fold one finished delete into the estimate."""
        with self._lock:
            self._estimate = core.learn(self._estimate, observed, policy)

    def adopt(self, carried: float) -> None:
        """A process that has seen no delete yet takes the estimate a follow-up carries: not blind."""
        with self._lock:
            if self._estimate.samples == 0:
                self._estimate = core.Estimate(carried)
