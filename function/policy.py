"""The pure core's policy and the gate's rules, as the settings say them."""

from __future__ import annotations

from function import core
from function.core import gate
from function.settings import Settings


def policy_from(settings: Settings) -> core.Policy:
    """The core's policy for these settings."""
    return core.Policy(
        check_delay=settings.check_delay,
        check_max_delay=settings.check_max_delay,
        deadline=settings.deadline,
        rules=rules_from(settings),
        max_retries=settings.max_retries,
        schedule="fixed" if settings.check_schedule == "fixed" else "learned",
    )


def rules_from(settings: Settings) -> gate.Rules:
    """The trust model's rules for these settings."""
    return gate.Rules(
        allowed_projects=settings.allowed_projects,
        protect_key=settings.protect_key,
        expiry_key=settings.expiry_key,
        dry_run=settings.dry_run,
    )
