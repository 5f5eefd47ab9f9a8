"""The control plane's core: jobs, their attempts and workers, and placement.

Runs on one asyncio loop, so state changes are serialised without locks. Decisions come
from pure functions (placement, lifecycle); this class applies them: it writes the store,
appends to the event log and sends commands down agent streams. What agents report comes in
through agent_reports.py; operators' node actions through node_ops.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from corral.v1 import agent_pb2, common_pb2, job_pb2
from google.protobuf import json_format

from scheduler.catalog import DeviceCatalog
from scheduler.jobstate import JobState, check_transition
from scheduler.lifecycle import Verdict, describe_exit, judge_attempt
from scheduler.metrics.runtime import ControlPlaneStats
from scheduler.model import (
    AttemptRecord,
    CheckpointRecord,
    JobRecord,
    WorkerPhase,
    WorkerRecord,
    workload_id,
)
from scheduler.placement.engine import PlacementDecision
from scheduler.placement.from_spec import placement_request
from scheduler.placement.policies import DEFAULT_POLICY, Policy, make_policy
from scheduler.placement.speedup import RateBaseline
from scheduler.placement.taskmix import TaskMix
from scheduler.power.domains import PowerDomains
from scheduler.queueing import Preemption, QueueSet, queue_usage, schedule_pass
from scheduler.queueing.usage import QueueUsage
from scheduler.reliability.health_state import HealthBook
from scheduler.reliability.lemon import LemonVerdict
from scheduler.reliability.liveness import LivenessConfig, LivenessKind, NodeLiveness, liveness_actions
from scheduler.server.events import EventBus
from scheduler.server.faults import FaultTolerance, FaultToleranceConfig
from scheduler.server.ingest import LagTracker
from scheduler.server.logstore import LogStore
from scheduler.server.nodes import NodeRegistry, NodeRuntime
from scheduler.server.power_loop import PowerLoop
from scheduler.server.power_runtime import PowerRuntime
from scheduler.server.scheduling import PassInputs, catalog_speed, pass_inputs, task_mix, usage_inputs
from scheduler.store import Store

log = logging.getLogger("corral.server")

_PHASE = common_pb2.WorkloadPhase
MASTER_PORT_BASE = 29500
MASTER_PORT_RANGE = 1000
LIVENESS_PERIOD_S = 0.25
# Scheduling passes run on the loop that also takes agents' reports and serves the dashboard, and
# at 10,000 nodes one pass costs about half a second (benchmarks/dashboard.py). A pass runs when
# something changed (a kick), at most once per PASS_SPACING × its last cost so that changes
# arriving all the time leave the loop time for the rest; with no change it still runs every
# PASS_IDLE_PERIOD_S (or PASS_IDLE_FACTOR × its cost) for what only time changes: backoffs,
# power headroom, reservations.
PASS_SPACING = 2.0
PASS_IDLE_PERIOD_S = 1.0
PASS_IDLE_FACTOR = 20.0


class NotFound(Exception):
    pass


class FailedPrecondition(Exception):
    pass


class ControlPlane:
    def __init__(
        self,
        store: Store,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        telemetry_interval_s: float = 1.0,
        stop_grace_s: float = 30.0,
        queues: QueueSet | None = None,
        policy: str = DEFAULT_POLICY,
        catalog: DeviceCatalog | None = None,
        liveness: LivenessConfig | None = None,
        fault_tolerance: FaultToleranceConfig | None = None,
        power: PowerDomains | None = None,
    ) -> None:
        self.store = store
        self.stats = ControlPlaneStats(store.engine)  # gRPC calls and store latency, for /metrics
        self.data_dir = data_dir
        self.clock = clock
        self.telemetry_interval_s = telemetry_interval_s
        self.stop_grace_s = stop_grace_s
        self.nodes = NodeRegistry(store)
        self.jobs: dict[str, JobRecord] = {}
        self.workers: dict[str, tuple[JobRecord, AttemptRecord, WorkerRecord]] = {}
        self.logs = LogStore(data_dir / "logs")
        self.bus = EventBus()
        self.lag = LagTracker()
        self.started_at = clock()
        self.queues = queues or QueueSet.default()
        self.policy_name = policy
        make_policy(policy)  # refuse an unknown name now, not at the first pass
        self.speed_of = catalog_speed(catalog or DeviceCatalog.load())
        self._policy: tuple[TaskMix, Policy] | None = None
        self._specs: dict[str, job_pb2.JobSpec] = {}
        # pending job -> the jobs preempted for it
        self._made_room_for: dict[str, set[str]] = {}
        # Per-model mean of the rates jobs declare, so a model ranks first only for jobs that
        # gain more there than the typical job (Gavel); the simulator keeps one the same way.
        self.rate_baseline = RateBaseline()
        self.liveness = liveness or LivenessConfig()
        self._lost_nodes: set[str] = set()  # declared lost since they went away
        self._liveness_checked_at = 0.0
        self._ticked_at = 0.0
        self._kick = asyncio.Event()
        self._pass_wanted = True  # something changed since the last scheduling pass
        self._pass_ran_at = 0.0  # monotonic
        self._pass_cost_s = 0.0
        # Terminal jobs seen to hold no devices: they never will again, so the per-pass walks
        # over live work skip them (a long-lived store holds far more finished jobs than live).
        self._settled: set[str] = set()
        self._loop_task: asyncio.Task[None] | None = None
        # Fault tolerance: health of every node and device, lemon nodes with their evidence,
        # the hot spare pool, and the checkpoints workers reported (newest last per job).
        self.health = HealthBook()
        self.lemons: dict[str, LemonVerdict] = {}
        self.spares: frozenset[str] = frozenset()
        self._checkpoints: dict[str, list[CheckpointRecord]] = {}
        self.ft = FaultTolerance(self, fault_tolerance)
        # Power budgets (`--power-topology`): the state `corral power` shows, and the loop that
        # caps devices and gates admission. None: power is not managed.
        self.power = PowerRuntime(power) if power is not None else None
        self.power_loop = PowerLoop(self, self.power) if self.power is not None else None

    # --- lifecycle ---------------------------------------------------------------------

    def load(self) -> None:
        self.nodes.load()
        for job in self.store.load_jobs():
            self._index(job)
            if not job.state.terminal:
                self.rate_baseline.observe(placement_request(job.id, self.spec_of(job)))
        self.ft.load()
        log.info("loaded %d nodes and %d jobs from %s", len(self.nodes), len(self.jobs), self.store.url)

    def _index(self, job: JobRecord) -> None:
        self.jobs[job.id] = job
        for attempt in job.attempts:
            for w in attempt.workers:
                self.workers[w.workload_id] = (job, attempt, w)

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._scheduling_loop())

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    def kick(self) -> None:
        self._pass_wanted = True
        self._kick.set()

    async def _scheduling_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=LIVENESS_PERIOD_S)
            self._kick.clear()
            try:
                # Every wake-up schedules, but kicks come with every worker report: liveness
                # walks all nodes and workers, so it runs on its own period (a quarter second
                # keeps a dead node's detection within its timeout + 0.25 s), and the fault
                # tolerance tick (hangs, checkpoints due) once a second.
                now = self.clock()
                if now - self._liveness_checked_at >= LIVENESS_PERIOD_S:
                    self._liveness_checked_at = now
                    self.check_liveness()
                if now - self._ticked_at >= 1.0:
                    self._ticked_at = now
                    self.ft.tick()
                if self.power_loop is not None:
                    self.power_loop.tick()  # on its own period
                self.schedule()
            except Exception:  # one bad tick must not stop scheduling for good
                log.exception("scheduling pass failed")

    # --- liveness ----------------------------------------------------------------------

    def check_liveness(self) -> None:
        """Close streams that went silent; move the gangs off nodes gone past their grace."""
        holding = self.attempts_by_node()
        view = [
            NodeLiveness(
                name=rt.record.name,
                connected=rt.session is not None,
                last_heard=rt.last_heard,
                holds_work=rt.record.name in holding,
                lost_declared=rt.record.name in self._lost_nodes,
            )
            for rt in self.nodes
        ]
        for action in liveness_actions(view, self.clock(), self.liveness):
            rt = self.node(action.node)
            self.record_event(
                "node", action.reason, node_name=action.node, data={"silent_s": action.silent_s}
            )
            if action.kind is LivenessKind.CLOSE_STREAM and rt.session is not None:
                rt.session.close()  # the stream's end marks the node disconnected
            elif action.kind is LivenessKind.NODE_LOST:
                self._lost_nodes.add(action.node)
                self.ft.node_lost(action.node, action.reason, action.silent_s, holding.get(action.node, []))

    def node_back(self, name: str) -> None:
        self._lost_nodes.discard(name)

    # --- fault tolerance: queries ------------------------------------------------------

    def checkpoints_of(self, job_id: str) -> list[CheckpointRecord]:
        return list(self._checkpoints.get(job_id, []))

    def interval_text(self, job: JobRecord) -> str:
        """The checkpoint interval in force for the job and why, in one line ("" if none)."""
        return self.ft.interval_text(job)

    def clear_health(self, name: str, device_index: int | None, reason: str) -> None:
        """An operator's clear: the node (device_index None: and all its devices) back to HEALTHY."""
        self.ft.clear_health(name, device_index, reason)

    # --- events ------------------------------------------------------------------------

    def record_event(self, kind: str, message: str, **fields: Any) -> None:
        row = self.store.append_event(kind, message, at=self.clock(), **fields)
        self.bus.publish(row)

    def transition(self, job: JobRecord, new: JobState, reason: str) -> None:
        check_transition(job.id, job.state, new)
        job.state = new
        job.reason = reason
        job.updated_at = self.clock()
        self.store.update_job(job)
        self.record_event("state", reason, job_id=job.id, state=new.value)
        if new.terminal:
            self.ft.finished(job)

    # --- jobs API ----------------------------------------------------------------------

    def submit(self, spec: job_pb2.JobSpec, owner: str) -> JobRecord:
        """`spec` is already validated and normalised (scheduler.spec)."""
        now = self.clock()
        job = JobRecord(
            id=f"j-{secrets.token_hex(4)}",
            name=spec.name,
            spec=json_format.MessageToDict(spec, preserving_proto_field_name=True),
            state=JobState.PENDING,
            created_at=now,
            updated_at=now,
            owner=owner,
            reason="waiting for placement",
            queue=spec.queue or "default",
            priority=spec.priority,
        )
        self.store.insert_job(job)
        self._index(job)
        self.rate_baseline.observe(placement_request(job.id, spec))
        self.record_event("state", f"submitted by {owner or 'unknown'}", job_id=job.id, state=job.state.value)
        self.kick()
        return job

    def node(self, name: str) -> NodeRuntime:
        rt = self.nodes.get(name)
        if rt is None:
            raise NotFound(f"no node {name!r} (list them with `corral nodes`)")
        return rt

    def get_job(self, job_id: str) -> JobRecord:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r} (list them with `corral jobs`)")
        return job

    def cancel(self, job_id: str, reason: str) -> JobRecord:
        job = self.get_job(job_id)
        if job.state.terminal:
            return job
        attempt = job.current_attempt
        if attempt is not None and not attempt.outcome:
            self._decide_attempt(attempt, "cancelled")
        self.transition(job, JobState.CANCELLED, reason or "cancelled by user")
        if attempt is not None:
            self.stop_workers(attempt, "job cancelled")
        return job

    def spec_of(self, job: JobRecord) -> job_pb2.JobSpec:
        """The job's spec as a message, parsed once: a spec never changes after submit, and
        the loops that read it (scheduling passes, the fault-tolerance tick) run every second.
        Callers must not change it."""
        spec = self._specs.get(job.id)
        if spec is None:
            spec = self._specs[job.id] = json_format.ParseDict(job.spec, job_pb2.JobSpec())
        return spec

    # --- scheduling --------------------------------------------------------------------

    def inputs(
        self, held_back: frozenset[str] = frozenset(), nodes: Iterable[NodeRuntime] | None = None
    ) -> PassInputs:
        """A pass's snapshot: every node (or just `nodes`), less what unfinished work holds."""
        live = {j.id: j for j in self.live_jobs()}
        for gone in self._specs.keys() - live.keys():
            del self._specs[gone]
        specs = {job_id: self.spec_of(job) for job_id, job in live.items()}
        for job_id in [j for j in self._made_room_for if self.jobs[j].state is not JobState.PENDING]:
            del self._made_room_for[job_id]
        stopping = {
            job_id
            for job_id, victims in self._made_room_for.items()
            if any(_holds_devices(self.jobs[v]) for v in victims)
        }
        return pass_inputs(
            self.nodes if nodes is None else nodes,
            live.values(),
            specs,
            self.clock(),
            set(self._made_room_for),
            stopping,
            held_back,
        )

    def live_policy(self, inputs: PassInputs) -> Policy:
        """The policy scores against the mix of unfinished jobs' requests; rebuilt only when
        that mix changes, since its fragmentation cache is per mix."""
        mix = task_mix(inputs.requests.values())
        if self._policy is None or self._policy[0] != mix:
            self._policy = (mix, make_policy(self.policy_name, mix))
        return self._policy[1]

    def schedule(self) -> int:
        """One scheduling pass: place what fits, preempt what must make way, and tell every
        other pending job why it waits."""
        held_back = self.ft.held_back()
        self.ft.place_recovering()
        if not any(j.state is JobState.PENDING for j in self.jobs.values()):
            return 0
        since = time.monotonic() - self._pass_ran_at
        if self._pass_wanted:
            if since < PASS_SPACING * self._pass_cost_s:
                return 0
        elif since < max(PASS_IDLE_PERIOD_S, PASS_IDLE_FACTOR * self._pass_cost_s):
            return 0
        self._pass_wanted = False
        started = time.perf_counter()
        inputs = self.inputs(held_back)
        result = schedule_pass(
            inputs.pending,
            inputs.running,
            inputs.cluster,
            self.queues,
            self.live_policy(inputs),
            self.speed_of,
            self.clock(),
            baseline=self.rate_baseline,
            power=self.power_loop.gate() if self.power_loop is not None else None,
        )
        for job_id, decision in result.placed:
            job = self.jobs[job_id]
            self.start_attempt(job, self.spec_of(job), decision)
        for preemption in result.preemptions:
            self._preempt(preemption)
            self._made_room_for.setdefault(preemption.for_job_id, set()).add(preemption.victim_job_id)
        for job_id, reason in result.waiting.items():
            job = self.jobs[job_id]
            if job.state is JobState.PENDING and job.reason != reason:
                job.reason = reason
                self.store.update_job(job)
        self._pass_cost_s = time.perf_counter() - started
        self._pass_ran_at = time.monotonic()
        if result.placed or result.preemptions:
            self._pass_wanted = True  # what it changed may let more in
        self.stats.scheduling_pass(self._pass_cost_s, len(result.placed))
        return len(result.placed)

    def _preempt(self, p: Preemption) -> None:
        job = self.jobs[p.victim_job_id]
        attempt = job.current_attempt
        if job.state.terminal or attempt is None or attempt.outcome:
            return
        if p.checkpoint_first:
            self.ft.move(job, attempt, p.reason)
        else:
            self.requeue(job, attempt, p.reason)

    def request_checkpoint(self, attempt: AttemptRecord, reason: str, request_id: int = 0) -> None:
        """Ask each worker to checkpoint: its agent relays it by SIGUSR1 and the SDK's channel."""
        for w in attempt.workers:
            rt = self.nodes.get(w.node_name)
            if w.phase.holds_devices and rt is not None and rt.session is not None:
                rt.session.send(
                    checkpoint=agent_pb2.RequestCheckpoint(
                        workload_id=w.workload_id, reason=reason, request_id=request_id
                    )
                )

    def queue_usage(self) -> list[QueueUsage]:
        running, cluster, pending = usage_inputs(self.nodes, self.live_jobs(), self.spec_of)
        return queue_usage(running, self.queues, cluster, pending)

    def _free_master_port(self) -> int:
        used = {
            a.master_port
            for j in self.jobs.values()
            if not j.state.terminal
            for a in j.attempts
            if not a.all_exited
        }
        return next(p for p in range(MASTER_PORT_BASE, MASTER_PORT_BASE + MASTER_PORT_RANGE) if p not in used)

    def start_attempt(self, job: JobRecord, spec: job_pb2.JobSpec, decision: PlacementDecision) -> None:
        assert decision.slots is not None
        now = self.clock()
        number = len(job.attempts) + 1
        rank0 = self.nodes.get(decision.slots[0].node_name)
        resume = self.ft.resume_point(job)
        attempt = AttemptRecord(
            job_id=job.id,
            number=number,
            started_at=now,
            master_addr=rank0.record.address if rank0 else "127.0.0.1",
            master_port=self._free_master_port(),
            resumed_from_step=resume.step if resume else 0,
            resume_path=resume.path if resume else "",
        )
        attempt.workers = [
            WorkerRecord(
                workload_id=workload_id(job.id, number, s.rank),
                job_id=job.id,
                attempt=number,
                rank=s.rank,
                node_name=s.node_name,
                device_indices=list(s.device_indices),
            )
            for s in decision.slots
        ]
        check_transition(job.id, job.state, JobState.PLACED)
        job.attempts.append(attempt)
        job.state = JobState.PLACED
        where = ", ".join(f"rank {s.rank}→{s.node_name}{list(s.device_indices)}" for s in decision.slots)
        job.reason = f"attempt {number} placed: {where}"
        job.updated_at = now
        self.store.insert_attempt(job, attempt)
        self._index(job)
        self.record_event("state", job.reason, job_id=job.id, state=JobState.PLACED.value)
        for w in attempt.workers:
            self.send_start(job, spec, attempt, w)

    def _start_command(
        self, job: JobRecord, spec: job_pb2.JobSpec, attempt: AttemptRecord, w: WorkerRecord
    ) -> agent_pb2.StartWorkload:
        local = [x for x in attempt.workers if x.node_name == w.node_name]
        return agent_pb2.StartWorkload(
            workload_id=w.workload_id,
            job_id=job.id,
            attempt=attempt.number,
            rank=w.rank,
            local_rank=local.index(w),
            world_size=len(attempt.workers),
            local_world_size=len(local),
            device_indices=w.device_indices,
            command=[*spec.command, *spec.args],
            env=dict(spec.env),
            working_dir=spec.working_dir,
            checkpoint_dir=spec.checkpoint_dir,
            master_addr=attempt.master_addr,
            master_port=attempt.master_port,
            resume_path=attempt.resume_path,
            resume_step=attempt.resumed_from_step,
            checkpoint_interval_s=self.ft.interval_s(job),
        )

    def send_start(
        self, job: JobRecord, spec: job_pb2.JobSpec, attempt: AttemptRecord, w: WorkerRecord
    ) -> None:
        rt = self.nodes.get(w.node_name)
        if rt is not None and rt.session is not None:
            rt.session.send(start=self._start_command(job, spec, attempt, w))
        # Otherwise the node reconnects and reconciliation resends the start.

    def stop_workers(self, attempt: AttemptRecord, reason: str) -> None:
        for w in attempt.workers:
            if not w.phase.holds_devices:
                continue
            rt = self.nodes.get(w.node_name)
            if rt is not None and rt.session is not None:
                rt.session.send(
                    stop=agent_pb2.StopWorkload(
                        workload_id=w.workload_id, grace_period_s=self.stop_grace_s, reason=reason
                    )
                )

    def requeue(self, job: JobRecord, attempt: AttemptRecord, why: str) -> None:
        """Back to the queue without spending a restart: the platform moved it, the job did not fail."""
        self._decide_attempt(attempt, f"preempted: {why}")
        self.transition(job, JobState.PENDING, f"requeued: {why}")
        self.stop_workers(attempt, why)
        self.kick()

    def _decide_attempt(self, attempt: AttemptRecord, outcome: str) -> None:
        attempt.outcome = outcome
        self.store.update_attempt(attempt)

    # --- worker status -----------------------------------------------------------------

    def on_workload_status(self, status: common_pb2.WorkloadStatus) -> None:
        entry = self.workers.get(status.workload_id)
        if entry is None:
            log.warning("status for unknown workload %s ignored", status.workload_id)
            return
        job, attempt, w = entry
        now = self.clock()
        if status.progress_step > w.progress_step:
            w.progress_step = status.progress_step
            self.ft.on_progress(w)
        if status.checkpoint_step >= w.checkpoint_step and status.checkpoint_path:
            if status.checkpoint_step > w.checkpoint_step or w.checkpoint_at is None:
                w.checkpoint_at = now
            w.checkpoint_step, w.checkpoint_path = status.checkpoint_step, status.checkpoint_path
        phase = status.phase
        if phase in (_PHASE.WORKLOAD_PHASE_STARTING, _PHASE.WORKLOAD_PHASE_RUNNING):
            if w.phase is WorkerPhase.PLACED:
                w.phase = WorkerPhase.RUNNING
                w.started_at = now
                self.store.update_worker(w)
                self.record_event(
                    "worker",
                    f"rank {w.rank} running on {w.node_name} (pid {status.pid})",
                    job_id=job.id,
                    node_name=w.node_name,
                )
                self._maybe_running(job, attempt)
            else:
                self.store.update_worker(w)
            return
        if phase in (_PHASE.WORKLOAD_PHASE_EXITED, _PHASE.WORKLOAD_PHASE_FAILED_TO_START):
            if not w.phase.holds_devices:
                return  # already recorded: a replayed report
            w.phase = (
                WorkerPhase.EXITED if phase == _PHASE.WORKLOAD_PHASE_EXITED else WorkerPhase.FAILED_TO_START
            )
            w.exit_code = status.exit_code if phase == _PHASE.WORKLOAD_PHASE_EXITED else None
            w.signal = status.signal or None
            w.message = status.message
            w.ended_at = now
            if status.agent_shutdown and not attempt.outcome and not job.state.terminal:
                self.requeue(job, attempt, f"the agent on {w.node_name} shut down")
            self.store.update_worker(w)
            self.record_event(
                "worker",
                describe_exit(w),
                job_id=job.id,
                node_name=w.node_name,
                data={"exit_code": w.exit_code, "signal": w.signal},
            )
            self._evaluate(job, attempt)

    def _maybe_running(self, job: JobRecord, attempt: AttemptRecord) -> None:
        if (
            job.state is JobState.PLACED
            and job.current_attempt is attempt
            and all(w.phase is not WorkerPhase.PLACED for w in attempt.workers)
        ):
            self.transition(
                job, JobState.RUNNING, f"attempt {attempt.number}: all {len(attempt.workers)} workers started"
            )
            self.ft.on_running(job, attempt)

    def _evaluate(self, job: JobRecord, attempt: AttemptRecord) -> None:
        if not attempt.outcome and job.current_attempt is attempt and not job.state.terminal:
            judgement = judge_attempt(attempt)
            if judgement.verdict is Verdict.SUCCEEDED:
                self._decide_attempt(attempt, "succeeded")
                if job.state is JobState.PLACED:
                    self.transition(job, JobState.RUNNING, "workers ran")
                self.transition(job, JobState.SUCCEEDED, judgement.reason)
            elif judgement.verdict is Verdict.FAILED:
                assert judgement.worker is not None
                self.ft.worker_failed(job, attempt, judgement.worker, judgement.reason)
        if attempt.all_exited and attempt.ended_at is None:
            attempt.ended_at = self.clock()
            self.store.update_attempt(attempt)
            self.kick()  # its devices are free now

    def free_device_count(self, rt: NodeRuntime, active: dict[str, list[WorkerRecord]]) -> int:
        # Whole devices nobody holds any share of: what `corral nodes` calls free.
        return len(rt.free_devices(held_indices(active, rt.record.name)))

    def workers_on(self, node_name: str) -> list[WorkerRecord]:
        return [w for _, _, w in self.workers.values() if w.node_name == node_name]

    def live_jobs(self) -> Iterator[JobRecord]:
        """Unfinished jobs, and finished ones whose workers still hold devices (stopping)."""
        for job in self.jobs.values():
            if not job.state.terminal:
                yield job
            elif job.id not in self._settled:
                if _holds_devices(job):
                    yield job
                else:
                    self._settled.add(job.id)

    def active_workers_by_node(self) -> dict[str, list[WorkerRecord]]:
        """Workers holding devices, per node: one pass, for listings of many nodes."""
        by_node: dict[str, list[WorkerRecord]] = {}
        for job in self.live_jobs():
            for attempt in job.attempts:
                for w in attempt.workers:
                    if w.phase.holds_devices:
                        by_node.setdefault(w.node_name, []).append(w)
        return by_node

    def attempts_on(self, node: str, index: int | None) -> list[tuple[JobRecord, AttemptRecord]]:
        """Undecided attempts with a worker holding the device (or, index None, anything on the node)."""
        found: dict[str, tuple[JobRecord, AttemptRecord]] = {}
        for job, attempt, w in self._undecided_workers():
            if w.node_name == node and (index is None or index in w.device_indices):
                found[job.id] = (job, attempt)
        return list(found.values())

    def attempts_by_node(self) -> dict[str, list[tuple[JobRecord, AttemptRecord]]]:
        """`attempts_on(node, None)` for every node at once: one walk, for checks of many nodes."""
        by_node: dict[str, dict[str, tuple[JobRecord, AttemptRecord]]] = {}
        for job, attempt, w in self._undecided_workers():
            by_node.setdefault(w.node_name, {})[job.id] = (job, attempt)
        return {node: list(attempts.values()) for node, attempts in by_node.items()}

    def _undecided_workers(self) -> Iterator[tuple[JobRecord, AttemptRecord, WorkerRecord]]:
        for job in self.jobs.values():
            attempt = job.current_attempt
            if job.state.terminal or attempt is None or attempt.outcome:
                continue
            for w in attempt.workers:
                if w.phase.holds_devices:
                    yield job, attempt, w


def _holds_devices(job: JobRecord) -> bool:
    return any(w.phase.holds_devices for a in job.attempts for w in a.workers)


def held_indices(active: dict[str, list[WorkerRecord]], node_name: str) -> set[int]:
    return {i for w in active.get(node_name, []) for i in w.device_indices}
