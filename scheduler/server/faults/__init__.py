"""Fault tolerance in the control plane: health, blame, recovery, checkpoints, hangs, spares.

Every decision is made by the pure code in scheduler/reliability — `signals.classify` says
what an observation means, `HealthBook` how health moves, `recovery.decide_recovery` (with
`blame.decide`) whether and when a failed gang restarts, `find_lemons` which nodes to
quarantine, `choose_spares`/`rank_spares` which nodes to hold back and hand out, and
`IntervalPolicy` how often to checkpoint; the ETTR simulator calls the same functions. The
trackers here keep their state, persist it, and carry the verdicts out through the
ControlPlane; `FaultTolerance` is the one door the rest of the control plane uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.v1 import agent_pb2, common_pb2

from scheduler.model import AttemptRecord, CheckpointRecord, JobRecord, WorkerRecord
from scheduler.server.faults.checkpoints import RUNNING_STATES, CheckpointTracker
from scheduler.server.faults.config import FaultToleranceConfig
from scheduler.server.faults.health import HealthTracker, describe_health_event
from scheduler.server.faults.recovery import RecoveryTracker
from scheduler.server.nodes import NodeRuntime

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane

__all__ = ["FaultTolerance", "FaultToleranceConfig", "describe_health_event"]


class FaultTolerance:
    def __init__(self, cp: ControlPlane, config: FaultToleranceConfig | None = None) -> None:
        self.cp = cp
        self.config = config or FaultToleranceConfig()
        self.health = HealthTracker(cp)
        self.checkpoints = CheckpointTracker(cp, self.config)
        self.recovery = RecoveryTracker(cp, self.config, self.health, self.checkpoints)

    def load(self) -> None:
        self.health.load()
        self.checkpoints.load()
        self.recovery.load()

    # --- what agents report ----------------------------------------------------------------

    def node_registered(self, rt: NodeRuntime) -> None:
        self.health.node_registered(rt)

    def on_health_event(self, rt: NodeRuntime, event: common_pb2.HealthEvent) -> None:
        """A critical hardware signal fails the gangs on the device; one that turns it SUSPECT
        gets them a checkpoint now, before it fails."""
        outcome = self.health.observe(rt, event)
        if outcome is None:
            return
        for job, attempt in self.cp.attempts_on(outcome.node, outcome.index):
            if outcome.fails_gangs:
                self.recovery.fail_attempt(
                    job,
                    attempt,
                    [outcome.signal],
                    frozenset({outcome.node}),
                    outcome.observed_at,
                    outcome.cause,
                    hardware_healthy=False,
                )
            elif outcome.warns_gangs:
                self.checkpoints.warned(job, attempt, outcome.node, outcome.index, outcome.signal)

    def on_checkpoint(self, report: agent_pb2.CheckpointReport) -> None:
        self.checkpoints.on_checkpoint(report)

    def on_progress(self, w: WorkerRecord) -> None:
        self.checkpoints.on_progress(w)

    def worker_failed(self, job: JobRecord, attempt: AttemptRecord, first: WorkerRecord, reason: str) -> None:
        self.recovery.worker_failed(job, attempt, first, reason)

    def node_lost(
        self, node: str, why: str, silent_s: float, attempts: list[tuple[JobRecord, AttemptRecord]]
    ) -> None:
        self.recovery.node_lost(node, why, silent_s, attempts)

    def on_running(self, job: JobRecord, attempt: AttemptRecord) -> None:
        self.recovery.on_running(job, attempt)

    # --- scheduling ------------------------------------------------------------------------

    def held_back(self) -> frozenset[str]:
        return self.recovery.held_back()

    def place_recovering(self) -> None:
        self.recovery.place_recovering()

    def resume_point(self, job: JobRecord) -> CheckpointRecord | None:
        return self.checkpoints.resume_point(job)

    def interval_s(self, job: JobRecord) -> float:
        return self.checkpoints.interval_s(job)

    def interval_text(self, job: JobRecord) -> str:
        return self.checkpoints.interval_text(job)

    def move(self, job: JobRecord, attempt: AttemptRecord, why: str) -> None:
        self.checkpoints.move(job, attempt, why)

    # --- operators ---------------------------------------------------------------------------

    def clear_health(self, name: str, index: int | None, reason: str) -> None:
        self.health.clear(name, index, reason)
        if index is None:
            self.recovery.cleared(name)

    # --- time --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Once a second: hangs, checkpoints due or overdue, failure-rate exposure."""
        now = self.cp.clock()
        for job in list(self.cp.jobs.values()):
            attempt = job.current_attempt
            timeout = self.cp.spec_of(job).hang_timeout_s if job.state in RUNNING_STATES else 0.0
            if not timeout or attempt is None or attempt.outcome:
                continue
            silent = self.checkpoints.silent_for(attempt, now)
            if silent is not None and silent >= timeout:
                self.recovery.hung(job, attempt, silent, timeout)
        self.checkpoints.tick(now)
        self.health.expire(now)

    def finished(self, job: JobRecord) -> None:
        """A job reached a terminal state: drop its working state."""
        self.checkpoints.finished(job.id)
        self.recovery.finished(job.id)
