"""The event types reaper reads and writes, and how they group (inbound, internal, results)."""

from __future__ import annotations

from typing import Final

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
