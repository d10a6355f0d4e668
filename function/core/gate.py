"""The trust model's one decision (design §7): may this instance be deleted now, and if not, why not.

Every path that can reach a DELETE — first try, retry, re-delete, batch, sweep — asks ``judge`` with
what ListInstances said a moment ago; only the verdict ``delete`` lets a delete through. Pure: the
record, the clock and the policy are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

TERMINATED: Final = "terminated"
FAILED_STATES: Final = frozenset({"failed", "error"})
SHUTTING_DOWN: Final = "shutting-down"
DELETABLE_STATES: Final = frozenset({"running", "stopped"})
_TRUE: Final = frozenset({"true", "yes", "1", "on"})
# The metadata keys' defaults (REAPER_PROTECT_KEY, REAPER_EXPIRY_KEY): one definition, read by Settings too.
PROTECT_KEY: Final = "reaper-protected"
EXPIRY_KEY: Final = "reaper-expires-at"

Verdict = Literal[
    "delete",  # the only verdict that allows a DELETE
    "dry-run",  # would delete, but REAPER_DRY_RUN is on
    "project-not-allowed",
    "protected",
    "not-expired",
    "absent",  # ListInstances does not know it (any more)
    "terminated",
    "failed",  # a delete already failed: an operator looks at it
    "shutting-down",  # a delete is under way: follow it, do not delete again
    "not-ready",  # pending, reinstalling...: look again later
]
SKIP_VERDICTS: Final = frozenset({"dry-run", "project-not-allowed", "protected", "not-expired"})


@dataclass(frozen=True)
class Rules:
    """What the trust model needs from the settings."""

    allowed_projects: frozenset[str] | None  # None: every project, said explicitly with '*'
    protect_key: str = PROTECT_KEY
    expiry_key: str = EXPIRY_KEY
    skew: float = 60.0
    dry_run: bool = False


class Sighting(NamedTuple):
    """One instance as ListInstances showed it just now (``state`` normalised by ``normalise_state``)."""

    state: str | None
    metadata: Mapping[str, Any]

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Sighting:
        """Build from a ListInstances record."""
        metadata = record.get("metadata")
        return cls(normalise_state(record.get("state")), metadata if isinstance(metadata, dict) else {})


def normalise_state(state: object) -> str | None:
    """Return the API's state in one spelling (``shutting_down`` -> ``shutting-down``)."""
    return state.strip().lower().replace("_", "-") if isinstance(state, str) and state.strip() else None


def project_allowed(project_id: str, rules: Rules) -> bool:
    """True when reaper may act in this project at all."""
    return rules.allowed_projects is None or project_id in rules.allowed_projects


def expires_at(metadata: Mapping[str, Any], key: str) -> float | None:
    """The expiry the metadata declares (RFC 3339 with a zone); None when absent or unreadable."""
    raw = metadata.get(key)
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        when = datetime.fromisoformat(raw.strip().replace("z", "Z"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def is_protected(metadata: Mapping[str, Any], key: str) -> bool:
    """True when the protection metadata says true/yes/1/on."""
    value = metadata.get(key)
    return isinstance(value, str | bool | int) and str(value).strip().lower() in _TRUE


def judge(
    project_id: str,
    sighting: Sighting | None,
    claimed_expiry: float | None,
    now: float,
    rules: Rules,
    *,
    expiry_required: bool = False,
) -> Verdict:
    """Decide whether the instance may be deleted now.

    ``sighting`` is None when ListInstances did not return the instance. ``claimed_expiry`` is the
    event's ``expired_at``; ``expiry_required`` (sweeps) means only the metadata's expiry counts.
    """
    if not project_allowed(project_id, rules):
        return "project-not-allowed"
    if sighting is None:
        return "absent"
    state = sighting.state
    if state == TERMINATED:
        return "terminated"
    if state in FAILED_STATES:
        return "failed"
    if state == SHUTTING_DOWN:
        return "shutting-down"
    if is_protected(sighting.metadata, rules.protect_key):
        return "protected"
    declared = expires_at(sighting.metadata, rules.expiry_key)
    if expiry_required and declared is None:
        return "not-expired"
    for expiry in (declared, claimed_expiry):
        if expiry is not None and expiry > now + rules.skew:
            return "not-expired"
    if state not in DELETABLE_STATES:
        return "not-ready"
    return "dry-run" if rules.dry_run else "delete"
