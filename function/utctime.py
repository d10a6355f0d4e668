"""The text of a UTC second, formatted once: each event writes a few (its log line, its follow-up's times)."""

from __future__ import annotations

import functools
import time


@functools.lru_cache(maxsize=64)
def second_text(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of one UTC second (a handful are in use at any time: now, and deadlines)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
