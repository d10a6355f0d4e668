"""The event catalog: type names, JSON Schema validation, and (de)serialising jobs and results.

Schemas live in ``events/schemas`` (shipped inside the wheel as ``function/schemas``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import fastjsonschema
from cloudevents.http import CloudEvent

from function.core import Job, Result
from function.core.sweep import BatchJob, SweepPage
from function.errors import BadEventError
from function.utctime import second_text

INSTANCE_EXPIRED: Final = "instance-expired"
INSTANCE_STATUS_CHECK: Final = "instance-status-check"
INSTANCE_DELETE_RETRY: Final = "instance-delete-retry"
INSTANCE_TERMINATED: Final = "instance-terminated"
INSTANCE_DELETION_FAILED: Final = "instance-deletion-failed"
INSTANCE_DELETION_SKIPPED: Final = "instance-deletion-skipped"
INSTANCE_SWEEP: Final = "instance-sweep"
INSTANCE_BATCH_DELETE: Final = "instance-batch-delete"
INSTANCE_BATCH_CHECK: Final = "instance-batch-check"
INSTANCE_SWEEP_PAGE: Final = "instance-sweep-page"
SWEEP_TYPES: Final = (INSTANCE_SWEEP, INSTANCE_SWEEP_PAGE, INSTANCE_BATCH_DELETE, INSTANCE_BATCH_CHECK)
INBOUND_TYPES: Final = (INSTANCE_EXPIRED, INSTANCE_STATUS_CHECK, INSTANCE_DELETE_RETRY, *SWEEP_TYPES)
# Reaper's own follow-ups: accepted only with reaper's signature (function.signing).
INTERNAL_TYPES: Final = frozenset(
    {
        INSTANCE_STATUS_CHECK,
        INSTANCE_DELETE_RETRY,
        INSTANCE_SWEEP_PAGE,
        INSTANCE_BATCH_DELETE,
        INSTANCE_BATCH_CHECK,
    }
)
# Schedulers that cannot set a type of their own map onto ours (Knative PingSource sends this).
TYPE_ALIASES: Final = {"dev.knative.sources.ping": INSTANCE_SWEEP}
RESULT_TYPES: Final = {
    "terminated": INSTANCE_TERMINATED,
    "failed": INSTANCE_DELETION_FAILED,
    "skipped": INSTANCE_DELETION_SKIPPED,
}
_ID_PREFIX: Final = "reaper-"


def _schema_dir() -> Path:
    packaged = Path(__file__).with_name("schemas")
    return packaged if packaged.is_dir() else Path(__file__).parents[1] / "events" / "schemas"


@functools.cache
def _validator(event_type: str) -> Callable[[object], object]:
    # fastjsonschema compiles each schema to Python once: ~8 ms to import where jsonschema takes
    # ~60 ms, and validation per event in microseconds (docs/benchmarks.md, cold start).
    schema = json.loads((_schema_dir() / f"{event_type}.json").read_text(encoding="utf-8"))
    return fastjsonschema.compile(schema)


def validate(event_type: str, data: object) -> None:
    """Raise ``BadEventError`` (422) unless ``data`` matches the schema of ``event_type``."""
    try:
        _validator(event_type)(data)
    except fastjsonschema.JsonSchemaValueException as error:
        raise BadEventError(f"{event_type}: {error.message}", status=422) from None


def event_id(*parts: str) -> str:
    """A deterministic event id, so brokers and sinks can de-duplicate redeliveries."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]
    return _ID_PREFIX + digest


def rfc3339(epoch: float) -> str:
    """Format epoch seconds as an RFC 3339 UTC timestamp with milliseconds.

    As ``datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")`` writes it (microseconds
    rounded half to even, then cut to milliseconds), for a third of the cost: a follow-up carries four.
    """
    fraction, whole = math.modf(epoch)
    second, micros = int(whole), round(fraction * 1_000_000)
    if micros < 0:  # before 1970: modf keeps the sign
        second, micros = second - 1, micros + 1_000_000
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    return f"{second_text(second)}.{micros // 1000:03d}Z"


def parse_time(text: str) -> float:
    """Parse an RFC 3339 timestamp into epoch seconds; ``BadEventError`` (422) when it is no real instant."""
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
        if when.tzinfo is None:
            raise ValueError("no time zone")
        return when.timestamp()
    except (ValueError, OverflowError):
        raise BadEventError(f"{text[:40]!r} is not an RFC 3339 date-time with a zone", status=422) from None


def _time_or_none(epoch: float | None) -> str | None:
    return rfc3339(epoch) if epoch is not None else None


def _parse_or_none(text: str | None) -> float | None:
    return parse_time(text) if text else None


