"""Failed attempts in the live control plane: blame, restart or give up, and where to go next.

Each failure is judged by `recovery.decide_recovery` (which asks `blame.decide`), recorded in
the store (the evidence blame's give-up rule and lemon detection need across restarts) and
carried out: the gang is stopped and the job goes RECOVERING, then after the backoff it is
placed again — hot spares and its surviving nodes first, the failed hardware never — or back to
the queue when nothing fits. Hardware-blamed failures count towards lemon nodes, which are
quarantined with their evidence. The spare pool is refilled on every pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from corral.v1 import job_pb2

from scheduler.jobstate import JobState
from scheduler.model import AttemptRecord, JobRecord, WorkerPhase, WorkerRecord
from scheduler.placement.cluster import ClusterState, DeviceState, NodeState
from scheduler.placement.engine import PlacementDecision, place
from scheduler.placement.from_spec import placement_request
from scheduler.reliability.blame import AttemptFailure
from scheduler.reliability.health_state import Health
from scheduler.reliability.lemon import FailureRecord, LemonVerdict, find_lemons
from scheduler.reliability.recovery import decide_recovery
from scheduler.reliability.signals import (
    Blame,
    Component,
    Kind,
    Observation,
    Severity,
    Signal,
    classify,
    from_worker_exit,
)
from scheduler.reliability.spares import SpareCandidate, choose_spares, rank_spares
from scheduler.server.faults.checkpoints import CheckpointTracker
from scheduler.server.faults.config import FaultToleranceConfig
from scheduler.server.faults.health import HealthTracker

if TYPE_CHECKING:
    from collections.abc import Set

    from scheduler.placement.request import PlacementRequest
    from scheduler.server.controlplane import ControlPlane
    from scheduler.server.scheduling import PassInputs

# An attempt that ran this long before failing resets the backoff: it was not a crash loop.
BACKOFF_RESET_S = 600.0
# Failures older than this many lemon windows are not reloaded at start-up.
HISTORY_WINDOWS = 4


@dataclass
class _Recovery:
    """A gang between a failure and its next placement."""

    decided_at: float
    not_before: float
    avoid: frozenset[str]
    exclude: frozenset[str]
    near: dict[str, str]  # the failed node's labels: spares close to it come first
    model: str


def signal_to_dict(s: Signal) -> dict[str, Any]:
    return asdict(s)


def signal_from_dict(d: dict[str, Any]) -> Signal:
    return Signal(
        severity=Severity(d["severity"]),
        component=Component(d["component"]),
        blame=Blame(d["blame"]),
        early_warning=bool(d["early_warning"]),
        reason=str(d["reason"]),
        source=str(d["source"]),
        action=str(d.get("action", "")),
        failure_class=str(d.get("failure_class", "")),
        device_index=d.get("device_index"),
    )


def _copy_node(n: NodeState) -> NodeState:
    return NodeState(
        name=n.name,
        devices=[
            DeviceState(d.index, d.pool, d.memory_bytes, d.island, d.milli_free, d.healthy) for d in n.devices
        ],
        cpu_milli=n.cpu_milli,
        memory_mib=n.memory_mib,
        rack=n.rack,
        block=n.block,
        schedulable=n.schedulable,
        cpu_free=n.cpu_free,
        memory_free=n.memory_free,
    )


class _FleetSnapshot:
    """Every node as placement sees it, built on first use and shared by the gangs recovering in
    one pass; a placement in it allocates in it, so the next gang sees what the last one took."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._inputs: PassInputs | None = None

    def _get(self) -> PassInputs:
        if self._inputs is None:
            self._inputs = self.cp.inputs()
        return self._inputs

    def place_within(self, request: PlacementRequest, names: Set[str]) -> PlacementDecision | None:
        """Place on `names` alone, as if they were the whole cluster (so a gang packs there as
        it would in a cluster of just them); None when none of them is known."""
        inputs = self._get()
        fleet = inputs.cluster
        nodes = [fleet.by_name[n] for n in sorted(names) if n in fleet.by_name]
        if not nodes:
            return None
        subset = ClusterState(_copy_node(n) for n in nodes)
        decision = place(request, subset, self.cp.live_policy(inputs), self.cp.speed_of)
        for a in decision.allocations:  # what it took, taken in the fleet snapshot too
            node = fleet.by_name[subset.nodes[a.node_id].name]
            fleet.allocate(node, a.device_indices, a.device_milli, a.cpu_milli, a.memory_mib)
        return decision

    def place(self, request: PlacementRequest, skip: Set[str]) -> PlacementDecision | None:
        """Place on every node but `skip`; None when no node is left to try."""
        inputs = self._get()
        cluster = inputs.cluster
        if all(n.name in skip for n in cluster.nodes):
            return None
        set_aside = [n for n in cluster.nodes if n.name in skip and n.schedulable]
        for node in set_aside:
            cluster.update(node, schedulable=False)
        try:
            return place(request, cluster, self.cp.live_policy(inputs), self.cp.speed_of)
        finally:
            for node in set_aside:
                cluster.update(node, schedulable=True)


