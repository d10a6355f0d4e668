"""The emulator's model: instances, their deletion state machine, fault scripts, tokens and a call log.

Time is read from an injected clock so state changes are computed, not slept for.
"""

from __future__ import annotations

import collections
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from reaper.devtools.emulator.keys import KeyRing

DELETABLE: Final = frozenset({"running", "stopped", "pending", "failed", "error"})
KNOWN_OUTCOMES: Final = frozenset({"terminate", "fail", "stuck"})


@dataclass
class Config:
    """Emulator-wide behaviour; every field can be changed at run time through the admin API."""

    termination_seconds: float = 5.0
    retention_seconds: float = 30.0
    latency: float = 0.0
    token: str | None = None
    token_ttl: float = 24 * 3600.0
    metadata_key_ttl: float = 900.0
    iam_password: str | None = None
    delete_in_progress_status: int = 204
    missing_status: int = 404
    shutting_down_spelling: str = "shutting-down"
    failed_spelling: str = "failed"
    # Random faults on every CloudDC call, as shares of calls: {"429": 0.05, "500": 0.05, "timeout": 0.01}.
    fault_rates: dict[str, float] = field(default_factory=dict)
    fault_timeout_seconds: float = 3.0  # how long a "timeout" fault holds the answer back
    # Scripted faults for paged listings (ListInstances without ids, as sweeps list); {} is none.
    paged_list_faults: list[dict[str, Any]] = field(default_factory=list)
    # The API gateway's rate limit per project, calls in any one second (0: none); beyond it a 429
    # APIG.0308 with no Retry-After, as Huawei Cloud's gateway answers.
    rate_limit: float = 0.0

    def update(self, values: dict[str, Any]) -> None:
        """Apply a partial update, refusing unknown names."""
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, value)


