"""The id rules CloudDC's paths and lists share: what a safe id looks like, how many one call may name."""

from __future__ import annotations

import re
from typing import Final

# Letters, digits, '_' and '-', at most 64: nothing that could leave its place in a path or a query.
ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_IDS_PER_READ: Final = 100  # ListInstances `instance_id=`, and the page a listing asks for
MAX_IDS_PER_BATCH: Final = 50  # DeleteInstances `instance_id_set`


def valid_id(value: object) -> bool:
    """True when ``value`` is a string CloudDC could name an instance or a project by."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
