"""Fault tolerance in the control plane: health, blame, recovery, checkpoints, hangs, spares.

Every decision is made by the pure code in scheduler/reliability — `signals.classify` says
what an observation means, `HealthBook` how health moves, `recovery.decide_recovery` (with
`blame.decide`) whether and when a failed gang restarts, `find_lemons` which nodes to
quarantine, `choose_spares`/`rank_spares` which nodes to hold back and hand out, and
`IntervalPolicy` how often to checkpoint; the ETTR simulator calls the same functions. This
class keeps their state, persists it, and carries their verdicts out through the ControlPlane.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from corral.v1 import agent_pb2, common_pb2, job_pb2

from scheduler.jobstate import JobState
from scheduler.model import AttemptRecord, CheckpointRecord, JobRecord, WorkerPhase, WorkerRecord
from scheduler.placement.engine import PlacementDecision, place
from scheduler.placement.from_spec import placement_request
from scheduler.reliability.blame import AttemptFailure
from scheduler.reliability.health_state import Health, HealthRecord, HistoryEntry
from scheduler.reliability.interval import FailureRates, IntervalPolicy
from scheduler.reliability.lemon import FailureRecord, LemonPolicy, find_lemons
from scheduler.reliability.recovery import RecoveryDecision, RecoveryPolicy, decide_recovery
from scheduler.reliability.signals import (
    Blame,
    Component,
    Kind,
    Observation,
    Severity,
    Signal,
    classify,
    from_health_event,
    from_worker_exit,
)
from scheduler.reliability.spares import SpareCandidate, SparePolicy, choose_spares, rank_spares
from scheduler.server.nodes import NodeRuntime
from scheduler.server.scheduling import pass_inputs

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane

log = logging.getLogger("corral.server.faults")

HOUR_S = 3600.0
NODE_INDEX = -1  # the health table's index for a node's own record
# Signals seen on a device this long before a worker's failure are evidence about it.
SIGNAL_WINDOW_S = 120.0
# An attempt that ran this long before failing resets the backoff: it was not a crash loop.
BACKOFF_RESET_S = 600.0
_RUNNING_STATES = (JobState.RUNNING, JobState.CHECKPOINTING)


@dataclass(frozen=True)
class FaultToleranceConfig:
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    spares: SparePolicy = field(default_factory=SparePolicy)
    lemons: LemonPolicy = field(default_factory=LemonPolicy)
    # How long a job asked to checkpoint before a move may take before it is moved anyway.
    checkpoint_timeout_s: float = 60.0
    # Restart cost assumed by `auto` intervals (load the checkpoint, rebuild collectives).
    restart_cost_s: float = 60.0

    def problems(self) -> list[str]:
        out = list(self.recovery.problems())
        if self.spares.per_model < 0:
            out.append(f"hot spares {self.spares.per_model}: must be ≥ 0 nodes per device model")
        if self.checkpoint_timeout_s <= 0:
            out.append(f"checkpoint timeout {self.checkpoint_timeout_s:g} s: must be > 0")
        return out


@dataclass
class _Recovery:
    """A gang between a failure and its next placement."""

    decided_at: float
    not_before: float
    avoid: frozenset[str]
    exclude: frozenset[str]
    near: dict[str, str]
    model: str


@dataclass
class _Move:
    """A job asked to checkpoint before it is moved off its nodes."""

    why: str
    requested_at: float
    request_id: int


def describe_health_event(node_name: str, event: common_pb2.HealthEvent) -> str:
    kind = common_pb2.HealthEventKind.Name(event.kind).removeprefix("HEALTH_EVENT_KIND_")
    severity = common_pb2.Severity.Name(event.severity).removeprefix("SEVERITY_")
    code = f" {event.code}" if event.code else ""
    injected = " (injected)" if event.injected else ""
    return f"device {event.device_index} on {node_name}: {kind}{code} {severity}{injected}: {event.message}"


def signal_to_dict(s: Signal) -> dict[str, Any]:
    return asdict(s)


def signal_from_dict(d: dict[str, Any]) -> Signal:
    from scheduler.reliability.signals import Severity

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


def _seconds(ts: Any) -> float:
    return float(ts.seconds + ts.nanos * 1e-9)


def _device_name(node: str, index: int) -> str:
    return f"{node}/{index}"


class FaultTolerance:
    def __init__(self, cp: ControlPlane, config: FaultToleranceConfig | None = None) -> None:
        self.cp = cp
        self.config = config or FaultToleranceConfig()
        self.rates = FailureRates()
        self._history: dict[str, list[AttemptFailure]] = {}  # job -> its failures, oldest first
        self._failures: list[FailureRecord] = []  # hardware evidence for lemon detection
        self._lemon_cleared: dict[str, float] = {}  # node -> when an operator cleared it
        self._recent: dict[tuple[str, int], list[tuple[float, Signal]]] = {}
        self._recovering: dict[str, _Recovery] = {}
        self._moving: dict[str, _Move] = {}
        self._intervals: dict[str, IntervalPolicy] = {}
        self._last_request: dict[str, float] = {}  # job -> when a checkpoint was last asked for
        self._progress_at: dict[str, float] = {}  # workload -> last progress report
        self._request_seq = 0
        self._exposure_at: float | None = None

    # --- start-up ----------------------------------------------------------------------

    def load(self) -> None:
        cp, store = self.cp, self.cp.store
        book = cp.health
        for row in store.load_health():
            record = HealthRecord.from_dict(row["record"])
            if row["idx"] == NODE_INDEX:
                book.nodes[row["node_name"]] = record
            else:
                book.devices[(row["node_name"], int(row["idx"]))] = record
        for row in store.load_failures(since=cp.clock() - self.config.lemons.window_s * 4):
            signals = tuple(signal_from_dict(s) for s in row["signals"])
            self._history.setdefault(row["job_id"], []).append(
                AttemptFailure(
                    row["attempt"], signals, frozenset(row["hardware"]), row["hardware_healthy"], row["at"]
                )
            )
            if row["blame"] == Blame.HARDWARE:
                self._failures.append(
                    FailureRecord(
                        row["at"],
                        row["job_id"],
                        row["attempt"],
                        frozenset(row["nodes"]),
                        Blame.HARDWARE,
                        tuple(s.reason for s in signals),
                    )
                )
        cp._checkpoints = store.load_checkpoints()
        for name, record in book.nodes.items():
            if record.state is Health.QUARANTINED:
                cp.lemons[name] = self._evidence(name, cp.clock())
        self._sync_registry()
        now = cp.clock()
        for job in cp.jobs.values():
            if job.state is JobState.RECOVERING:
                # The backoff is not persisted: a restarted control plane re-places at once.
                self._recovering[job.id] = self._recovery_after(job, now, 0.0, frozenset(), frozenset())
            for attempt in job.attempts:
                for w in attempt.workers:
                    if w.phase.holds_devices and w.progress_step:
                        self._progress_at[w.workload_id] = now

    def _sync_registry(self) -> None:
        """The registry's per-device health (what placement reads) follows the book."""
        for rt in self.cp.nodes:
            for d in rt.record.devices:
                self._sync_device(rt.record.name, d.index)

    def _sync_device(self, node: str, index: int) -> None:
        state = self.cp.health.device_health(node, index)
        shown = "UNHEALTHY" if state is Health.QUARANTINED else state.value
        self.cp.nodes.set_device_health(node, index, shown)

    def _persist(self, node: str, index: int) -> None:
        book = self.cp.health
        record = book.node(node) if index == NODE_INDEX else book.device(node, index)
        self.cp.store.save_health(node, index, record.state.value, record.to_dict())

    def node_registered(self, rt: NodeRuntime) -> None:
        for d in rt.record.devices:
            self._sync_device(rt.record.name, d.index)

    # --- health --------------------------------------------------------------------------

    def on_health_event(self, rt: NodeRuntime, event: common_pb2.HealthEvent) -> None:
        cp, name, now = self.cp, rt.record.name, self.cp.clock()
        index = int(event.device_index)
        try:
            signal = classify(from_health_event(event))
        except ValueError as exc:
            cp.record_event(
                "health",
                f"health event from {name} ignored: {exc}",
                node_name=name,
                data={"device": index, "problem": str(exc)},
            )
            return
        cause = self._cause(event)
        cp.record_event(
            "health",
            describe_health_event(name, event),
            node_name=name,
            data={
                "device": index,
                "cause": cause,
                "blame": signal.blame.value,
                "severity": signal.severity.value,
                "component": signal.component.value,
                "early_warning": signal.early_warning,
                "action": signal.action,
            },
        )
        if event.kind == common_pb2.HEALTH_EVENT_KIND_RECOVERED:
            self._apply(name, cp.health.check_passed(name, index, now, event.message), [index], cause)
            return
        self._recent.setdefault((name, index), []).append((now, signal))
        entries = cp.health.observe(name, signal, now)
        self._apply(name, entries, [index], cause, signal)
        state = cp.health.device_health(name, index)
        observed = _seconds(event.observed_at) if event.HasField("observed_at") else now
        for job, attempt in self._attempts_on(name, index):
            if state in (Health.UNHEALTHY, Health.QUARANTINED) and signal.blame is Blame.HARDWARE:
                self.fail_attempt(
                    job, attempt, [signal], frozenset({name}), observed, cause, hardware_healthy=False
                )
            elif state is Health.SUSPECT and entries:
                self._warned(job, attempt, name, index, signal)

    def _cause(self, event: common_pb2.HealthEvent) -> str:
        kind = common_pb2.HealthEventKind.Name(event.kind).removeprefix("HEALTH_EVENT_KIND_").lower()
        if event.kind in (common_pb2.HEALTH_EVENT_KIND_XID, common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST):
            return f"xid:{event.code}" if event.code else kind
        return f"{kind}:{event.code}" if event.code else kind

    def _apply(
        self,
        node: str,
        entries: list[HistoryEntry],
        indices: list[int],
        cause: str,
        signal: Signal | None = None,
    ) -> None:
        """Persist, sync, log and act on the health changes one input made."""
        if not entries:
            return
        cp, book = self.cp, self.cp.health
        self._persist(node, NODE_INDEX)
        for index in indices:
            self._persist(node, index)
        rt = cp.nodes.get(node)
        for d in rt.record.devices if rt else []:
            self._sync_device(node, d.index)
        node_state = book.node(node).state
        for entry in entries:
            cp.record_event(
                "health",
                f"{node}: {entry.from_state} → {entry.to_state}: {entry.reason}",
                node_name=node,
                data={"from": entry.from_state, "to": entry.to_state, "reason": entry.reason, "cause": cause},
            )
        if node_state in (Health.UNHEALTHY, Health.QUARANTINED) and rt is not None and not rt.record.cordoned:
            why = f"auto-cordoned: node {node_state}: {entries[-1].reason}"
            cp.nodes.set_marks(node, cordoned=True, draining=rt.record.draining, reason=why)
            cp.record_event("node", f"node {node} {why}", node_name=node, data={"cause": cause})
        cp.kick()

    def _warned(self, job: JobRecord, attempt: AttemptRecord, node: str, index: int, signal: Signal) -> None:
        """A device of a running gang turned SUSPECT: checkpoint now, before it fails."""
        policy = self._interval(job)
        if policy is not None:
            policy.warn(_device_name(node, index), self.cp.clock())
        self.request(job, attempt, f"device {index} on {node} turned SUSPECT ({signal.reason})")

    def _attempts_on(self, node: str, index: int | None) -> list[tuple[JobRecord, AttemptRecord]]:
        out = []
        for job in self.cp.jobs.values():
            attempt = job.current_attempt
            if job.state.terminal or attempt is None or attempt.outcome:
                continue
            if any(
                w.node_name == node and w.phase.holds_devices and (index is None or index in w.device_indices)
                for w in attempt.workers
            ):
                out.append((job, attempt))
        return out

    def clear_health(self, name: str, index: int | None, reason: str) -> None:
        cp, now = self.cp, self.cp.clock()
        rt = cp.node(name)
        who = f"operator ({reason})" if reason else "operator"
        indices = [index] if index is not None else [d.index for d in rt.record.devices]
        entries: list[HistoryEntry] = []
        if index is None:
            entries += cp.health.clear(name, None, now, who)
            cp.lemons.pop(name, None)
            self._lemon_cleared[name] = now
        for i in indices:
            entries += cp.health.clear(name, i, now, who)
            self._recent.pop((name, i), None)
        self._apply(name, entries, indices, "operator")
        if not entries:
            cp.record_event("health", f"{name}: already HEALTHY; nothing to clear", node_name=name)

    # --- failures and recovery -------------------------------------------------------------

    def worker_failed(self, job: JobRecord, attempt: AttemptRecord, first: WorkerRecord, reason: str) -> None:
        """An attempt failed by a worker's exit: gather the evidence and decide."""
        now = self.cp.clock()
        if first.phase is WorkerPhase.FAILED_TO_START:
            # The shell's "cannot execute" status: the spec's command, the job's own fault.
            exit_signal = classify(Observation(Kind.EXIT, 127, message=reason))
        else:
            exit_signal = classify(from_worker_exit(first.exit_code or 0, first.signal or 0))
        signals = [exit_signal]
        for w in attempt.workers:
            for index in w.device_indices:
                signals += [
                    s for at, s in self._recent.get((w.node_name, index), []) if now - at <= SIGNAL_WINDOW_S
                ]
        healthy = all(
            self.cp.health.device_health(w.node_name, i) is Health.HEALTHY
            for w in attempt.workers
            for i in w.device_indices
        )
        observed = first.ended_at or now
        self.fail_attempt(
            job, attempt, signals, frozenset({first.node_name}), observed, reason, hardware_healthy=healthy
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
        failure = AttemptFailure(attempt.number, tuple(signals), hardware, hardware_healthy, now)
        history = [*self._history.get(job.id, []), failure]
        self._history[job.id] = history
        spec = cp.spec_of(job)
        implicated = frozenset(h for h in hardware if any(s.blame is Blame.HARDWARE for s in signals))
        decision = decide_recovery(
            history,
            restarts_used=job.restarts,
            hardware_restarts_used=job.hardware_restarts,
            max_restarts=spec.max_restarts,
            consecutive_failures=self._consecutive_failures(job, now),
            policy=self.config.recovery,
            implicated_nodes=implicated,
        )
        devices = sum(len(w.device_indices) for w in attempt.workers) or 1
        attempt.outcome = f"failed: {cause}"
        attempt.cause = cause
        attempt.blame = decision.blame.value
        attempt.failed_at = now
        attempt.detect_s = max(0.0, now - observed_at)
        attempt.lost_s = max(0.0, now - self._last_checkpoint_at(job, attempt))
        job.lost_device_s += attempt.lost_s * devices
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
        nodes = sorted({w.node_name for w in attempt.workers})
        cp.record_event(
            "failure",
            f"attempt {attempt.number} failed: {cause}; blame {decision.blame.value}; "
            f"{'restart in ' + format(decision.delay_s, '.3g') + ' s' if decision.restart else 'job FAILED'}",
            job_id=job.id,
            node_name=next(iter(sorted(hardware)), None),
            data={
                "cause": cause,
                "blame": decision.blame.value,
                "attempt": attempt.number,
                "action": "restart" if decision.restart else "fail",
                "nodes": nodes,
                "hardware": sorted(hardware),
                "signals": [s.reason for s in signals],
                "lost_s": attempt.lost_s,
                "backoff_s": decision.delay_s,
                "detect_s": attempt.detect_s,
                "observed_at": observed_at,
            },
        )
        self._account_failure(job, attempt, decision)
        self._moving.pop(job.id, None)
        if decision.restart:
            if decision.counts_as_restart:
                job.restarts += 1
            else:
                job.hardware_restarts += 1
            cp.transition(job, JobState.RECOVERING, decision.reason)
            # Avoid every node the job has failed on so far, not just the last: each retry on
            # fresh hardware is evidence blame can count (placement falls back if none is left).
            avoid = (
                decision.avoid_nodes | {n for f in history for n in f.hardware}
                if decision.avoid_nodes
                else frozenset()
            )
            self._recovering[job.id] = self._recovery_after(
                job, now, decision.delay_s, frozenset(avoid), decision.exclude_nodes
            )
        else:
            cp.transition(job, JobState.FAILED, decision.reason)
        cp.stop_workers(attempt, f"gang failed: {cause}")
        if decision.blame is Blame.HARDWARE:
            self._note_hardware_failure(job, attempt, implicated or hardware, signals, now)
        cp.kick()

    def _recovery_after(
        self, job: JobRecord, now: float, delay_s: float, avoid: frozenset[str], exclude: frozenset[str]
    ) -> _Recovery:
        attempt = job.current_attempt
        near: dict[str, str] = {}
        models: Counter[str] = Counter()
        for w in attempt.workers if attempt else []:
            rt = self.cp.nodes.get(w.node_name)
            if rt is None:
                continue
            if not near or w.node_name in exclude:
                near = dict(rt.record.labels)
            for i in w.device_indices:
                d = rt.devices_by_index.get(i)
                if d is not None:
                    models[d.model] += 1
        model = models.most_common(1)[0][0] if models else ""
        return _Recovery(now, now + delay_s, avoid, exclude, near, model)

    def _consecutive_failures(self, job: JobRecord, now: float) -> int:
        count = 1
        for attempt in reversed(job.attempts[:-1]):
            if not attempt.blame or (attempt.failed_at or now) - attempt.started_at >= BACKOFF_RESET_S:
                break
            count += 1
        return count

    def _last_checkpoint_at(self, job: JobRecord, attempt: AttemptRecord) -> float:
        """The work since this moment is lost: the attempt's last complete checkpoint, or its
        start (what the attempt did before its first checkpoint is redone)."""
        running_since = min(
            (w.started_at for w in attempt.workers if w.started_at), default=attempt.started_at
        )
        done = [c.at for c in self.cp.checkpoints_of(job.id) if c.complete and c.attempt == attempt.number]
        return max([running_since, *done])

    def _account_failure(self, job: JobRecord, attempt: AttemptRecord, decision: RecoveryDecision) -> None:
        if decision.blame is not Blame.HARDWARE:
            return
        policy = self._interval(job)
        warned = int(policy is not None and policy.suspects(self.cp.clock()) > 0)
        model, devices = self._gang_of(job, attempt)
        if model:
            self.rates.observe(model, devices, 0.0, failures=1, warned=warned)

    def _note_hardware_failure(
        self, job: JobRecord, attempt: AttemptRecord, nodes: frozenset[str], signals: list[Signal], now: float
    ) -> None:
        reasons = tuple(s.reason for s in signals if s.blame is Blame.HARDWARE) or tuple(
            s.reason for s in signals
        )
        self._failures.append(FailureRecord(now, job.id, attempt.number, nodes, Blame.HARDWARE, reasons))
        horizon = now - self.config.lemons.window_s
        self._failures = [f for f in self._failures if f.at >= horizon]
        for verdict in find_lemons(self._evidence_pool(), now, self.config.lemons):
            if verdict.node in self.cp.lemons:
                continue
            self.cp.lemons[verdict.node] = verdict
            summary = (
                f"lemon node: {len(verdict.evidence)} hardware failures across {len(verdict.jobs)} jobs "
                f"in {self.config.lemons.window_s / 86400:g} days"
            )
            entries = self.cp.health.quarantine_node(verdict.node, now, summary)
            self.cp.record_event(
                "health",
                f"node {verdict.node} quarantined: {summary}",
                node_name=verdict.node,
                data={"cause": "lemon", "evidence": verdict.describe()},
            )
            rt = self.cp.nodes.get(verdict.node)
            self._apply(verdict.node, entries, [d.index for d in rt.record.devices] if rt else [], "lemon")

    def _evidence_pool(self) -> list[FailureRecord]:
        return [f for f in self._failures if all(f.at > self._lemon_cleared.get(n, -1.0) for n in f.nodes)]

    def _evidence(self, node: str, now: float) -> Any:
        from scheduler.reliability.lemon import LemonVerdict

        mine = tuple(f for f in self._evidence_pool() if node in f.nodes)
        return LemonVerdict(node, mine)

    def node_lost(self, node: str, why: str, silent_s: float) -> None:
        """A node gone past its grace: every gang with a worker there failed on hardware, at
        the moment it was last heard from."""
        signal = classify(Observation(Kind.HEARTBEAT_LOST, message=why))
        for job, attempt in self._attempts_on(node, None):
            self.fail_attempt(
                job,
                attempt,
                [signal],
                frozenset({node}),
                self.cp.clock() - silent_s,
                f"heartbeat lost: {why}",
                hardware_healthy=False,
            )

    # --- placement of recovering gangs ------------------------------------------------------

    def held_back(self) -> frozenset[str]:
        """Refresh the hot spare pool and return it: the normal pass must not use it."""
        cp = self.cp
        if self.config.spares.per_model <= 0:
            cp.spares = frozenset()
            return cp.spares
        cp.spares = choose_spares(self._candidates(), cp.spares, self.config.spares)
        return cp.spares

    def _candidates(self) -> list[SpareCandidate]:
        cp = self.cp
        busy = cp.active_workers_by_node()
        out = []
        for rt in cp.nodes:
            r = rt.record
            if not r.devices:
                continue
            model = Counter(d.model for d in r.devices).most_common(1)[0][0]
            healthy = cp.health.node(r.name).state is Health.HEALTHY and all(
                cp.health.device_health(r.name, d.index) is Health.HEALTHY for d in r.devices
            )
            out.append(
                SpareCandidate(
                    node=r.name,
                    model=model,
                    devices_total=len(r.devices),
                    idle=not busy.get(r.name),
                    healthy=healthy,
                    schedulable=rt.schedulable,
                    labels=dict(r.labels),
                )
            )
        return out

    def place_recovering(self) -> None:
        cp, now = self.cp, self.cp.clock()
        for job_id, rec in list(self._recovering.items()):
            job = cp.jobs.get(job_id)
            if job is None or job.state is not JobState.RECOVERING:
                del self._recovering[job_id]
                continue
            if now < rec.not_before:
                continue
            spec = cp.spec_of(job)
            decision, used = self._place(job, spec, rec)
            del self._recovering[job_id]
            if decision is None:
                cp.transition(job, JobState.PENDING, f"waiting for devices after a failure: {used}")
                continue
            spares = sorted({s.node_name for s in decision.slots or ()} & cp.spares)
            cp.start_attempt(job, spec, decision)
            cp.record_event(
                "recovery",
                f"attempt {len(job.attempts)} placed {now - rec.decided_at:.2f} s after the failure"
                + (f" on hot spare {', '.join(spares)}" if spares else "")
                + (
                    f", resuming from step {job.attempts[-1].resumed_from_step}"
                    if job.attempts[-1].resume_path
                    else ""
                ),
                job_id=job.id,
                data={
                    "attempt": len(job.attempts),
                    "spares": spares,
                    "resumed_from_step": job.attempts[-1].resumed_from_step,
                    "waited_s": now - rec.decided_at,
                },
            )

    def _place(
        self, job: JobRecord, spec: job_pb2.JobSpec, rec: _Recovery
    ) -> tuple[PlacementDecision | None, str]:
        """Hot spares and the gang's surviving nodes first (close to where it ran), then any
        node but those to avoid, then any node but the failed ones."""
        cp = self.cp
        request = placement_request(job.id, spec)
        previous = {w.node_name for w in job.current_attempt.workers} if job.current_attempt else set()
        spares = rank_spares(cp.spares, self._candidates(), rec.model, rec.near)
        allowed = [
            (previous - rec.avoid - rec.exclude) | set(spares),
            None,  # everything but avoid/exclude
        ]
        why = "no devices"
        live = [
            j
            for j in cp.jobs.values()
            if not j.state.terminal or any(w.phase.holds_devices for a in j.attempts for w in a.workers)
        ]
        specs = {j.id: cp.spec_of(j) for j in live}
        for names, skip in ((allowed[0], rec.exclude), (None, rec.avoid | rec.exclude), (None, rec.exclude)):
            nodes = [
                rt
                for rt in cp.nodes
                if rt.record.name not in skip and (names is None or rt.record.name in names)
            ]
            if not nodes:
                continue
            inputs = pass_inputs(nodes, live, specs, cp.clock())
            decision = place(request, inputs.cluster, cp.live_policy(inputs), cp.speed_of)
            if decision.placed:
                return decision, ""
            why = decision.reason
        return None, why

    # --- checkpoints ---------------------------------------------------------------------

    def next_request_id(self) -> int:
        self._request_seq += 1
        return self._request_seq

    def request(self, job: JobRecord, attempt: AttemptRecord, reason: str) -> int:
        request_id = self.next_request_id()
        self._last_request[job.id] = self.cp.clock()
        self.cp.request_checkpoint(attempt, reason, request_id)
        return request_id

    def uses_sdk(self, job: JobRecord) -> bool:
        return bool(self.cp.checkpoints_of(job.id)) or any(
            w.progress_step for a in job.attempts for w in a.workers
        )

    def move(self, job: JobRecord, attempt: AttemptRecord, why: str) -> None:
        """Move a job off its nodes with a fresh checkpoint: ask, wait (CHECKPOINTING) until one
        arrives or the timeout passes, then requeue. A job that never spoke to the SDK gets the
        request and its stop's grace period, as before."""
        cp = self.cp
        if job.state is JobState.RUNNING and self.uses_sdk(job):
            cp.transition(job, JobState.CHECKPOINTING, f"checkpointing before the move: {why}")
            request_id = self.request(job, attempt, why)
            self._moving[job.id] = _Move(why, cp.clock(), request_id)
            return
        if job.state is JobState.CHECKPOINTING and job.id in self._moving:
            return  # already on its way
        cp.request_checkpoint(attempt, why, self.next_request_id())
        cp.requeue(job, attempt, why)

    def on_checkpoint(self, report: agent_pb2.CheckpointReport) -> None:
        cp = self.cp
        entry = cp.workers.get(report.workload_id)
        if entry is None:
            log.warning("checkpoint for unknown workload %s ignored", report.workload_id)
            return
        job, attempt, w = entry
        at = _seconds(report.at) if report.HasField("at") else cp.clock()
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
        del rows[:-50]
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
        policy = self._interval(job)
        if policy is not None:
            policy.report_checkpoint(record.duration_s)
        move = self._moving.get(job.id)
        if move is not None and job.current_attempt is attempt and at >= move.requested_at - 1.0:
            del self._moving[job.id]
            if not attempt.outcome:
                cp.requeue(job, attempt, f"{move.why} (after a checkpoint at step {record.step})")

    def resume_point(self, job: JobRecord) -> CheckpointRecord | None:
        """The checkpoint the next attempt starts from: the newest complete one, rank 0's when
        ranks differ (rank 0 writes the shared state in the usual recipes)."""
        complete = [c for c in self.cp.checkpoints_of(job.id) if c.complete]
        if not complete:
            return None
        return max(complete, key=lambda c: (c.step, c.rank == 0, c.at))

    def on_progress(self, w: WorkerRecord) -> None:
        self._progress_at[w.workload_id] = self.cp.clock()

    def on_running(self, job: JobRecord, attempt: AttemptRecord) -> None:
        """Every worker of a new attempt runs: close the books on the failure before it."""
        if len(job.attempts) < 2:
            return
        previous = job.attempts[-2]
        if previous.failed_at is None or previous.restart_s:
            return
        now = self.cp.clock()
        previous.restart_s = max(0.0, now - previous.failed_at)
        devices = sum(len(w.device_indices) for w in attempt.workers) or 1
        job.lost_device_s += previous.restart_s * devices
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

    # --- the interval ------------------------------------------------------------------------

    def _gang_of(self, job: JobRecord, attempt: AttemptRecord | None) -> tuple[str, int]:
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

    def _interval(self, job: JobRecord) -> IntervalPolicy | None:
        policy = self._intervals.get(job.id)
        if policy is not None:
            return policy
        spec = self.cp.spec_of(job)
        if spec.checkpoint_interval_s:
            policy = IntervalPolicy.fixed(spec.checkpoint_interval_s)
        elif spec.checkpoint_interval_auto:
            model, devices = self._gang_of(job, job.current_attempt)
            if not model:
                return None
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
        policy = self._interval(job)
        return policy.interval_s(self.cp.clock()) if policy is not None else 0.0

    def interval_text(self, job: JobRecord) -> str:
        if job.state.terminal:
            return ""
        policy = self._interval(job)
        return policy.why(self.cp.clock()) if policy is not None else ""

    # --- the once-a-second tick ------------------------------------------------------------

    def tick(self) -> None:
        now = self.cp.clock()
        self._account_exposure(now)
        for job in list(self.cp.jobs.values()):
            attempt = job.current_attempt
            if job.state not in _RUNNING_STATES or attempt is None or attempt.outcome:
                continue
            self._check_hang(job, attempt, now)
            if attempt.outcome:
                continue
            self._check_move_timeout(job, attempt, now)
            if job.state is JobState.RUNNING:
                self._periodic_checkpoint(job, attempt, now)
        for key in [
            k for k, seen in self._recent.items() if all(now - at > SIGNAL_WINDOW_S for at, _ in seen)
        ]:
            del self._recent[key]

    def _account_exposure(self, now: float) -> None:
        """Device-hours of running gangs: the denominator of every failure rate."""
        if self._exposure_at is None:
            self._exposure_at = now
            return
        hours = (now - self._exposure_at) / HOUR_S
        self._exposure_at = now
        if hours <= 0:
            return
        for job in self.cp.jobs.values():
            if job.state in _RUNNING_STATES:
                model, devices = self._gang_of(job, job.current_attempt)
                if model:
                    self.rates.observe(model, devices, hours)

    def _check_hang(self, job: JobRecord, attempt: AttemptRecord, now: float) -> None:
        timeout = self.cp.spec_of(job).hang_timeout_s
        if not timeout:
            return
        heard = [
            self._progress_at[w.workload_id] for w in attempt.workers if w.workload_id in self._progress_at
        ]
        if not heard:
            return  # never reported progress: nothing to time out against
        silent = now - max(heard)
        if silent < timeout:
            return
        signal = classify(
            Observation(
                Kind.HANG,
                value=max(silent, self._hang_threshold()),
                message=f"no progress for {silent:.0f} s",
            )
        )
        nodes = frozenset(w.node_name for w in attempt.workers)
        healthy = all(
            self.cp.health.device_health(w.node_name, i) is Health.HEALTHY
            for w in attempt.workers
            for i in w.device_indices
        )
        self.fail_attempt(
            job,
            attempt,
            [signal],
            nodes,
            now - silent + timeout,
            f"hang: no progress for {silent:.0f} s",
            hardware_healthy=healthy,
        )

    @staticmethod
    def _hang_threshold() -> float:
        # The job's hang_timeout is the user's judgement; the table's threshold (the NCCL
        # default) only says when silence is alarming for a job that set none.
        from scheduler.reliability.signals import packaged_table

        entry = packaged_table().observations[Kind.HANG]
        return entry.threshold or 0.0

    def _check_move_timeout(self, job: JobRecord, attempt: AttemptRecord, now: float) -> None:
        move = self._moving.get(job.id)
        if move is None or now - move.requested_at < self.config.checkpoint_timeout_s:
            return
        del self._moving[job.id]
        self.cp.requeue(
            job, attempt, f"{move.why} (no checkpoint within {self.config.checkpoint_timeout_s:g} s)"
        )

    def _periodic_checkpoint(self, job: JobRecord, attempt: AttemptRecord, now: float) -> None:
        interval = self.interval_s(job)
        if not interval:
            return
        running_since = min((w.started_at for w in attempt.workers if w.started_at), default=None)
        if running_since is None:
            return
        last = max(
            [
                running_since,
                self._last_request.get(job.id, 0.0),
                *(c.at for c in self.cp.checkpoints_of(job.id) if c.complete and c.attempt == attempt.number),
            ]
        )
        if now - last >= interval:
            self.request(job, attempt, f"periodic: every {interval:.3g} s")

    def forget(self, job_id: str) -> None:
        """A job reached a terminal state: drop the per-job working state."""
        self._recovering.pop(job_id, None)
        self._moving.pop(job_id, None)
        self._intervals.pop(job_id, None)
        self._last_request.pop(job_id, None)


__all__ = ["FaultTolerance", "FaultToleranceConfig", "Severity", "describe_health_event"]
