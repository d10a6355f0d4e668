"""The event catalog, reaper's one public face for events: type names, validation, codecs, the factory.

Each job has its module (``types``, ``schemas``, ``codecs``, ``factory``); callers use the names here.
"""

from __future__ import annotations

from function.catalog.codecs import (
    batch_from_data,
    batch_to_data,
    job_from_data,
    job_to_data,
    result_to_data,
    sweep_page_from_data,
    sweep_page_to_data,
)
from function.catalog.factory import event_id, make_event
from function.catalog.schemas import validate
from function.catalog.types import (
    INBOUND_TYPES,
    INSTANCE_BATCH_CHECK,
    INSTANCE_BATCH_DELETE,
    INSTANCE_DELETE_RETRY,
    INSTANCE_DELETION_FAILED,
    INSTANCE_DELETION_SKIPPED,
    INSTANCE_EXPIRED,
    INSTANCE_STATUS_CHECK,
    INSTANCE_SWEEP,
    INSTANCE_SWEEP_PAGE,
    INSTANCE_TERMINATED,
    INTERNAL_TYPES,
    RESULT_TYPES,
    SWEEP_TYPES,
    TYPE_ALIASES,
)
from function.utctime import parse_time, rfc3339

__all__ = [
    "INBOUND_TYPES",
    "INSTANCE_BATCH_CHECK",
    "INSTANCE_BATCH_DELETE",
    "INSTANCE_DELETE_RETRY",
    "INSTANCE_DELETION_FAILED",
    "INSTANCE_DELETION_SKIPPED",
    "INSTANCE_EXPIRED",
    "INSTANCE_STATUS_CHECK",
    "INSTANCE_SWEEP",
    "INSTANCE_SWEEP_PAGE",
    "INSTANCE_TERMINATED",
    "INTERNAL_TYPES",
    "RESULT_TYPES",
    "SWEEP_TYPES",
    "TYPE_ALIASES",
    "batch_from_data",
    "batch_to_data",
    "event_id",
    "job_from_data",
    "job_to_data",
    "make_event",
    "parse_time",
    "result_to_data",
    "rfc3339",
    "sweep_page_from_data",
    "sweep_page_to_data",
    "validate",
]