def job_to_data(job: Job) -> dict[str, Any]:
    """Serialise a job as the data of a follow-up event."""
    return {
        "instance_id": job.instance_id,
        "project_id": job.project_id,
        "origin_event_id": job.origin_id,
        "started_at": rfc3339(job.started_at),
        "deadline_at": rfc3339(job.deadline_at),
        "deleted_at": _time_or_none(job.deleted_at),
        "checks": job.checks,
        "delete_attempts": job.delete_attempts,
        "failures": job.failures,
        "redeletes": job.redeletes,
        "expired_at": _time_or_none(job.expired_at),
        "throttles": job.throttles,
        "expected_delete_seconds": job.expected,
        "earliest_delete_seconds": job.earliest,
        "seen_running_at": _time_or_none(job.seen_at),
    }


def job_from_data(data: dict[str, Any]) -> Job:
    """Rebuild a job from a follow-up's (already validated) data."""
    return Job(
        instance_id=data["instance_id"],
        project_id=data["project_id"],
        origin_id=data["origin_event_id"],
        started_at=parse_time(data["started_at"]),
        deadline_at=parse_time(data["deadline_at"]),
        deleted_at=_parse_or_none(data.get("deleted_at")),
        checks=data["checks"],
        delete_attempts=data["delete_attempts"],
        failures=data["failures"],
        redeletes=data["redeletes"],
        expired_at=_parse_or_none(data.get("expired_at")),
        throttles=data.get("throttles", 0),
        expected=_seconds_or_none(data.get("expected_delete_seconds")),
        earliest=_seconds_or_none(data.get("earliest_delete_seconds")),
        seen_at=_parse_or_none(data.get("seen_running_at")),
    )


def _seconds_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def batch_to_data(job: BatchJob) -> dict[str, Any]:
    """Serialise a batch job as the data of a batch follow-up."""
    return {
        "project_id": job.project_id,
        "instance_ids": list(job.instance_ids),
        "origin_event_id": job.origin_id,
        "started_at": rfc3339(job.started_at),
        "deadline_at": rfc3339(job.deadline_at),
        "deleted_at": _time_or_none(job.deleted_at),
        "checks": job.checks,
        "failures": job.failures,
        "redeletes": job.redeletes,
        "throttles": job.throttles,
    }


def batch_from_data(data: dict[str, Any]) -> BatchJob:
    """Rebuild a batch job from a batch follow-up's (already validated) data."""
    return BatchJob(
        project_id=data["project_id"],
        instance_ids=tuple(data["instance_ids"]),
        origin_id=data["origin_event_id"],
        started_at=parse_time(data["started_at"]),
        deadline_at=parse_time(data["deadline_at"]),
        deleted_at=_parse_or_none(data.get("deleted_at")),
        checks=data["checks"],
        failures=data["failures"],
        redeletes=data["redeletes"],
        throttles=data.get("throttles", 0),
    )


def sweep_page_to_data(page: SweepPage) -> dict[str, Any]:
    """Serialise where a sweep goes on listing as the data of an ``instance-sweep-page`` follow-up."""
    return {
        "project_id": page.project_id,
        "marker": page.marker,
        "origin_event_id": page.origin_id,
        "started_at": rfc3339(page.started_at),
        "deadline_at": rfc3339(page.deadline_at),
        "failures": page.failures,
        "throttles": page.throttles,
    }


def sweep_page_from_data(data: dict[str, Any]) -> SweepPage:
    """Rebuild a sweep continuation from an ``instance-sweep-page``'s (already validated) data."""
    return SweepPage(
        project_id=data["project_id"],
        marker=data.get("marker"),
        origin_id=data["origin_event_id"],
        started_at=parse_time(data["started_at"]),
        deadline_at=parse_time(data["deadline_at"]),
        failures=data["failures"],
        throttles=data["throttles"],
    )


def result_to_data(job: Job, result: Result) -> dict[str, Any]:
    """Serialise the outcome of a job as the data of its result event."""
    data: dict[str, Any] = {
        "instance_id": job.instance_id,
        "project_id": job.project_id,
        "origin_event_id": job.origin_id,
        "decided_at": rfc3339(result.at),
    }
    if result.kind == "terminated":
        data["deleted_at"] = _time_or_none(job.deleted_at)
        data["terminated_at"] = rfc3339(result.at)
        data["checks"] = job.checks
        data["already_absent"] = result.already_absent
    elif result.kind == "failed":
        data.update(
            reason=result.reason,
            checks=job.checks,
            deleted_at=_time_or_none(job.deleted_at),
            state=result.state,
            http_status=result.http_status,
            error_code=result.error_code,
            error_msg=result.error_msg,
            operation_state=result.operation_state,
        )
    else:
        data["reason"] = result.reason
        data["state"] = result.state
    return data


def make_event(
    event_type: str, data: dict[str, Any], *, key: str, source: str, subject: str, now: float
) -> CloudEvent:
    """Build an outgoing CloudEvent whose id is derived from ``key``."""
    attributes = {
        "type": event_type,
        "source": source,
        "id": event_id(event_type, key),
        "subject": subject,
        "time": rfc3339(now),
        "datacontenttype": "application/json",
    }
    return CloudEvent(attributes, data)
