"""Jobs, batches, sweep continuations and results as the data of the events that carry them, and back."""

from __future__ import annotations

from typing import Any

from function.core import Job, Result
from function.core.sweep import BatchJob, SweepPage
from function.utctime import parse_time, rfc3339


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
        "claimant": job.claimant,
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
        claimant=data.get("claimant"),
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
        "claimant": job.claimant,
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
        claimant=data.get("claimant"),
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
