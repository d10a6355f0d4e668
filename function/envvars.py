"""Reading typed values from the environment, each problem one clear ``SettingsError`` line."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from function.errors import SettingsError
from function.secret import Secret

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def secret(env: Mapping[str, str], name: str) -> Secret | None:
    """The variable as a Secret, or None when unset or empty."""
    value = env.get(name)
    return Secret(value) if value else None


def secret_or_file(env: Mapping[str, str], name: str) -> Secret | None:
    """``NAME`` from the environment, else the content of the file named by ``NAME_FILE``."""
    value = env.get(name)
    if value:
        return Secret(value)
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        # The path itself is no secret, but it is an operator's to see, not a caller's.
        raise SettingsError(f"{name}_FILE cannot be read") from None
    if not text:
        raise SettingsError(f"{name}_FILE is empty")
    return Secret(text)


def names(raw: str) -> tuple[str, ...]:
    """A comma-separated list, trimmed, lower-cased, without empty items or repeats."""
    return tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))


def projects(raw: str) -> frozenset[str] | None:
    """REAPER_ALLOWED_PROJECTS: '*' is every project (None); empty defers to CLOUDDC_PROJECT_ID."""
    items = [p.strip() for p in raw.split(",") if p.strip()]
    if items == ["*"]:
        return None
    if "*" in items:
        raise SettingsError("REAPER_ALLOWED_PROJECTS: '*' stands alone (every project) or not at all")
    return frozenset(items)


def valid_webhook_secret(value: str) -> bool:
    """True for a Standard Webhooks secret: 'whsec_' + base64 of 24 to 64 bytes."""
    if not value.startswith("whsec_"):
        return False
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except ValueError:
        return False
    return 24 <= len(key) <= 64


def mask_password(url: str) -> str:
    """The URL with any userinfo (``user:password@``) masked: a password may hide in either part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def require_url(name: str, value: str) -> None:
    """Raise unless ``value`` is an http(s) URL with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name}={value!r}: expected an http(s) URL")


def seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive, finite number of seconds, or the default when unset."""
    value = _positive(env, name, "number of seconds")
    return default if value is None else value


def rate_or_none(env: Mapping[str, str], name: str) -> float | None:
    """A positive, finite number per second, or None when unset."""
    return _positive(env, name, "number per second")


def _positive(env: Mapping[str, str], name: str, what: str) -> float | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a {what}") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{name}={raw!r}: expected a positive {what}")
    return value


def integer(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive whole number, or the default when unset."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: expected a positive whole number")
    return value


def boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    """true/false (also 1/0, yes/no, on/off), or the default when unset."""
    raw = env.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")