@dataclass
class Instance:
    """One bare-metal instance as the emulator sees it."""

    id: str
    project_id: str
    name: str
    state: str = "running"
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[dict[str, str]] = field(default_factory=list)
    created_at: float = 0.0
    outcome: str = "terminate"
    termination_seconds: float | None = None
    delete_requested_at: float | None = None
    delete_calls: int = 0
    faults: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for one call: an error status, a reset, or extra latency."""

    status: int | None = None
    retry_after: str | None = None
    reset: bool = False
    delay: float = 0.0
    echo: bool = False  # the error message quotes the request's X-Auth-Token, as careless gateways do

    @classmethod
    def of(cls, step: dict[str, Any]) -> Fault:
        """A fault from one step of an admin script (``status``, ``retry_after``, ``reset``, ...)."""
        retry_after = step.get("retry_after")
        return cls(
            status=step.get("status"),
            retry_after=str(retry_after) if retry_after is not None else None,
            reset=bool(step.get("reset", False)),
            delay=float(step.get("delay", 0.0)),
            echo=bool(step.get("echo", False)),
        )


class Fleet:
    """All instances and the emulator's bookkeeping, guarded by one lock."""

    def __init__(self, config: Config | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or Config()
        self._clock = clock
        self._lock = threading.RLock()
        self._instances: dict[tuple[str, str], Instance] = {}
        self._tokens: dict[str, float] = {}
        self._recent_calls: dict[str, collections.deque[float]] = {}
        self._expired_static = False
        self.calls: list[dict[str, Any]] = []
        self.keys = KeyRing(clock)
        self._random = random.Random(20261128)  # repeatable fault draws

    # -- admin ---------------------------------------------------------------------------------
    def add(self, spec: dict[str, Any]) -> Instance:
        """Add (or replace) an instance from an admin spec."""
        outcome = spec.get("outcome", "terminate")
        if outcome not in KNOWN_OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(KNOWN_OUTCOMES)}")
        instance = Instance(
            id=str(spec["id"]),
            project_id=str(spec["project_id"]),
            name=str(spec.get("name", spec["id"])),
            state=str(spec.get("state", "running")),
            metadata={str(k): str(v) for k, v in dict(spec.get("metadata", {})).items()},
            tags=list(spec.get("tags", [])),
            created_at=self._clock(),
            outcome=outcome,
            termination_seconds=spec.get("termination_seconds"),
            faults={k: list(v) for k, v in dict(spec.get("faults", {})).items()},
        )
        with self._lock:
            self._instances[(instance.project_id, instance.id)] = instance
        return instance

    def reset(self) -> None:
        """Forget instances, tokens and calls."""
        with self._lock:
            self._instances.clear()
            self._tokens.clear()
            self.calls.clear()
            self._recent_calls.clear()
            self._expired_static = False

    def snapshot(self) -> list[dict[str, Any]]:
        """Every instance with its current state and counters."""
        with self._lock:
            return [
                {
                    **self.describe(i),
                    "delete_calls": i.delete_calls,
                    "outcome": i.outcome,
                    "finished_at": self._finished_at(i),
                }
                for i in self._live()
            ]

    # -- tokens --------------------------------------------------------------------------------
    def issue_token(self) -> tuple[str, float]:
        """Issue a new token (long, like IAM's) and its expiry time."""
        token = "MII" + secrets.token_urlsafe(1536)
        expires = self._clock() + self.config.token_ttl
        with self._lock:
            self._tokens[token] = expires
        return token, expires

    def expire_tokens(self) -> None:
        """Make every token, issued or static, answer 401 from now on."""
        with self._lock:
            now = self._clock()
            self._tokens = {t: min(e, now - 1) for t, e in self._tokens.items()}
            self._expired_static = True

    def token_expired(self, token: str | None) -> bool:
        """True for a token this emulator issued whose lifetime is over (IAM answers "must be updated")."""
        with self._lock:
            return token is not None and token in self._tokens and self._tokens[token] <= self._clock()

    def token_valid(self, token: str | None) -> bool:
        """True if ``token`` may call the API now."""
        if not token:
            return False
        with self._lock:
            if token in self._tokens:
                return self._tokens[token] > self._clock()
            if self.config.token is None:
                return not self._expired_static
            return secrets.compare_digest(token, self.config.token) and not self._expired_static

    # -- faults and the call log ---------------------------------------------------------------
    def next_fault(self, project_id: str, instance_id: str, call: str) -> Fault | None:
        """Pop the next scripted fault for this instance's ``call`` (``delete``/``status``/``list``)."""
        with self._lock:
            instance = self._instances.get((project_id, instance_id))
            script = instance.faults.get(call) if instance else None
            if not script:
                return None
            step = script.pop(0)
        return Fault.of(step)

    def next_paged_list_fault(self) -> Fault | None:
        """Pop the next scripted fault for a paged listing (None when the script is empty or says none)."""
        with self._lock:
            step = self.config.paged_list_faults.pop(0) if self.config.paged_list_faults else {}
        return Fault.of(step) if step else None

    def over_rate_limit(self, project_id: str) -> bool:
        """Count one call against the project's limit: True when it is one too many for this second."""
        limit = self.config.rate_limit
        if not limit:
            return False
        now = self._clock()
        with self._lock:
            recent = self._recent_calls.setdefault(project_id, collections.deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= limit:
                return True
            recent.append(now)
            return False

    def random_fault(self) -> Fault | None:
        """A fault drawn from ``config.fault_rates`` for one call (None for most calls)."""
        rates = self.config.fault_rates
        if not rates:
            return None
        with self._lock:
            draw = self._random.random()
        for kind, share in sorted(rates.items()):
            if draw < share:
                if kind == "timeout":
                    return Fault(delay=self.config.fault_timeout_seconds)
                return Fault(status=int(kind), retry_after="1" if kind == "429" else None)
            draw -= share
        return None

    def record(self, entry: dict[str, Any]) -> None:
        """Append one API call to the log."""
        with self._lock:
            entry["seq"] = len(self.calls) + 1
            entry["time"] = self._clock()
            self.calls.append(entry)

    # -- the API -------------------------------------------------------------------------------
    def delete(self, project_id: str, instance_id: str) -> tuple[int, dict[str, Any] | None]:
        """DeleteInstance: start the asynchronous delete; answers (status, error body)."""
        with self._lock:
            instance = self._get(project_id, instance_id)
            if instance is None:
                return 404, _error("CDC.0404", f"instance {instance_id} does not exist")
            instance.delete_calls += 1
            state = self._state(instance)
            if state in DELETABLE:
                instance.state = "shutting-down"
                instance.delete_requested_at = self._clock()
                return 204, None
            if state == "shutting-down":
                status = self.config.delete_in_progress_status
                if status == 204:
                    return 204, None
                return status, _error("CDC.0400", "instance is already being deleted")
            if state == "terminated":
                return 400, _error("CDC.0400", "instance is already terminated")
            return 400, _error("CDC.0400", f"instance in state {state} cannot be deleted")

    def status(self, project_id: str, instance_id: str) -> tuple[int, dict[str, Any]]:
        """ShowInstanceStatus: answers (status, body)."""
        with self._lock:
            instance = self._get(project_id, instance_id)
            if instance is None:
                return self.config.missing_status, _error("CDC.0404", "instance not found")
            state = self._state(instance)
            body: dict[str, Any] = {"state": self._spelled(state)}
            if state == "failed" and instance.delete_requested_at is not None:
                # ShowInstanceStatusResponse: why the delete failed, as newer API versions say it.
                body["operation_state"] = "uninstall-failed"
                body["error"] = {
                    "error_code": "CDC.5001",
                    "error_msg": "the server did not power off",
                    "error_type": "DeleteFailed",
                }
            return 200, body

    def list_instances(
        self,
        project_id: str,
        ids: list[str] | None,
        states: set[str] | None,
        marker: str | None,
        limit: int,
    ) -> dict[str, Any]:
        """ListInstances, ordered by id and paged by ``marker``."""
        with self._lock:
            # With ids, look them up (the read before every delete must not scan a 10,000-instance fleet).
            found = (self._get(project_id, i) for i in dict.fromkeys(ids or ()))
            pool = self._live() if ids is None else [i for i in found if i is not None]
            matching = sorted(
                (
                    i
                    for i in pool
                    if i.project_id == project_id and (states is None or self._state(i) in states)
                ),
                key=lambda i: i.id,
            )
            after = [i for i in matching if marker is None or i.id > marker]
            page = after[:limit]
            next_marker = page[-1].id if len(after) > limit else None
            return {
                "instances": [self.describe(i) for i in page],
                "page_info": {"next_marker": next_marker, "current_count": len(page)},
                "count": len(matching),
            }

    def describe(self, instance: Instance) -> dict[str, Any]:
        """An instance as ListInstances shows it."""
        return {
            "id": instance.id,
            "name": instance.name,
            "state": self._spelled(self._state(instance)),
            "metadata": dict(instance.metadata),
            "tags": list(instance.tags),
            "server_id": f"srv-{instance.id}",
            "project_id": instance.project_id,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instance.created_at)),
        }

    # -- the state machine ---------------------------------------------------------------------
    def _get(self, project_id: str, instance_id: str) -> Instance | None:
        instance = self._instances.get((project_id, instance_id))
        if instance is None or self._vanished(instance):
            return None
        return instance

    def _live(self) -> list[Instance]:
        return [i for i in self._instances.values() if not self._vanished(i)]

    def _finished_at(self, instance: Instance) -> float | None:
        if instance.state != "shutting-down" or instance.delete_requested_at is None:
            return None
        if instance.outcome == "stuck":
            return None
        seconds = instance.termination_seconds
        if seconds is None:
            seconds = self.config.termination_seconds
        return instance.delete_requested_at + seconds

    def _state(self, instance: Instance) -> str:
        finished = self._finished_at(instance)
        if finished is None or self._clock() < finished:
            return instance.state
        return "failed" if instance.outcome == "fail" else "terminated"

    def _vanished(self, instance: Instance) -> bool:
        finished = self._finished_at(instance)
        return (
            finished is not None
            and instance.outcome == "terminate"
            and self._clock() >= finished + self.config.retention_seconds
        )

    def _spelled(self, state: str) -> str:
        if state == "shutting-down":
            return self.config.shutting_down_spelling
        if state == "failed":
            return self.config.failed_spelling
        return state


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error_code": code, "error_msg": message}
