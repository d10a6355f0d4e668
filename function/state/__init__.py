"""The fleet's shared state (design §9): one small interface, in-process by default, Redis when configured.

Everything that must hold across instances of the function goes through a ``StateStore``: replay claims
(webhook ids, QStash jti), the delete claim per instance, claims per id for batch-deletes, a sweep lease per
project, one delivery per result id. ``REAPER_STATE_URL`` unset: ``MemoryStore``, right for one process
only (``make demo``, a single VM worker); ``redis://`` / ``rediss://``: ``RedisStore``, for anything with
more than one process.
"""

from __future__ import annotations

from typing import Final

from function.secret import Secret
from function.state.base import StateStore, StoreUnavailableError
from function.state.memory import MemoryStore

__all__ = [
    "DELETE_CLAIM_SECONDS",
    "RESULT_CLAIM_SECONDS",
    "SWEEP_LEASE_SECONDS",
    "MemoryStore",
    "StateStore",
    "StoreUnavailableError",
    "delete_claim",
    "open_store",
    "result_claim",
    "sweep_lease",
]

# Long enough for the winner's DELETE to show in every read (the state leaves running), short enough that
# a holder that crashed before its DELETE blocks the others' re-delete for two minutes at most.
DELETE_CLAIM_SECONDS: Final = 120.0
# One sweep lists a project at a time: a listing takes seconds; a crashed lister holds it a minute at most.
SWEEP_LEASE_SECONDS: Final = 60.0
# Duplicate chains of one origin finish minutes apart at most; a day covers any redelivery of the result.
RESULT_CLAIM_SECONDS: Final = 24 * 3600.0


def delete_claim(project_id: str, instance_id: str) -> str:
    """The key whose holder alone may DELETE this instance."""
    return f"delete:{project_id}:{instance_id}"


def sweep_lease(project_id: str) -> str:
    """The key whose holder alone lists this project for a sweep."""
    return f"sweep:{project_id}"


def result_claim(event_id: str) -> str:
    """The key whose holder alone delivers this result event."""
    return f"result:{event_id}"


def open_store(url: Secret | None, *, timeout: float) -> StateStore:
    """The store ``REAPER_STATE_URL`` names, or the in-process one when it is unset."""
    if url is None:
        return MemoryStore()
    from function.state.redis import RedisStore

    return RedisStore(url, timeout=timeout)
