"""What the control plane does with what agents say: registration, reports, disconnects.

The agent stream's servicer (agent_service.py) owns the wire; this class turns each message
into changes on the ControlPlane, using the pure reconcile and health rules.
"""

from __future__ import annotations

from corral.v1 import agent_pb2, common_pb2

from scheduler.model import WorkerRecord
from scheduler.reconcile import ActionKind, reconcile_node
from scheduler.server.controlplane import ControlPlane
from scheduler.server.nodes import NodeRuntime
from scheduler.server.session import AgentSession


class AgentReports:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def attached(self, reg: agent_pb2.Register, session: AgentSession) -> NodeRuntime:
        cp = self.cp
        rt = cp.nodes.register(reg, session, cp.clock())
        cp.node_back(reg.node_name)
        cp.ft.node_registered(rt)
        cp.record_event(
            "node",
            f"node {reg.node_name} connected ({reg.backend}, {len(reg.devices)} devices, "
            f"agent {reg.agent_version})",
            node_name=reg.node_name,
        )
        on_node = cp.workers_on(reg.node_name)
        reported = {s.workload_id for s in reg.workloads}
        offsets = {
            w.workload_id: cp.logs.size(w.job_id, w.attempt, w.rank)
            for w in on_node
            if w.phase.holds_devices or w.workload_id in reported
        }
        session.send(
            register_ack=agent_pb2.RegisterAck(
                node_name=reg.node_name, telemetry_interval_s=cp.telemetry_interval_s, log_offsets=offsets
            )
        )
        if rt.record.draining:  # a restarted agent forgets; the control plane remembers
            session.send(drain=agent_pb2.Drain(reason=rt.record.cordon_reason))
        if cp.power_loop is not None:  # so are the caps in force
            cp.power_loop.node_registered(rt)
        self._reconcile(rt, reg, on_node)
        cp.kick()
        return rt

    def _wanted(self, w: WorkerRecord) -> bool:
        job, attempt, _ = self.cp.workers[w.workload_id]
        return w.phase.holds_devices and not attempt.outcome and not job.state.terminal

    def _reconcile(self, rt: NodeRuntime, reg: agent_pb2.Register, on_node: list[WorkerRecord]) -> None:
        cp = self.cp
        expected = [w for w in on_node if w.phase.holds_devices]
        wanted = {w.workload_id: self._wanted(w) for w in on_node}
        for action in reconcile_node(list(reg.workloads), expected, wanted):
            if action.kind is ActionKind.RECORD and action.status is not None:
                cp.on_workload_status(action.status)
            elif action.kind is ActionKind.STOP and rt.session is not None:
                rt.session.send(
                    stop=agent_pb2.StopWorkload(
                        workload_id=action.workload_id, grace_period_s=cp.stop_grace_s, reason=action.reason
                    )
                )
            elif action.kind is ActionKind.RESEND_START:
                job, attempt, w = cp.workers[action.workload_id]
                cp.send_start(job, cp.spec_of(job), attempt, w)
            elif action.kind is ActionKind.LOST:
                cp.on_workload_status(
                    common_pb2.WorkloadStatus(
                        workload_id=action.workload_id,
                        phase=common_pb2.WORKLOAD_PHASE_EXITED,
                        exit_code=-1,
                        message=f"lost: {action.reason}",
                    )
                )

    def detached(self, node_name: str, session: AgentSession) -> None:
        if self.cp.nodes.disconnect(node_name, session, self.cp.clock()):
            self.cp.record_event(
                "node", f"node {node_name} disconnected; its workers keep running", node_name=node_name
            )

    def message(self, rt: NodeRuntime, msg: agent_pb2.AgentMessage) -> None:
        cp = self.cp
        body = msg.WhichOneof("body")
        now = cp.clock()
        rt.last_seen = now
        if body == "telemetry":  # the hot path: no store, no events
            rt.telemetry = msg.telemetry
            ts = msg.telemetry.sampled_at
            cp.lag.record(now, ts.seconds + ts.nanos * 1e-9)
            return
        name = rt.record.name
        if body == "log":
            entry = cp.workers.get(msg.log.workload_id)
            if entry is not None:
                w = entry[2]
                cp.logs.append(w.job_id, w.attempt, w.rank, msg.log.offset, msg.log.data)
        elif body == "workload":
            cp.on_workload_status(msg.workload)
        elif body == "health":
            cp.ft.on_health_event(rt, msg.health)
        elif body == "checkpoint":
            cp.ft.on_checkpoint(msg.checkpoint)
        elif body == "leaving":
            rt.leaving = True
            cp.record_event("node", f"node {name} is leaving: {msg.leaving.reason}", node_name=name)
        elif body == "command_result" and not msg.command_result.ok:
            result = msg.command_result
            cp.record_event(
                "node", f"command {result.command_seq} failed on {name}: {result.message}", node_name=name
            )
        if msg.seq and rt.session is not None:
            rt.session.ack(msg.seq)
