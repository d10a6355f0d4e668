"""One error tree, split by what the caller does next.

ReaperError
├── PermanentError          report and acknowledge; retrying cannot help
│   ├── BadEventError       the request is not an event we accept -> 4xx, no side effect
│   └── SettingsError       a setting is invalid -> the process refuses to start
└── RetryableError          the work could not be handed on -> 5xx, the source redelivers
    ├── HandOffError        a follow-up could not be scheduled
    └── CredentialsError    the token could not be read right now
"""

from __future__ import annotations

import sys
from typing import NoReturn


class ReaperError(Exception):
    """Base of every error reaper raises on purpose."""


class PermanentError(ReaperError):
    """Retrying the same input cannot succeed."""


class BadEventError(PermanentError):
    """The request is not an event this function accepts; answered with a 4xx and a JSON body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class SettingsError(PermanentError):
    """A setting is missing or invalid; raised once, at start."""


def refuse_to_start(exc: SettingsError) -> NoReturn:
    """Stop the process with one clear line, not a traceback: a bad setting is an operator's typo."""
    print(f"reaper: bad setting: {exc}", file=sys.stderr)
    raise SystemExit(2) from None


class RetryableError(ReaperError):
    """Transient: the source should deliver the event again.

    ``recorded``: the step that raised it already logged it with its trace context and calls.
    """

    recorded: bool = False


class HandOffError(RetryableError):
    """A delayed follow-up could not be handed to the delay transport."""


class CredentialsError(RetryableError):
    """The token source could not produce a token for this request."""
