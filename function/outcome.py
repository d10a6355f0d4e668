"""What handling one event led to; the entry points turn it into an HTTP answer."""

from __future__ import annotations

from typing import Any, NamedTuple

from function.core.records import ApiAnswer


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


def status_codes(calls: tuple[str, ...] | None) -> list[int]:
    """The HTTP statuses in described calls ("DELETE 204", "STATUS 200 terminated")."""
    return [int(part) for call in calls or () for part in call.split()[1:2] if part.isdigit()]


def describe(call: str, answer: ApiAnswer, state: str | None = None) -> str:
    """One call as the log and the response show it: method, status or failure, state."""
    parts = [call, str(answer.status or answer.failure)]
    shown = state if answer.status == 200 and state else answer.state
    if shown:
        parts.append(shown)
    return " ".join(parts)
