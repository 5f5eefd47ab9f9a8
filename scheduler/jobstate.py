"""The job state machine: the one place that says which transitions are allowed.

Every state change in the control plane goes through `check_transition`, so a bug that
tries to revive a finished job or skip placement fails loudly instead of corrupting state.
"""

from __future__ import annotations

from enum import StrEnum

from corral.v1 import job_pb2


class JobState(StrEnum):
    PENDING = "PENDING"
    PLACED = "PLACED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    def to_proto(self) -> job_pb2.JobState.ValueType:
        return job_pb2.JobState.Value(f"JOB_STATE_{self.value}")

    @classmethod
    def from_proto(cls, value: job_pb2.JobState.ValueType) -> JobState:
        return cls(job_pb2.JobState.Name(value).removeprefix("JOB_STATE_"))


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

# PLACED/RUNNING -> PENDING is a requeue: a worker failed with restarts left, or the
# node was drained. Terminal states have no way out.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.PLACED, JobState.CANCELLED, JobState.FAILED}),
    JobState.PLACED: frozenset({JobState.RUNNING, JobState.PENDING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PENDING}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, job_id: str, current: JobState, requested: JobState) -> None:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current])) or "none (terminal)"
        super().__init__(f"job {job_id}: {current} -> {requested} is not allowed (from {current}: {allowed})")
        self.current = current
        self.requested = requested


def check_transition(job_id: str, current: JobState, requested: JobState) -> None:
    if requested not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(job_id, current, requested)
