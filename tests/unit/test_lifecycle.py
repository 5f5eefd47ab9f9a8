from __future__ import annotations

import signal

from scheduler.jobstate import JobState
from scheduler.lifecycle import Verdict, after_failed_attempt, judge_attempt
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
    j = judge_attempt(attempt(worker(0, WorkerPhase.EXITED, None, signal.SIGKILL, t=1.0)))
    assert "killed by SIGKILL" in j.reason


def test_restart_budget() -> None:
    step = after_failed_attempt("rank 0 exited with code 1", restarts=0, max_restarts=2)
    assert step.state is JobState.PENDING and step.counts_as_restart and "(1/2)" in step.reason
    step = after_failed_attempt("rank 0 exited with code 1", restarts=2, max_restarts=2)
    assert step.state is JobState.FAILED and "max_restarts 2 used" in step.reason
    assert after_failed_attempt("x", 0, 0).state is JobState.FAILED


def test_device_health_only_worsens_until_recovered() -> None:
    from corral.v1 import common_pb2

    from scheduler.health import device_health_after

    warn = common_pb2.HealthEvent(severity=common_pb2.SEVERITY_WARNING, kind=common_pb2.HEALTH_EVENT_KIND_XID)
    crit = common_pb2.HealthEvent(
        severity=common_pb2.SEVERITY_CRITICAL, kind=common_pb2.HEALTH_EVENT_KIND_XID
    )
    info = common_pb2.HealthEvent(
        severity=common_pb2.SEVERITY_INFO, kind=common_pb2.HEALTH_EVENT_KIND_ECC_SBE
    )
    recovered = common_pb2.HealthEvent(kind=common_pb2.HEALTH_EVENT_KIND_RECOVERED)
    assert device_health_after("HEALTHY", warn) == "SUSPECT"
    assert device_health_after("HEALTHY", crit) == "UNHEALTHY"
    assert device_health_after("UNHEALTHY", warn) is None
    assert device_health_after("SUSPECT", info) is None
    assert device_health_after("UNHEALTHY", recovered) == "HEALTHY"
    assert device_health_after("HEALTHY", recovered) is None
