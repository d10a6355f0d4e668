"""JSON text for what reaper writes on every event (log lines, request bodies, answers), through orjson.

The standard library's encoder costs ~14,000 instructions a call plus ~2,300 a value; reaper writes four
documents an event, about 8 % of its own CPU (docs/performance-notes.md); orjson writes the same in a
sixth. Where orjson cannot (an integer beyond 64 bits) the standard library writes the document, so the
two differ only in form: non-ASCII text is written as UTF-8, not ``\\u`` escapes, and NaN as ``null``.
A signature's canonical form (``function.signing``) stays on the standard library: it must never change.

``loads`` is the one strict reader, for what callers send and what upstreams answer alike: one meaning per
document or ``UnreadableError``. Refused: bytes that are not UTF-8, duplicate keys (which value wins
differs between parsers, so a checker could be shown one ``instance_id`` or ``reaper-protected`` and the
deleter another), ``NaN``/``Infinity``, and nesting deeper than ``MAX_DEPTH``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import orjson

MAX_DEPTH: Final = 32

# A dataclass, a datetime or a subclass of str, int, dict or list goes through ``default`` as the standard
# library sent it (a dataclass's repr, never its fields: a field its repr leaves out may hold a credential).
_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_NON_STR_KEYS
)


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, sort_keys: bool = False) -> bytes:
    """``value`` as compact JSON (UTF-8); ``TypeError``/``ValueError`` where the standard library raises."""
    try:
        return orjson.dumps(
            value, default=default, option=_OPTIONS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
        )
    except orjson.JSONEncodeError:
        # Beyond what orjson writes (an integer over 64 bits, a cycle, ...): as the standard library would.
        text = json.dumps(
            value, default=default, sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":")
        )
        return text.encode()


class UnreadableError(ValueError):
    """The bytes are not one clear JSON value; the message says why (never echoing the document)."""


def loads(raw: bytes | str, what: str = "body") -> Any:
    """Parse ``raw`` strictly; ``UnreadableError`` naming ``what`` when it is not one clear JSON value."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise UnreadableError(f"{what} is not valid UTF-8") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise UnreadableError(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    except _DuplicateKeyError as exc:
        raise UnreadableError(f"{what} has the key {exc.key[:40]!r} twice") from None
    except ValueError:
        raise UnreadableError(f"{what} is not valid JSON") from None
    # Each level opens with a bracket: a document with few brackets (most, counted in C) cannot be deep.
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise UnreadableError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    return value


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)  # built in C; only a document with a key twice is looked at again
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
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