class RecoveryTracker:
    def __init__(
        self,
        cp: ControlPlane,
        config: FaultToleranceConfig,
        health: HealthTracker,
        checkpoints: CheckpointTracker,
    ) -> None:
        self.cp = cp
        self.config = config
        self.health = health
        self.checkpoints = checkpoints
        self._history: dict[str, list[AttemptFailure]] = {}  # job -> its failures, oldest first
        self._failures: list[FailureRecord] = []  # hardware evidence for lemon detection
        self._lemon_cleared: dict[str, float] = {}  # node -> when an operator cleared it
        self._recovering: dict[str, _Recovery] = {}

    def load(self) -> None:
        cp = self.cp
        since = cp.clock() - self.config.lemons.window_s * HISTORY_WINDOWS
        for row in cp.store.load_failures(since=since):
            signals = tuple(signal_from_dict(s) for s in row["signals"])
            failure = AttemptFailure(
                row["attempt"], signals, frozenset(row["hardware"]), row["hardware_healthy"], row["at"]
            )
            self._history.setdefault(row["job_id"], []).append(failure)
            if row["blame"] == Blame.HARDWARE:
                reasons = tuple(s.reason for s in signals)
                nodes = frozenset(row["nodes"])
                self._failures.append(
                    FailureRecord(row["at"], row["job_id"], row["attempt"], nodes, Blame.HARDWARE, reasons)
                )
        for name, record in cp.health.nodes.items():
            if record.state is Health.QUARANTINED:
                cp.lemons[name] = LemonVerdict(name, tuple(f for f in self._evidence() if name in f.nodes))
        now = cp.clock()
        for job in cp.jobs.values():
            if job.state is JobState.RECOVERING:
                # The backoff is not persisted: a restarted control plane re-places at once.
                self._recovering[job.id] = self._recovery_after(job, now, 0.0, frozenset(), frozenset())

    # --- failures --------------------------------------------------------------------------

    def worker_failed(self, job: JobRecord, attempt: AttemptRecord, first: WorkerRecord, reason: str) -> None:
        """An attempt failed by a worker's exit: gather the evidence and decide."""
        now = self.cp.clock()
        if first.phase is WorkerPhase.FAILED_TO_START:
            # The shell's "cannot execute" status: the spec's command, the job's own fault.
            exit_signal = classify(Observation(Kind.EXIT, 127, message=reason))
        else:
            exit_signal = classify(from_worker_exit(first.exit_code or 0, first.signal or 0))
        signals = [exit_signal, *self.health.recent_signals(attempt, now)]
        self.fail_attempt(
            job,
            attempt,
            signals,
            frozenset({first.node_name}),
            first.ended_at or now,
            reason,
            hardware_healthy=self.health.gang_healthy(attempt),
        )

    def node_lost(
        self, node: str, why: str, silent_s: float, attempts: list[tuple[JobRecord, AttemptRecord]]
    ) -> None:
        """A node gone past its grace: every gang with a worker there (`attempts`, from
        ControlPlane.attempts_by_node) failed on hardware, at the moment it was last heard from."""
        signal = classify(Observation(Kind.HEARTBEAT_LOST, message=why))
        for job, attempt in attempts:
            self.fail_attempt(
                job,
                attempt,
                [signal],
                frozenset({node}),
                self.cp.clock() - silent_s,
                f"heartbeat lost: {why}",
                hardware_healthy=False,
            )

    def hung(self, job: JobRecord, attempt: AttemptRecord, silent_s: float, timeout_s: float) -> None:
        """No rank reported progress for the job's hang timeout: the NCCL-watchdog case. The job's
        own timeout is the judgement here, so the table's threshold (NCCL's default, for jobs
        that set none) is not applied."""
        signal = classify(Observation(Kind.HANG, message=f"no progress for {silent_s:.0f} s"))
        self.fail_attempt(
            job,
            attempt,
            [signal],
            frozenset(w.node_name for w in attempt.workers),
            self.cp.clock() - silent_s + timeout_s,
            f"hang: no progress for {silent_s:.0f} s",
            hardware_healthy=self.health.gang_healthy(attempt),
        )

    def fail_attempt(
        self,
        job: JobRecord,
        attempt: AttemptRecord,
        signals: list[Signal],
        hardware: frozenset[str],
        observed_at: float,
        cause: str,
        *,
        hardware_healthy: bool,
    ) -> None:
        """The attempt is over: blame it, then restart the gang elsewhere or fail the job."""
        cp = self.cp
        if attempt.outcome or job.state.terminal or job.current_attempt is not attempt:
            return
        now = cp.clock()
        history = [
            *self._history.get(job.id, []),
            AttemptFailure(attempt.number, tuple(signals), hardware, hardware_healthy, now),
        ]
        self._history[job.id] = history
        implicated = frozenset(h for h in hardware if any(s.blame is Blame.HARDWARE for s in signals))
        decision = decide_recovery(
            history,
            restarts_used=job.restarts,
            hardware_restarts_used=job.hardware_restarts,
            max_restarts=cp.spec_of(job).max_restarts,
            consecutive_failures=self._consecutive_failures(job, now),
            policy=self.config.recovery,
            implicated_nodes=implicated,
        )
        attempt.outcome = f"failed: {cause}"
        attempt.cause = cause
        attempt.blame = decision.blame.value
        attempt.failed_at = now
        attempt.detect_s = max(0.0, now - observed_at)
        attempt.lost_s = max(0.0, now - self.checkpoints.last_checkpoint_at(job, attempt))
        job.lost_device_s += attempt.lost_s * (sum(len(w.device_indices) for w in attempt.workers) or 1)
        cp.store.update_attempt(attempt)
        cp.store.insert_failure(
            {
                "job_id": job.id,
                "attempt": attempt.number,
                "at": now,
                "blame": decision.blame.value,
                "cause": cause,
                "hardware": sorted(hardware),
                "hardware_healthy": hardware_healthy,
                "nodes": sorted(implicated or hardware),
                "signals": [signal_to_dict(s) for s in signals],
            }
        )
        action = f"restart in {decision.delay_s:.3g} s" if decision.restart else "job FAILED"
        cp.record_event(
            "failure",
            f"attempt {attempt.number} failed: {cause}; blame {decision.blame.value}; {action}",
            job_id=job.id,
            node_name=min(hardware, default=None),
            data={
                "cause": cause,
                "blame": decision.blame.value,
                "attempt": attempt.number,
                "action": "restart" if decision.restart else "fail",
                "nodes": sorted({w.node_name for w in attempt.workers}),
                "hardware": sorted(hardware),
                "signals": [s.reason for s in signals],
                "lost_s": attempt.lost_s,
                "backoff_s": decision.delay_s,
                "detect_s": attempt.detect_s,
                "observed_at": observed_at,
            },
        )
        self.checkpoints.forget(job.id)
        if decision.blame is Blame.HARDWARE:
            self.checkpoints.count_failure(job, attempt)
        if decision.restart:
            if decision.counts_as_restart:
                job.restarts += 1
            else:
                job.hardware_restarts += 1
            cp.transition(job, JobState.RECOVERING, decision.reason)
            # Avoid every node the job has failed on so far, not just the last: each retry on
            # fresh hardware is evidence blame can count (placement falls back if none is left).
            avoid = decision.avoid_nodes
            if avoid:
                avoid = avoid | {n for f in history for n in f.hardware}
            self._recovering[job.id] = self._recovery_after(
                job, now, decision.delay_s, avoid, decision.exclude_nodes
            )
        else:
            cp.transition(job, JobState.FAILED, decision.reason)
        cp.stop_workers(attempt, f"gang failed: {cause}")
        if decision.blame is Blame.HARDWARE:
            self._count_towards_lemons(job, attempt, implicated or hardware, signals, now)
        cp.kick()

    def _recovery_after(
        self, job: JobRecord, now: float, delay_s: float, avoid: frozenset[str], exclude: frozenset[str]
    ) -> _Recovery:
        model, _ = self.checkpoints.gang_of(job.current_attempt)
        near: dict[str, str] = {}
        for w in job.current_attempt.workers if job.current_attempt else []:
            rt = self.cp.nodes.get(w.node_name)
            if rt is not None and (not near or w.node_name in exclude):
                near = dict(rt.record.labels)
        return _Recovery(now, now + delay_s, avoid, exclude, near, model)

    def _consecutive_failures(self, job: JobRecord, now: float) -> int:
        count = 1
        for attempt in reversed(job.attempts[:-1]):
            if not attempt.blame or (attempt.failed_at or now) - attempt.started_at >= BACKOFF_RESET_S:
                break
            count += 1
        return count

    # --- lemon nodes -----------------------------------------------------------------------

    def _count_towards_lemons(
        self, job: JobRecord, attempt: AttemptRecord, nodes: frozenset[str], signals: list[Signal], now: float
    ) -> None:
        hardware = [s.reason for s in signals if s.blame is Blame.HARDWARE] or [s.reason for s in signals]
        self._failures.append(
            FailureRecord(now, job.id, attempt.number, nodes, Blame.HARDWARE, tuple(hardware))
        )
        horizon = now - self.config.lemons.window_s
        self._failures = [f for f in self._failures if f.at >= horizon]
        for verdict in find_lemons(self._evidence(), now, self.config.lemons):
            if verdict.node in self.cp.lemons:
                continue
            self.cp.lemons[verdict.node] = verdict
            summary = (
                f"lemon node: {len(verdict.evidence)} hardware failures across {len(verdict.jobs)} jobs "
                f"in {self.config.lemons.window_s / 86400:g} days"
            )
            self.health.quarantine(verdict.node, summary, verdict.describe())

    def _evidence(self) -> list[FailureRecord]:
        """Failures not yet forgiven: an operator's clear wipes a node's slate."""
        return [f for f in self._failures if all(f.at > self._lemon_cleared.get(n, -1.0) for n in f.nodes)]

    def cleared(self, node: str) -> None:
        self.cp.lemons.pop(node, None)
        self._lemon_cleared[node] = self.cp.clock()

    # --- hot spares and re-placement -------------------------------------------------------

    def held_back(self) -> frozenset[str]:
        """Refresh the hot spare pool and return it: the normal pass must not use it."""
        cp = self.cp
        if self.config.spares.per_model <= 0:
            cp.spares = frozenset()
        else:
            cp.spares = choose_spares(self._candidates(), cp.spares, self.config.spares)
        return cp.spares

    def _candidates(self, only: Set[str] | None = None) -> list[SpareCandidate]:
        """Every node as a spare candidate (`only`: just those nodes)."""
        if only is not None and not only:
            return []
        busy = self.cp.active_workers_by_node()
        nodes = list(self.cp.nodes)
        if only is not None:
            nodes = [rt for rt in nodes if rt.record.name in only]
        return [
            SpareCandidate(
                node=rt.record.name,
                model=Counter(d.model for d in rt.record.devices).most_common(1)[0][0],
                devices_total=len(rt.record.devices),
                idle=not busy.get(rt.record.name),
                healthy=self.health.node_healthy(rt),
                schedulable=rt.schedulable,
                labels=dict(rt.record.labels),
            )
            for rt in nodes
            if rt.record.devices
        ]

    def place_recovering(self) -> None:
        cp, now = self.cp, self.cp.clock()
        # One snapshot of every node serves all the gangs recovering now (a rack that goes
        # down fails hundreds at once): at 10,000 nodes a snapshot costs about half a second.
        fleet = _FleetSnapshot(cp)
        for job_id, rec in list(self._recovering.items()):
            job = cp.jobs.get(job_id)
            if job is None or job.state is not JobState.RECOVERING:
                del self._recovering[job_id]
                continue
            if now < rec.not_before:
                continue
            del self._recovering[job_id]
            spec = cp.spec_of(job)
            decision, why = self._place(job, spec, rec, fleet)
            if decision is None:
                cp.transition(job, JobState.PENDING, f"waiting for devices after a failure: {why}")
                continue
            spares = sorted({s.node_name for s in decision.slots or ()} & cp.spares)
            cp.start_attempt(job, spec, decision)
            attempt = job.attempts[-1]
            cp.record_event(
                "recovery",
                f"attempt {attempt.number} placed {now - rec.decided_at:.2f} s after the failure"
                + (f" on hot spare {', '.join(spares)}" if spares else "")
                + (f", resuming from step {attempt.resumed_from_step}" if attempt.resume_path else ""),
                job_id=job.id,
                data={
                    "attempt": attempt.number,
                    "spares": spares,
                    "resumed_from_step": attempt.resumed_from_step,
                    "waited_s": now - rec.decided_at,
                },
            )

    def _place(
        self, job: JobRecord, spec: job_pb2.JobSpec, rec: _Recovery, fleet: _FleetSnapshot
    ) -> tuple[PlacementDecision | None, str]:
        """Hot spares and the gang's surviving nodes first (close to where it ran), then any
        node but those to avoid, then any node but the failed ones. A recovering gang keeps the
        admission it had: queues and quotas were settled when it was first placed."""
        cp = self.cp
        request = placement_request(job.id, spec)
        previous = {w.node_name for w in job.current_attempt.workers} if job.current_attempt else set()
        spares = rank_spares(cp.spares, self._candidates(cp.spares), rec.model, rec.near)
        close = (previous - rec.avoid) | set(spares)
        why = "no devices"
        nearby = fleet.place_within(request, close - rec.exclude)
        if nearby is not None:
            if nearby.placed:
                return nearby, ""
            why = nearby.reason
        # Anywhere else: the shared fleet snapshot with the nodes to skip set aside.
        for skip in (rec.avoid | rec.exclude, rec.exclude):
            elsewhere = fleet.place(request, skip)
            if elsewhere is None:
                continue
            if elsewhere.placed:
                return elsewhere, ""
            why = elsewhere.reason
        return None, why

    def on_running(self, job: JobRecord, attempt: AttemptRecord) -> None:
        """Every worker of a new attempt runs: close the books on the failure before it."""
        if len(job.attempts) < 2:
            return
        previous = job.attempts[-2]
        if previous.failed_at is None or previous.restart_s:
            return
        previous.restart_s = max(0.0, self.cp.clock() - previous.failed_at)
        job.lost_device_s += previous.restart_s * (sum(len(w.device_indices) for w in attempt.workers) or 1)
        self.cp.store.update_attempt(previous)
        self.cp.store.update_job(job)
        self.cp.record_event(
            "recovery",
            f"attempt {attempt.number} running {previous.restart_s:.2f} s after attempt "
            f"{previous.number} failed ({previous.cause})",
            job_id=job.id,
            data={
                "attempt": attempt.number,
                "restart_s": previous.restart_s,
                "detect_s": previous.detect_s,
                "resumed_from_step": attempt.resumed_from_step,
            },
        )

    def finished(self, job_id: str) -> None:
        self._recovering.pop(job_id, None)
