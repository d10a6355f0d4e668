"""Where the delay service may deliver (its allowed targets) and where it may listen (loopback only)."""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

ANY_PORT: Final = ":*"


def target_allowed(target: str, allowed: tuple[str, ...]) -> bool:
    """True when ``target`` has the scheme, host and port of an allowed URL and lies under its path.

    An allowed URL may say ``:*`` for its port (any port on that host: the test suite's many functions).
    """
    try:
        wanted = urlsplit(target)
        port = wanted.port or (443 if wanted.scheme == "https" else 80)
    except ValueError:
        return False
    if not wanted.hostname:
        return False
    for pattern in allowed:
        any_port = ANY_PORT in pattern
        rule = urlsplit(pattern.replace(ANY_PORT, "", 1))
        rule_port = rule.port or (443 if rule.scheme == "https" else 80)
        if (
            rule.scheme == wanted.scheme
            and rule.hostname == wanted.hostname
            and (any_port or rule_port == port)
            and (wanted.path or "/").startswith(rule.path or "/")
        ):
            return True
    return False


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
