"""The media types reaper reads and writes: JSON event data and structured-mode CloudEvents."""

from __future__ import annotations

from typing import Final

JSON: Final = "application/json"
STRUCTURED: Final = "application/cloudevents+json"
