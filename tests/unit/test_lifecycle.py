from __future__ import annotations

import signal

from scheduler.lifecycle import Verdict, judge_attempt
from scheduler.model import AttemptRecord, WorkerPhase, WorkerRecord


def worker(
    rank: int, phase: WorkerPhase, code: int | None = None, sig: int | None = None, t: float = 0.0
) -> WorkerRecord:
    return WorkerRecord(
        f"j.1.{rank}",
        "j",
        1,
        rank,
        "n0",
        [rank],
        phase=phase,
        exit_code=code,
        signal=sig,
        ended_at=t if phase is not WorkerPhase.RUNNING else None,
    )


def attempt(*workers: WorkerRecord) -> AttemptRecord:
    return AttemptRecord("j", 1, 0.0, workers=list(workers))


def test_in_progress_until_everyone_exits_zero() -> None:
    assert judge_attempt(
        attempt(worker(0, WorkerPhase.EXITED, 0), worker(1, WorkerPhase.RUNNING))
    ).verdict is (Verdict.IN_PROGRESS)
    assert judge_attempt(
        attempt(worker(0, WorkerPhase.EXITED, 0), worker(1, WorkerPhase.EXITED, 0))
    ).verdict is (Verdict.SUCCEEDED)


def test_first_failure_fails_the_gang_and_is_described() -> None:
    j = judge_attempt(
        attempt(
            worker(0, WorkerPhase.EXITED, None, signal.SIGKILL, t=5.0),
            worker(1, WorkerPhase.EXITED, 3, t=2.0),
            worker(2, WorkerPhase.RUNNING),
        )
    )
    assert j.verdict is Verdict.FAILED
    assert j.reason == "rank 1 on n0 exited with code 3"
    assert j.worker is not None and j.worker.rank == 1  # the evidence blame starts from
    j = judge_attempt(attempt(worker(0, WorkerPhase.EXITED, None, signal.SIGKILL, t=1.0)))
    assert "killed by SIGKILL" in j.reason
