"""Shipped placeholder secrets ("change-me"), recognised so that reaper refuses to start with one.

The deploy files carry placeholders where an operator must put a secret of their own. Such a value is a
secret anyone can read in this repository: a webhook secret built from one lets anyone forge triggers, an
event key lets anyone forge follow-ups. Each is refused at start, naming the setting to fill.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

_PLACEHOLDER: Final = re.compile(r"(change|replace|fill)[-_ ]?me|your[-_ ]secret", re.IGNORECASE)


def is_placeholder(value: str) -> bool:
    """True when ``value`` (or, for a Standard Webhooks ``whsec_`` secret, the bytes it encodes) says so."""
    if _PLACEHOLDER.search(value):
        return True
    if value.startswith("whsec_"):
        try:
            decoded = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            return False
        return bool(_PLACEHOLDER.search(decoded.decode("latin-1")))
    return False
