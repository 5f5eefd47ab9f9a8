"""Pure decisions about a job's attempts: did it succeed, fail, and what comes next."""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass
from enum import StrEnum

from scheduler.model import AttemptRecord, WorkerPhase, WorkerRecord


class Verdict(StrEnum):
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class AttemptJudgement:
    verdict: Verdict
    reason: str = ""
    worker: WorkerRecord | None = None  # the worker whose end decided a failure


def describe_exit(worker: WorkerRecord) -> str:
    if worker.phase is WorkerPhase.FAILED_TO_START:
        return f"rank {worker.rank} on {worker.node_name} failed to start: {worker.message}"
    if worker.signal:
        try:
            name = signals.Signals(worker.signal).name
        except ValueError:
            name = f"signal {worker.signal}"
        return f"rank {worker.rank} on {worker.node_name} was killed by {name}"
    # The agent's own message repeats the code; only the control plane's notes (lost workers) add to it.
    detail = f" ({worker.message})" if worker.message.startswith("lost:") else ""
    return f"rank {worker.rank} on {worker.node_name} exited with code {worker.exit_code}{detail}"


def judge_attempt(attempt: AttemptRecord) -> AttemptJudgement:
    """The first worker to fail fails the gang: its peers cannot go on without it."""
    failed = [w for w in attempt.workers if not w.phase.holds_devices and not w.succeeded]
    if failed:
        first = min(failed, key=lambda w: (w.ended_at or 0.0, w.rank))
        return AttemptJudgement(Verdict.FAILED, describe_exit(first), first)
    if attempt.workers and all(w.succeeded for w in attempt.workers):
        return AttemptJudgement(Verdict.SUCCEEDED, "all workers exited 0")
    return AttemptJudgement(Verdict.IN_PROGRESS)
