"""What handling one event led to; the entry points turn it into an HTTP answer."""

from __future__ import annotations

from typing import Any, NamedTuple


class Outcome(NamedTuple):
    """The result of one handler invocation (not the instance's final result); immutable, built in C."""

    outcome: str
    project_id: str
    instance_id: str | None = None
    delay: float | None = None
    reason: str | None = None
    instances: int | None = None
    batches: int | None = None
    calls: tuple[str, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        """The response body."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._asdict().items() if v is not None}
