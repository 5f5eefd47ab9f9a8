"""The control plane's core: jobs, their attempts, and the agents' reports.

Runs on one asyncio loop, so state changes are serialised without locks. Decisions come
from pure functions (placement, lifecycle, reconcile); this class applies them: it writes
the store, appends to the event log and sends commands down agent streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.v1 import agent_pb2, common_pb2, job_pb2
from google.protobuf import json_format

from scheduler.jobstate import JobState, check_transition
from scheduler.lifecycle import Verdict, after_failed_attempt, judge_attempt
from scheduler.model import AttemptRecord, JobRecord, WorkerPhase, WorkerRecord, workload_id
from scheduler.placement import NodeCapacity, PlacementDecision, PlacementRequest, first_fit
from scheduler.reconcile import ActionKind, reconcile_node
from scheduler.server.events import EventBus
from scheduler.server.ingest import LagTracker
from scheduler.server.logstore import LogStore
from scheduler.server.nodes import NodeRegistry, NodeRuntime
from scheduler.server.session import AgentSession
from scheduler.store import Store

log = logging.getLogger("corral.server")

_PHASE = common_pb2.WorkloadPhase
_SEVERITY_TO_HEALTH = {
    common_pb2.SEVERITY_CRITICAL: "UNHEALTHY",
    common_pb2.SEVERITY_WARNING: "SUSPECT",
}
MASTER_PORT_BASE = 29500
MASTER_PORT_RANGE = 1000


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
    ) -> None:
        self.store = store
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
        self._kick = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def load(self) -> None:
        self.nodes.load()
        for job in self.store.load_jobs():
            self._index(job)
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
        self._kick.set()

    async def _scheduling_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=1.0)
            self._kick.clear()
            try:
                self.schedule()
            except Exception:  # one bad tick must not stop scheduling for good
                log.exception("scheduling pass failed")

    # --- events ------------------------------------------------------------------------

    def _event(self, kind: str, message: str, **fields: Any) -> None:
        row = self.store.append_event(kind, message, at=self.clock(), **fields)
        self.bus.publish(row)

    def _transition(self, job: JobRecord, new: JobState, reason: str) -> None:
        check_transition(job.id, job.state, new)
        job.state = new
        job.reason = reason
        job.updated_at = self.clock()
        self.store.update_job(job)
        self._event("state", reason, job_id=job.id, state=new.value)

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
        self._event("state", f"submitted by {owner or 'unknown'}", job_id=job.id, state=job.state.value)
        self.kick()
        return job

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
        self._transition(job, JobState.CANCELLED, reason or "cancelled by user")
        if attempt is not None:
            self._stop_workers(attempt, "job cancelled")
        return job

    @staticmethod
    def spec_of(job: JobRecord) -> job_pb2.JobSpec:
        return json_format.ParseDict(job.spec, job_pb2.JobSpec())

    # --- scheduling --------------------------------------------------------------------

    def _capacity(self) -> dict[str, list[Any]]:
        held: set[tuple[str, int]] = {
            (w.node_name, i)
            for _, _, w in self.workers.values()
            if w.phase.holds_devices
            for i in w.device_indices
        }
        return {
            rt.record.name: [
                d for d in rt.record.devices if d.health != "UNHEALTHY" and (d.node_name, d.index) not in held
            ]
            for rt in self.nodes
            if rt.schedulable
        }

    def schedule(self) -> int:
        """One placement pass over pending jobs, highest priority and oldest first."""
        pending = sorted(
            (j for j in self.jobs.values() if j.state is JobState.PENDING),
            key=lambda j: (-j.priority, j.created_at),
        )
        if not pending:
            return 0
        free = self._capacity()
        placed = 0
        for job in pending:
            spec = self.spec_of(job)
            request = PlacementRequest(
                job_id=job.id,
                workers=spec.workers,
                devices_per_worker=spec.devices_per_worker,
                vendors=tuple(spec.accelerator.vendors),
                models=tuple(spec.accelerator.models),
                min_memory_bytes=spec.accelerator.min_memory_bytes,
            )
            decision = first_fit(request, [NodeCapacity(n, tuple(devs)) for n, devs in free.items()])
            if not decision.placed:
                if job.reason != decision.reason:
                    job.reason = decision.reason
                    self.store.update_job(job)
                continue
            self._start_attempt(job, spec, decision)
            for slot in decision.slots or ():
                free[slot.node_name] = [d for d in free[slot.node_name] if d.index not in slot.device_indices]
            placed += 1
        return placed

    def _free_master_port(self) -> int:
        used = {
            a.master_port
            for j in self.jobs.values()
            if not j.state.terminal
            for a in j.attempts
            if not a.all_exited
        }
        return next(p for p in range(MASTER_PORT_BASE, MASTER_PORT_BASE + MASTER_PORT_RANGE) if p not in used)

    def _start_attempt(self, job: JobRecord, spec: job_pb2.JobSpec, decision: PlacementDecision) -> None:
        assert decision.slots is not None
        now = self.clock()
        number = len(job.attempts) + 1
        rank0 = self.nodes.get(decision.slots[0].node_name)
        attempt = AttemptRecord(
            job_id=job.id,
            number=number,
            started_at=now,
            master_addr=rank0.record.address if rank0 else "127.0.0.1",
            master_port=self._free_master_port(),
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
        self._event("state", job.reason, job_id=job.id, state=JobState.PLACED.value)
        for w in attempt.workers:
            self._send_start(job, spec, attempt, w)

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
        )

    def _send_start(
        self, job: JobRecord, spec: job_pb2.JobSpec, attempt: AttemptRecord, w: WorkerRecord
    ) -> None:
        rt = self.nodes.get(w.node_name)
        if rt is not None and rt.session is not None:
            rt.session.send(start=self._start_command(job, spec, attempt, w))
        # Otherwise the node reconnects and reconciliation resends the start.

    def _stop_workers(self, attempt: AttemptRecord, reason: str) -> None:
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

    def _requeue(self, job: JobRecord, attempt: AttemptRecord, why: str) -> None:
        """Back to the queue without spending a restart: the platform moved it, the job did not fail."""
        self._decide_attempt(attempt, f"preempted: {why}")
        self._transition(job, JobState.PENDING, f"requeued: {why}")
        self._stop_workers(attempt, why)
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
        w.progress_step = max(w.progress_step, status.progress_step)
        if status.checkpoint_step >= w.checkpoint_step and status.checkpoint_path:
            w.checkpoint_step, w.checkpoint_path = status.checkpoint_step, status.checkpoint_path
        phase = status.phase
        if phase in (_PHASE.WORKLOAD_PHASE_STARTING, _PHASE.WORKLOAD_PHASE_RUNNING):
            if w.phase is WorkerPhase.PLACED:
                w.phase = WorkerPhase.RUNNING
                w.started_at = now
                self.store.update_worker(w)
                self._event(
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
                self._requeue(job, attempt, f"the agent on {w.node_name} shut down")
            self.store.update_worker(w)
            self._event(
                "worker",
                self._exit_text(w),
                job_id=job.id,
                node_name=w.node_name,
                data={"exit_code": w.exit_code, "signal": w.signal},
            )
            self._evaluate(job, attempt)

    @staticmethod
    def _exit_text(w: WorkerRecord) -> str:
        from scheduler.lifecycle import describe_exit

        return describe_exit(w)

    def _maybe_running(self, job: JobRecord, attempt: AttemptRecord) -> None:
        if (
            job.state is JobState.PLACED
            and job.current_attempt is attempt
            and all(w.phase is not WorkerPhase.PLACED for w in attempt.workers)
        ):
            self._transition(
                job, JobState.RUNNING, f"attempt {attempt.number}: all {len(attempt.workers)} workers started"
            )

    def _evaluate(self, job: JobRecord, attempt: AttemptRecord) -> None:
        if not attempt.outcome and job.current_attempt is attempt and not job.state.terminal:
            judgement = judge_attempt(attempt)
            if judgement.verdict is Verdict.SUCCEEDED:
                self._decide_attempt(attempt, "succeeded")
                if job.state is JobState.PLACED:
                    self._transition(job, JobState.RUNNING, "workers ran")
                self._transition(job, JobState.SUCCEEDED, judgement.reason)
            elif judgement.verdict is Verdict.FAILED:
                self._decide_attempt(attempt, f"failed: {judgement.reason}")
                spec = self.spec_of(job)
                step = after_failed_attempt(judgement.reason, job.restarts, spec.max_restarts)
                if step.counts_as_restart:
                    job.restarts += 1
                self._transition(job, step.state, step.reason)
                self._stop_workers(attempt, "a peer worker failed")
                self.kick()
        if attempt.all_exited and attempt.ended_at is None:
            attempt.ended_at = self.clock()
            self.store.update_attempt(attempt)
            self.kick()  # its devices are free now

    # --- agents ------------------------------------------------------------------------

    def agent_attached(self, reg: agent_pb2.Register, session: AgentSession) -> agent_pb2.RegisterAck:
        now = self.clock()
        rt = self.nodes.register(reg, session, now)
        self._event(
            "node",
            f"node {reg.node_name} connected ({reg.backend}, {len(reg.devices)} devices, "
            f"agent {reg.agent_version})",
            node_name=reg.node_name,
        )
        on_node = [w for _, _, w in self.workers.values() if w.node_name == reg.node_name]
        offsets = {
            w.workload_id: self.logs.size(w.job_id, w.attempt, w.rank)
            for w in on_node
            if w.phase.holds_devices or any(s.workload_id == w.workload_id for s in reg.workloads)
        }
        ack = agent_pb2.RegisterAck(
            node_name=reg.node_name, telemetry_interval_s=self.telemetry_interval_s, log_offsets=offsets
        )
        session.send(register_ack=ack)
        if rt.record.draining:  # a restarted agent forgets; the control plane remembers
            session.send(drain=agent_pb2.Drain(reason=rt.record.cordon_reason))
        self._reconcile(rt, reg, on_node)
        self.kick()
        return ack

    def _wanted(self, w: WorkerRecord) -> bool:
        job, attempt, _ = self.workers[w.workload_id]
        return w.phase.holds_devices and not attempt.outcome and not job.state.terminal

    def _reconcile(self, rt: NodeRuntime, reg: agent_pb2.Register, on_node: list[WorkerRecord]) -> None:
        expected = [w for w in on_node if w.phase.holds_devices]
        wanted = {w.workload_id: self._wanted(w) for w in on_node}
        for action in reconcile_node(list(reg.workloads), expected, wanted):
            if action.kind is ActionKind.RECORD and action.status is not None:
                self.on_workload_status(action.status)
            elif action.kind is ActionKind.STOP and rt.session is not None:
                rt.session.send(
                    stop=agent_pb2.StopWorkload(
                        workload_id=action.workload_id, grace_period_s=self.stop_grace_s, reason=action.reason
                    )
                )
            elif action.kind is ActionKind.RESEND_START:
                job, attempt, w = self.workers[action.workload_id]
                self._send_start(job, self.spec_of(job), attempt, w)
            elif action.kind is ActionKind.LOST:
                self.on_workload_status(
                    common_pb2.WorkloadStatus(
                        workload_id=action.workload_id,
                        phase=_PHASE.WORKLOAD_PHASE_EXITED,
                        exit_code=-1,
                        message=f"lost: {action.reason}",
                    )
                )

    def agent_detached(self, node_name: str, session: AgentSession) -> None:
        if self.nodes.disconnect(node_name, session, self.clock()):
            self._event(
                "node", f"node {node_name} disconnected; its workers keep running", node_name=node_name
            )

    def on_agent_message(self, rt: NodeRuntime, msg: agent_pb2.AgentMessage) -> None:
        body = msg.WhichOneof("body")
        now = self.clock()
        rt.last_seen = now
        if body == "telemetry":
            rt.telemetry = msg.telemetry
            ts = msg.telemetry.sampled_at
            self.lag.record(now, ts.seconds + ts.nanos * 1e-9)
            return
        if body == "log":
            self._on_log(msg.log)
        elif body == "workload":
            self.on_workload_status(msg.workload)
        elif body == "health":
            self._on_health(rt, msg.health)
        elif body == "leaving":
            rt.leaving = True
            self._event(
                "node", f"node {rt.record.name} is leaving: {msg.leaving.reason}", node_name=rt.record.name
            )
        elif body == "command_result" and not msg.command_result.ok:
            self._event(
                "node",
                f"command {msg.command_result.command_seq} failed on {rt.record.name}: "
                f"{msg.command_result.message}",
                node_name=rt.record.name,
            )
        if msg.seq and rt.session is not None:
            rt.session.ack(msg.seq)

    def _on_log(self, chunk: agent_pb2.LogChunk) -> None:
        entry = self.workers.get(chunk.workload_id)
        if entry is None:
            return
        _, _, w = entry
        self.logs.append(w.job_id, w.attempt, w.rank, chunk.offset, chunk.data)

    def _on_health(self, rt: NodeRuntime, ev: common_pb2.HealthEvent) -> None:
        name = rt.record.name
        kind = common_pb2.HealthEventKind.Name(ev.kind).removeprefix("HEALTH_EVENT_KIND_")
        sev = common_pb2.Severity.Name(ev.severity).removeprefix("SEVERITY_")
        code = f" {ev.code}" if ev.code else ""
        injected = " (injected)" if ev.injected else ""
        self._event(
            "health",
            f"device {ev.device_index} on {name}: {kind}{code} {sev}{injected}: {ev.message}",
            node_name=name,
            data={"device": ev.device_index, "kind": kind, "code": ev.code, "severity": sev},
        )
        if ev.kind == common_pb2.HEALTH_EVENT_KIND_RECOVERED:
            health = "HEALTHY"
        else:
            health = _SEVERITY_TO_HEALTH.get(ev.severity, "")
        current = rt.devices_by_index.get(ev.device_index)
        # Only worsen here; a device gets better by an explicit recovery, not by a milder event.
        order = ["HEALTHY", "SUSPECT", "UNHEALTHY"]
        if (
            health
            and current is not None
            and (health == "HEALTHY" or order.index(health) > order.index(current.health))
        ):
            self.nodes.set_device_health(name, ev.device_index, health)
            self.kick()

    # --- nodes API ---------------------------------------------------------------------

    def node(self, name: str) -> NodeRuntime:
        rt = self.nodes.get(name)
        if rt is None:
            raise NotFound(f"no node {name!r} (list them with `corral nodes`)")
        return rt

    def cordon(self, name: str, reason: str) -> NodeRuntime:
        rt = self.node(name)
        self.nodes.set_marks(name, cordoned=True, draining=rt.record.draining, reason=reason or "cordoned")
        self._event("node", f"node {name} cordoned: {reason or 'no reason given'}", node_name=name)
        return rt

    def uncordon(self, name: str) -> NodeRuntime:
        rt = self.node(name)
        if rt.record.draining and rt.session is not None:
            rt.session.send(drain=agent_pb2.Drain(lift=True))
        self.nodes.set_marks(name, cordoned=False, draining=False, reason="")
        self._event("node", f"node {name} uncordoned", node_name=name)
        self.kick()
        return rt

    def drain(self, name: str, reason: str) -> NodeRuntime:
        """Cordon, then move every gang with a worker here: checkpoint, stop, requeue.

        A drained job is requeued without spending one of its restarts: the move is the
        operator's doing, not the job's fault.
        """
        rt = self.node(name)
        why = reason or "drained by operator"
        self.nodes.set_marks(name, cordoned=True, draining=True, reason=why)
        self._event("node", f"node {name} draining: {why}", node_name=name)
        if rt.session is not None:
            rt.session.send(drain=agent_pb2.Drain(reason=why))
        for job in list(self.jobs.values()):
            attempt = job.current_attempt
            if job.state.terminal or attempt is None or attempt.outcome:
                continue
            if any(w.node_name == name and w.phase.holds_devices for w in attempt.workers):
                for w in attempt.workers:
                    node = self.nodes.get(w.node_name)
                    if w.phase.holds_devices and node is not None and node.session is not None:
                        node.session.send(
                            checkpoint=agent_pb2.RequestCheckpoint(workload_id=w.workload_id, reason=why)
                        )
                self._requeue(job, attempt, f"node {name} is draining ({why})")
        return rt

    def inject_fault(self, name: str, device_index: int, fault: str) -> str:
        rt = self.node(name)
        dev = rt.devices_by_index.get(device_index)
        if dev is None:
            raise NotFound(f"node {name} has no device {device_index} (it has {sorted(rt.devices_by_index)})")
        if not dev.simulated:
            raise FailedPrecondition(
                f"device {device_index} on {name} is a real device; faults are injected only "
                "into simulated devices"
            )
        if rt.session is None:
            raise FailedPrecondition(f"node {name} is not connected")
        seq = rt.session.send(inject_fault=agent_pb2.InjectFault(device_index=device_index, fault=fault))
        self._event("node", f"fault {fault} injected into device {device_index} on {name}", node_name=name)
        return f"fault {fault} sent to {name} device {device_index} (command {seq})"

    def active_workers_by_node(self) -> dict[str, list[WorkerRecord]]:
        """Workers holding devices, per node: one pass, for listings of many nodes."""
        by_node: dict[str, list[WorkerRecord]] = {}
        for _, _, w in self.workers.values():
            if w.phase.holds_devices:
                by_node.setdefault(w.node_name, []).append(w)
        return by_node
