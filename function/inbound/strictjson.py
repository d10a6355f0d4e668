"""Strict JSON for everything a caller sends: one meaning per document, or a 400 that says why.

The rules are ``jsontext.loads``'s (one strict reader for inbound and upstream documents alike); here a
document that breaks them is the caller's fault, a ``BadEventError``.
"""

from __future__ import annotations

from typing import Any

from function import jsontext
from function.errors import BadEventError
from function.jsontext import MAX_DEPTH

__all__ = ["MAX_DEPTH", "loads"]


def loads(raw: bytes | str, what: str = "body") -> Any:
    """Parse ``raw`` strictly; ``BadEventError`` (400) naming ``what`` when it is not one clear JSON value."""
    try:
        return jsontext.loads(raw, what)
    except jsontext.UnreadableError as exc:
        raise BadEventError(str(exc)) from None
