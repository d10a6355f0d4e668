"""Strict JSON for everything a caller sends: one meaning per document, or a 400 that says why.

Refused: bytes that are not UTF-8, duplicate keys (which value wins differs between parsers, so an
attacker could show a checker one ``instance_id`` and the deleter another), ``NaN``/``Infinity``,
and nesting deeper than ``MAX_DEPTH`` (no event reaper reads needs more than a handful of levels).
"""

from __future__ import annotations

import json
from typing import Any, Final

from function.errors import BadEventError

MAX_DEPTH: Final = 32


def loads(raw: bytes | str, what: str = "body") -> Any:
    """Parse ``raw`` strictly; ``BadEventError`` (400) naming ``what`` when it is not one clear JSON value."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise BadEventError(f"{what} is not valid UTF-8") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise BadEventError(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    except _DuplicateKeyError as exc:
        raise BadEventError(f"{what} has the key {exc.key[:40]!r} twice") from None
    except ValueError:
        raise BadEventError(f"{what} is not valid JSON") from None
    if _depth(value) > MAX_DEPTH:
        raise BadEventError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    return value


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKeyError(key)
        document[key] = value
    return document


def _no_constant(name: str) -> float:
    raise ValueError(name)


# Built once: json.loads with hooks builds a decoder per call, and every event is parsed strictly.
_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique, parse_constant=_no_constant)


def _depth(value: Any) -> int:
    """Nesting depth of a parsed value, iteratively (a deep value must not exhaust the stack here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest
