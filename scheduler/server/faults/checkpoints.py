"""Checkpoints and progress in the live control plane.

Records what workers report (only complete checkpoints are resumed from), picks the resume
point for the next attempt, keeps each job's `IntervalPolicy` (fixed, or `auto` from the
cluster's `FailureRates` and the job's measured checkpoint cost) and asks for checkpoints when
it is due, before a move (the job is CHECKPOINTING until one arrives or the timeout passes) and
when a device of the gang turns SUSPECT. Progress reports feed hang detection.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.v1 import agent_pb2

from scheduler.jobstate import JobState
from scheduler.model import AttemptRecord, CheckpointRecord, JobRecord, WorkerRecord
from scheduler.reliability.interval import FailureRates, IntervalPolicy
from scheduler.reliability.signals import Signal
from scheduler.server.faults.config import FaultToleranceConfig
from scheduler.server.faults.health import seconds_of

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane

log = logging.getLogger("corral.server.checkpoints")

HOUR_S = 3600.0
KEPT_PER_JOB = 50  # checkpoint records kept in memory per job (all are in the store)
RUNNING_STATES = (JobState.RUNNING, JobState.CHECKPOINTING)


@dataclass
class _Move:
    """A job asked to checkpoint before it is moved off its nodes."""

    why: str
    requested_at: float
    request_id: int


class CheckpointTracker:
    def __init__(self, cp: ControlPlane, config: FaultToleranceConfig) -> None:
        self.cp = cp
        self.config = config
        self.rates = FailureRates()
        self._intervals: dict[str, IntervalPolicy] = {}
        self._moving: dict[str, _Move] = {}
        self._last_request: dict[str, float] = {}  # job -> when a checkpoint was last asked for
        self._progress_at: dict[str, float] = {}  # workload -> last progress report
        self._request_seq = 0
        self._exposure_at: float | None = None

    def load(self) -> None:
        cp = self.cp
        cp._checkpoints = cp.store.load_checkpoints(KEPT_PER_JOB)
        now = cp.clock()
        # A restarted control plane gives running workers a fresh hang window.
        for job in cp.jobs.values():
            for attempt in job.attempts:
                for w in attempt.workers:
                    if w.phase.holds_devices and w.progress_step:
                        self._progress_at[w.workload_id] = now

    # --- reports ---------------------------------------------------------------------------

    def on_checkpoint(self, report: agent_pb2.CheckpointReport) -> None:
        cp = self.cp
        entry = cp.workers.get(report.workload_id)
        if entry is None:
            log.warning("checkpoint for unknown workload %s ignored", report.workload_id)
            return
        job, attempt, w = entry
        at = seconds_of(report.at) if report.HasField("at") else cp.clock()
        record = CheckpointRecord(
            job_id=job.id,
            attempt=attempt.number,
            rank=w.rank,
            step=int(report.step),
            path=report.path,
            at=at,
            size_bytes=int(report.size_bytes),
            duration_s=max(0.0, report.duration_s),
            complete=report.complete,
            trigger=report.trigger[:32],
        )
        cp.store.insert_checkpoint(record)
        rows = cp._checkpoints.setdefault(job.id, [])
        rows.append(record)
        del rows[:-KEPT_PER_JOB]
        cp.record_event(
            "checkpoint",
            f"rank {w.rank} checkpoint at step {record.step}"
            + ("" if record.complete else " INCOMPLETE (not used to resume)")
            + f" ({record.size_bytes} B in {record.duration_s:.3g} s, {record.trigger or 'periodic'})",
            job_id=job.id,
            node_name=w.node_name,
            data={
                "attempt": attempt.number,
                "rank": w.rank,
                "step": record.step,
                "path": record.path,
                "size_bytes": record.size_bytes,
                "duration_s": record.duration_s,
                "complete": record.complete,
                "trigger": record.trigger,
            },
        )
        if not record.complete:
            return
        if record.step >= w.checkpoint_step:
            w.checkpoint_step, w.checkpoint_path, w.checkpoint_at = record.step, record.path, cp.clock()
            cp.store.update_worker(w)
        policy = self.interval(job)
        if policy is not None:
            policy.report_checkpoint(record.duration_s)
        move = self._moving.get(job.id)
        if move is not None and job.current_attempt is attempt and at >= move.requested_at - 1.0:
            del self._moving[job.id]
            if not attempt.outcome:
                cp.requeue(job, attempt, f"{move.why} (after a checkpoint at step {record.step})")

    def on_progress(self, w: WorkerRecord) -> None:
        self._progress_at[w.workload_id] = self.cp.clock()

    def resume_point(self, job: JobRecord) -> CheckpointRecord | None:
        """The checkpoint the next attempt starts from: the newest complete one, rank 0's when
        ranks differ (rank 0 writes the shared state in the usual recipes)."""
        complete = [c for c in self.cp.checkpoints_of(job.id) if c.complete]
        if not complete:
            return None
        return max(complete, key=lambda c: (c.step, c.rank == 0, c.at))

    def last_checkpoint_at(self, job: JobRecord, attempt: AttemptRecord) -> float:
        """The work since this moment is lost: the attempt's last complete checkpoint, or its
        start (what the attempt did before its first checkpoint is redone)."""
        running_since = min(
            (w.started_at for w in attempt.workers if w.started_at), default=attempt.started_at
        )
        done = [c.at for c in self.cp.checkpoints_of(job.id) if c.complete and c.attempt == attempt.number]
        return max([running_since, *done])

    def silent_for(self, attempt: AttemptRecord, now: float) -> float | None:
        """Seconds since any rank of the attempt reported progress; None if none ever has."""
        heard = [
            self._progress_at[w.workload_id] for w in attempt.workers if w.workload_id in self._progress_at
        ]
        return now - max(heard) if heard else None

    # --- requests --------------------------------------------------------------------------

    def request(self, job: JobRecord, attempt: AttemptRecord, reason: str) -> int:
        self._request_seq += 1
        self._last_request[job.id] = self.cp.clock()
        self.cp.request_checkpoint(attempt, reason, self._request_seq)
        return self._request_seq

    def uses_sdk(self, job: JobRecord) -> bool:
        return bool(self.cp.checkpoints_of(job.id)) or any(
            w.progress_step for a in job.attempts for w in a.workers
        )

    def move(self, job: JobRecord, attempt: AttemptRecord, why: str) -> None:
        """Move a job off its nodes with a fresh checkpoint: ask, wait (CHECKPOINTING) until one
        arrives or the timeout passes, then requeue. A job that never spoke to the SDK gets the
        request and its stop's grace period, as before."""
        cp = self.cp
        if job.state is JobState.CHECKPOINTING and job.id in self._moving:
            return  # already on its way
        if job.state is JobState.RUNNING and self.uses_sdk(job):
            cp.transition(job, JobState.CHECKPOINTING, f"checkpointing before the move: {why}")
            self._moving[job.id] = _Move(why, cp.clock(), self.request(job, attempt, why))
            return
        self.request(job, attempt, why)
        cp.requeue(job, attempt, why)

    def warned(self, job: JobRecord, attempt: AttemptRecord, node: str, index: int, signal: Signal) -> None:
        """A device of a running gang turned SUSPECT: checkpoint now, before it fails."""
        policy = self.interval(job)
        if policy is not None:
            policy.warn(f"{node}/{index}", self.cp.clock())
        self.request(job, attempt, f"device {index} on {node} turned SUSPECT ({signal.reason})")

    # --- the interval ----------------------------------------------------------------------

    def gang_of(self, attempt: AttemptRecord | None) -> tuple[str, int]:
        """The gang's (majority) device model and its device count."""
        models: Counter[str] = Counter()
        for w in attempt.workers if attempt else []:
            rt = self.cp.nodes.get(w.node_name)
            for i in w.device_indices:
                d = rt.devices_by_index.get(i) if rt else None
                if d is not None:
                    models[d.model] += 1
        if not models:
            return "", 0
        return models.most_common(1)[0][0], sum(models.values())

    def interval(self, job: JobRecord) -> IntervalPolicy | None:
        policy = self._intervals.get(job.id)
        if policy is not None:
            return policy
        spec = self.cp.spec_of(job)
        if spec.checkpoint_interval_s:
            policy = IntervalPolicy.fixed(spec.checkpoint_interval_s)
        elif spec.checkpoint_interval_auto:
            model, devices = self.gang_of(job.current_attempt)
            if not model:
                return None  # not placed yet: the model and gang size are not known
            policy = IntervalPolicy.auto(
                self.rates.estimator(model, devices),
                devices,
                model,
                restart_s=self.config.restart_cost_s,
                proactive=True,
            )
        else:
            return None
        self._intervals[job.id] = policy
        return policy

    def interval_s(self, job: JobRecord) -> float:
        policy = self.interval(job)
        return policy.interval_s(self.cp.clock()) if policy is not None else 0.0

    def interval_text(self, job: JobRecord) -> str:
        if job.state.terminal:
            return ""
        policy = self.interval(job)
        return policy.why(self.cp.clock()) if policy is not None else ""

    def count_failure(self, job: JobRecord, attempt: AttemptRecord) -> None:
        """A hardware failure of this gang: data for the failure rate of its model and size,
        and whether a warning (a SUSPECT device) came before it."""
        policy = self.interval(job)
        warned = int(policy is not None and policy.suspects(self.cp.clock()) > 0)
        model, devices = self.gang_of(attempt)
        if model:
            self.rates.observe(model, devices, 0.0, failures=1, warned=warned)

    # --- the once-a-second tick ------------------------------------------------------------

    def tick(self, now: float) -> None:
        self._count_exposure(now)
        for job in list(self.cp.jobs.values()):
            attempt = job.current_attempt
            if job.state not in RUNNING_STATES or attempt is None or attempt.outcome:
                continue
            self._move_timed_out(job, attempt, now)
            if job.state is JobState.RUNNING:
                self._periodic(job, attempt, now)

    def _count_exposure(self, now: float) -> None:
        """Device-hours of running gangs: the denominator of every failure rate."""
        if self._exposure_at is None:
            self._exposure_at = now
            return
        hours = (now - self._exposure_at) / HOUR_S
        self._exposure_at = now
        if hours <= 0:
            return
        for job in self.cp.jobs.values():
            if job.state in RUNNING_STATES:
                model, devices = self.gang_of(job.current_attempt)
                if model:
                    self.rates.observe(model, devices, hours)

    def _move_timed_out(self, job: JobRecord, attempt: AttemptRecord, now: float) -> None:
        move = self._moving.get(job.id)
        if move is None or now - move.requested_at < self.config.checkpoint_timeout_s:
            return
        del self._moving[job.id]
        self.cp.requeue(
            job, attempt, f"{move.why} (no checkpoint within {self.config.checkpoint_timeout_s:g} s)"
        )

    def _periodic(self, job: JobRecord, attempt: AttemptRecord, now: float) -> None:
        interval = self.interval_s(job)
        if not interval:
            return
        if not any(w.started_at for w in attempt.workers):
            return  # nothing runs yet to checkpoint
        last = max(self.last_checkpoint_at(job, attempt), self._last_request.get(job.id, 0.0))
        if now - last >= interval:
            self.request(job, attempt, f"periodic: every {interval:.3g} s")

    def forget(self, job_id: str) -> None:
        """The job's attempt ended or the job finished: no move is waiting any more."""
        self._moving.pop(job_id, None)

    def finished(self, job_id: str) -> None:
        self.forget(job_id)
        self._intervals.pop(job_id, None)
        self._last_request.pop(job_id, None)
