"""A request's headers as one plain dict with lower-case names, read straight from the WSGI environ.

Every reader in reaper (envelopes, authentication, request credentials) looks names up lower-cased;
werkzeug's ``EnvironHeaders`` would title-case each name on every read, only for it to be lowered again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# WSGI carries these two without the HTTP_ prefix; a client's own HTTP_CONTENT_TYPE is not the header.
_UNPREFIXED: Final = (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length"))
_SHADOWED: Final = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})


def from_environ(environ: Mapping[str, object]) -> dict[str, str]:
    """The headers werkzeug's ``EnvironHeaders`` yields for ``environ``, names lower-cased."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_") and key not in _SHADOWED
    }
    for key, name in _UNPREFIXED:
        value = environ.get(key)
        if value:
            headers[name] = str(value)
    return headers
