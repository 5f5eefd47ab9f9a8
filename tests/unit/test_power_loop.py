"""The live power loop's learning: a job's rate under caps refines its power→throughput curve."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from scheduler.jobstate import JobState
from scheduler.model import AttemptRecord, JobRecord, WorkerPhase, WorkerRecord
from scheduler.power.curves import reference_curve
from scheduler.power.domains import PowerDomains, Rack, Zone
from scheduler.server.power_loop import RATE_WINDOW_S, PowerLoop
from scheduler.server.power_runtime import PowerRuntime


def test_a_job_that_barely_slows_under_a_cap_is_learned_as_insensitive() -> None:
    worker = WorkerRecord("j.1.0", "j", 1, 0, "n0", [0], phase=WorkerPhase.RUNNING)
    job = JobRecord(
        "j", "train", {}, JobState.RUNNING, 0.0, 0.0, attempts=[AttemptRecord("j", 1, 0.0, workers=[worker])]
    )
    clock = [0.0]
    store = SimpleNamespace(load_power_profiles=lambda: [])
    cp: Any = SimpleNamespace(clock=lambda: clock[0], jobs={"j": job}, nodes=[], store=store)
    domains = PowerDomains(
        racks={"r": Rack("r", "z", 10_000.0, 0.0, frozenset({"n0"}))}, zones={"z": Zone("z", 10_000.0)}
    )
    loop = PowerLoop(cp, PowerRuntime(domains))
    base = reference_curve()
    loop._model_curves["j"] = base

    def run(cap_w: float, steps_per_s: float) -> None:
        for _ in range(int(RATE_WINDOW_S) + 1):
            clock[0] += 1.0
            worker.progress_step += int(steps_per_s)
            loop._measure_rate(job, cap_w, clock[0])

    run(700.0, 10.0)  # uncapped: 10 steps/s
    run(400.0, 9.0)  # the H100 curve says 400 W keeps ~68%; this job keeps 90%
    run(700.0, 10.0)
    run(400.0, 9.0)
    learned = loop._learned["j"]
    assert learned.throughput(400.0) > base.throughput(400.0) + 0.05
    assert "observations of the job" in learned.source
