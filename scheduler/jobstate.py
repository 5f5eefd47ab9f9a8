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
    # Still running, asked to checkpoint before it is moved (drain, preemption, maintenance).
    CHECKPOINTING = "CHECKPOINTING"
    # An attempt failed and restarts remain: the gang is stopped, backoff runs, then it is
    # placed again (hot spares first) without the hardware that failed.
    RECOVERING = "RECOVERING"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    def to_proto(self) -> job_pb2.JobState.ValueType:
        return job_pb2.JobState.Value(f"JOB_STATE_{self.value}")

    @classmethod
    def from_proto(cls, value: job_pb2.JobState.ValueType) -> JobState:
        return cls(job_pb2.JobState.Name(value).removeprefix("JOB_STATE_"))


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

# -> PENDING is a requeue without spending a restart (drain, preemption, a lost node);
# -> RECOVERING is a failure with restarts left. Terminal states have no way out.
_S = JobState
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.PENDING: frozenset({_S.PLACED, _S.CANCELLED, _S.FAILED}),
    _S.PLACED: frozenset({_S.RUNNING, _S.PENDING, _S.FAILED, _S.CANCELLED, _S.RECOVERING}),
    _S.RUNNING: frozenset(
        {_S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.PENDING, _S.RECOVERING, _S.CHECKPOINTING}
    ),
    # Workers may finish, fail or be moved while the checkpoint is being written.
    _S.CHECKPOINTING: frozenset(
        {_S.RUNNING, _S.PENDING, _S.RECOVERING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}
    ),
    _S.RECOVERING: frozenset({_S.PLACED, _S.PENDING, _S.FAILED, _S.CANCELLED}),
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
