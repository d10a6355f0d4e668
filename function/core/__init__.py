"""The pure decisions: given a step and what CloudDC answered, what happens next — and nothing else.

No I/O, no clock reads, no environment: ``now``, the policy and ``rand`` are passed in. The import rule of
this folder is the standard library and itself only (``tests/integration/test_layers.py`` fails on any other
import). The shell (``function.reaping``, ``function.sweeping``) carries out what is decided.

- ``records``: the policy, the job that rides in follow-ups, an API answer, a result, the decisions;
- ``machine``: the state machine of one instance (read → gate → DELETE → status checks → result);
- ``schedule``: the learned check schedule and the cadence of shared reads;
- ``retry``: back-off, ``Retry-After``, and when to give up;
- ``gate``: the trust model's one decision, asked before every DELETE;
- ``sweep``: picking expired instances of a listing and following their batches;
- ``ids``: what a safe id is, and how many one call may name.

The names callers use are re-exported here: ``from function import core`` then ``core.Job``, ``core.start``.
"""

from __future__ import annotations

from function.core.gate import DELETABLE_STATES, FAILED_STATES, SHUTTING_DOWN, TERMINATED, normalise_state
from function.core.machine import (
    delete_settled,
    on_delete_answer,
    on_delete_claimed_elsewhere,
    on_read_answer,
    on_status_answer,
    resume,
    start,
)
from function.core.records import (
    CHECK_DELAY,
    CHECK_MAX_DELAY,
    DEADLINE,
    EVERY_PROJECT,
    Action,
    ApiAnswer,
    CallDelete,
    CallRead,
    CallStatus,
    CheckSchedule,
    Decision,
    Finish,
    Job,
    Policy,
    Rand,
    ReloadToken,
    Result,
    ResultKind,
    Schedule,
    evolved,
    failure,
)
from function.core.retry import Retryable, check_delay, clamp, plan_retry, retry_delay
from function.core.schedule import (
    EVIDENCE,
    LEARN_RATE,
    MAX_RISE,
    SCOUT_AT,
    SCOUT_SHARE,
    DeleteTiming,
    Estimate,
    Peers,
    cadence,
    keep_cadence,
    learn,
    next_check,
    reading_max_age,
    reads_pay,
    timing,
)

__all__ = [
    "CHECK_DELAY",
    "CHECK_MAX_DELAY",
    "DEADLINE",
    "DELETABLE_STATES",
    "EVERY_PROJECT",
    "EVIDENCE",
    "FAILED_STATES",
    "LEARN_RATE",
    "MAX_RISE",
    "SCOUT_AT",
    "SCOUT_SHARE",
    "SHUTTING_DOWN",
    "TERMINATED",
    "Action",
    "ApiAnswer",
    "CallDelete",
    "CallRead",
    "CallStatus",
    "CheckSchedule",
    "Decision",
    "DeleteTiming",
    "Estimate",
    "Finish",
    "Job",
    "Peers",
    "Policy",
    "Rand",
    "ReloadToken",
    "Result",
    "ResultKind",
    "Retryable",
    "Schedule",
    "cadence",
    "check_delay",
    "clamp",
    "delete_settled",
    "evolved",
    "failure",
    "keep_cadence",
    "learn",
    "next_check",
    "normalise_state",
    "on_delete_answer",
    "on_delete_claimed_elsewhere",
    "on_read_answer",
    "on_status_answer",
    "plan_retry",
    "reading_max_age",
    "reads_pay",
    "resume",
    "retry_delay",
    "start",
    "timing",
]
