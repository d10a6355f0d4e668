"""JSON text for what reaper writes on every event (log lines, request bodies, answers), through orjson.

The standard library's encoder costs ~14,000 instructions a call plus ~2,300 a value; reaper writes four
documents an event, about 8 % of its own CPU (docs/performance-notes.md); orjson writes the same in a
sixth. Where orjson cannot (an integer beyond 64 bits) the standard library writes the document, so the
two differ only in form: non-ASCII text is written as UTF-8, not ``\\u`` escapes, and NaN as ``null``.
A signature's canonical form (``function.signing``) stays on the standard library: it must never change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import orjson

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
