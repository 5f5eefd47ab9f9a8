"""JobService, NodeService and ClusterService: the API the CLI and dashboards use."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc
import psutil
from corral.v1 import cluster_pb2, cluster_pb2_grpc, job_pb2, job_pb2_grpc, node_pb2, node_pb2_grpc

from agents.faults import parse_fault
from scheduler import __version__
from scheduler.jobstate import JobState
from scheduler.model import JobRecord, WorkerRecord
from scheduler.server import node_ops
from scheduler.server.controlplane import ControlPlane, FailedPrecondition, NotFound
from scheduler.server.convert import (
    cluster_event,
    job_to_proto,
    node_to_proto,
    queue_info,
    reliability_report,
    timestamp,
)
from scheduler.server.nodes import NodeRuntime
from scheduler.server.power_runtime import DISABLED_NOTE, PowerRuntime, disabled_status
from scheduler.server.reliability import build_report
from scheduler.spec import SpecError, spec_from_proto, spec_to_proto
from scheduler.store.events_query import query_events

# grpc.aio.ServicerContext; grpc ships no type information.
Context: TypeAlias = Any


async def _abort_for(context: Context, exc: Exception) -> None:
    if isinstance(exc, NotFound):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, FailedPrecondition):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    raise exc


class JobServicer(job_pb2_grpc.JobServiceServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def _job(self, job: JobRecord) -> job_pb2.Job:
        return job_to_proto(
            job, checkpoints=self.cp.checkpoints_of(job.id), checkpoint_interval=self.cp.interval_text(job)
        )

    async def Submit(self, request: job_pb2.SubmitJobRequest, context: Context) -> job_pb2.Job:
        try:
            spec = spec_from_proto(request.spec, local_launcher=True)
        except SpecError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if (problem := self.cp.queues.check_queue(spec.queue)) is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"queue: {problem}")
        return self._job(self.cp.submit(spec_to_proto(spec), request.owner))

    async def Get(self, request: job_pb2.GetJobRequest, context: Context) -> job_pb2.Job:
        try:
            return self._job(self.cp.get_job(request.id))
        except NotFound as exc:
            await _abort_for(context, exc)
            raise

    async def List(self, request: job_pb2.ListJobsRequest, context: Context) -> job_pb2.ListJobsResponse:
        states = {JobState.from_proto(s) for s in request.states}
        jobs = sorted(self.cp.jobs.values(), key=lambda j: j.created_at, reverse=True)
        selected = [j for j in jobs if not states or j.state in states][: request.limit or 500]
        return job_pb2.ListJobsResponse(jobs=[self._job(j) for j in selected])

    async def Cancel(self, request: job_pb2.CancelJobRequest, context: Context) -> job_pb2.Job:
        try:
            return self._job(self.cp.cancel(request.id, request.reason))
        except NotFound as exc:
            await _abort_for(context, exc)
            raise

    async def Watch(
        self, request: job_pb2.WatchJobsRequest, context: Context
    ) -> AsyncIterator[job_pb2.JobEvent]:
        if request.job_id:
            try:
                self.cp.get_job(request.job_id)
            except NotFound as exc:
                await _abort_for(context, exc)
        queue = self.cp.bus.subscribe()  # before reading history, so nothing falls between
        try:
            last = request.after_event_id
            if request.history or request.after_event_id:
                for row in self.cp.store.events(job_id=request.job_id or None, after_id=last):
                    if row["job_id"]:
                        yield _job_event(row)
                    last = row["id"]
            if request.job_id and self.cp.get_job(request.job_id).state.terminal:
                return
            while True:
                row = await queue.get()
                if row["id"] <= last or not row["job_id"]:
                    continue
                if request.job_id and row["job_id"] != request.job_id:
                    continue
                last = row["id"]
                yield _job_event(row)
                if request.job_id and row["kind"] == "state" and JobState(row["state"]).terminal:
                    return
        finally:
            self.cp.bus.unsubscribe(queue)

    async def Logs(self, request: job_pb2.LogsRequest, context: Context) -> AsyncIterator[job_pb2.LogsChunk]:
        try:
            job = self.cp.get_job(request.job_id)
        except NotFound as exc:
            await _abort_for(context, exc)
            raise
        if not job.attempts:
            if not request.follow:
                return
            while not job.attempts and not job.state.terminal:
                await asyncio.sleep(0.25)
        number = request.attempt or len(job.attempts)
        if number < 1 or number > len(job.attempts):
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"job {job.id} has attempts 1..{len(job.attempts)}; no attempt {number}",
            )
        while True:
            attempt = job.attempts[number - 1]
            ranks = [w.rank for w in attempt.workers if request.rank < 0 or w.rank == request.rank]
            if not ranks:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"attempt {number} of job {job.id} has no rank {request.rank}"
                )
            offsets = dict.fromkeys(ranks, 0)
            while True:
                done = attempt.all_exited  # read before the files, so the final bytes are not missed
                got = False
                for rank in ranks:
                    data = self.cp.logs.read(job.id, number, rank, offsets[rank])
                    if data:
                        got = True
                        offsets[rank] += len(data)
                        yield job_pb2.LogsChunk(rank=rank, attempt=number, data=data)
                if got:
                    continue
                if not request.follow or done:
                    break
                await asyncio.sleep(0.2)
            # Following the latest attempt carries on into the next one after a restart.
            if not (request.follow and not request.attempt):
                return
            while len(job.attempts) == number and not job.state.terminal:
                await asyncio.sleep(0.25)
            if len(job.attempts) == number:
                return
            number += 1


def _job_event(row: dict[str, Any]) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(
        event_id=row["id"],
        job_id=row["job_id"] or "",
        at=timestamp(row["at"]),
        kind=row["kind"],
        state=JobState(row["state"]).to_proto() if row["state"] else job_pb2.JOB_STATE_UNSPECIFIED,
        message=row["message"],
    )


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def _node(self, rt: NodeRuntime, active: dict[str, list[WorkerRecord]] | None = None) -> node_pb2.Node:
        active = active if active is not None else self.cp.active_workers_by_node()
        workers = active.get(rt.record.name, [])
        name = rt.record.name
        return node_to_proto(
            rt,
            self.cp.free_device_count(rt, active),
            sorted(w.workload_id for w in workers),
            health=self.cp.health,
            lemon=self.cp.lemons.get(name),
            hot_spare=name in self.cp.spares,
        )

    async def List(self, request: node_pb2.ListNodesRequest, context: Context) -> node_pb2.ListNodesResponse:
        active = self.cp.active_workers_by_node()
        return node_pb2.ListNodesResponse(
            nodes=[self._node(rt, active) for rt in sorted(self.cp.nodes, key=lambda r: r.record.name)]
        )

    async def _act(self, context: Context, fn: Any, *args: Any) -> node_pb2.Node:
        try:
            return self._node(fn(*args))
        except (NotFound, FailedPrecondition) as exc:
            await _abort_for(context, exc)
            raise

    async def Get(self, request: node_pb2.GetNodeRequest, context: Context) -> node_pb2.Node:
        return await self._act(context, self.cp.node, request.name)

    async def Cordon(self, request: node_pb2.NodeActionRequest, context: Context) -> node_pb2.Node:
        return await self._act(context, node_ops.cordon, self.cp, request.name, request.reason)

    async def Uncordon(self, request: node_pb2.NodeActionRequest, context: Context) -> node_pb2.Node:
        return await self._act(context, node_ops.uncordon, self.cp, request.name)

    async def Drain(self, request: node_pb2.NodeActionRequest, context: Context) -> node_pb2.Node:
        return await self._act(context, node_ops.drain, self.cp, request.name, request.reason)

    async def ClearHealth(self, request: node_pb2.ClearHealthRequest, context: Context) -> node_pb2.Node:
        index = None if request.device_index == -1 else request.device_index
        return await self._act(context, node_ops.clear_health, self.cp, request.name, index, request.reason)

    async def InjectFault(
        self, request: node_pb2.InjectFaultRequest, context: Context
    ) -> node_pb2.InjectFaultResponse:
        try:
            fault = str(parse_fault(request.fault))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"fault: {exc}")
        try:
            return node_pb2.InjectFaultResponse(
                message=node_ops.inject_fault(self.cp, request.node_name, request.device_index, fault)
            )
        except (NotFound, FailedPrecondition) as exc:
            await _abort_for(context, exc)
            raise


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, cp: ControlPlane, agents: Any) -> None:
        self.cp = cp
        self.agents = agents
        self.process = psutil.Process()
        # The HTTP side's addresses, set by run_server once it listens ("" when it is off).
        self.dashboard_url = ""
        self.metrics_url = ""

    async def GetStatus(
        self, request: cluster_pb2.GetStatusRequest, context: Context
    ) -> cluster_pb2.ClusterStatus:
        nodes = list(self.cp.nodes)
        by_state: dict[str, int] = {}
        for job in self.cp.jobs.values():
            by_state[job.state.value] = by_state.get(job.state.value, 0) + 1
        lag = self.cp.lag.summary(time.time())
        cpu = self.process.cpu_times()
        devices_total = sum(len(rt.record.devices) for rt in nodes if rt.connected)
        active = self.cp.active_workers_by_node()
        free = sum(self.cp.free_device_count(rt, active) for rt in nodes if rt.connected)
        return cluster_pb2.ClusterStatus(
            version=__version__,
            started_at=timestamp(self.cp.started_at),
            nodes_total=len(nodes),
            nodes_ready=sum(1 for rt in nodes if rt.connected),
            devices_total=devices_total,
            devices_free=free,
            jobs_by_state=by_state,
            ingest=cluster_pb2.IngestStats(
                telemetry_messages_total=self.cp.lag.total,
                window_s=lag.window_s,
                window_messages=lag.messages,
                lag_p50_s=lag.p50_s,
                lag_p99_s=lag.p99_s,
                lag_max_s=lag.max_s,
                process_cpu_s=cpu.user + cpu.system,
            ),
            data_dir=str(self.cp.data_dir),
            agent_streams=self.agents.open_streams,
            dashboard_url=self.dashboard_url,
            metrics_url=self.metrics_url,
        )

    async def ListQueues(
        self, request: cluster_pb2.ListQueuesRequest, context: Context
    ) -> cluster_pb2.ListQueuesResponse:
        return cluster_pb2.ListQueuesResponse(
            queues=[queue_info(q) for q in self.cp.queue_usage()], policy=self.cp.policy_name
        )

    async def ListEvents(
        self, request: cluster_pb2.ListEventsRequest, context: Context
    ) -> cluster_pb2.ListEventsResponse:
        since = request.since.ToNanoseconds() / 1e9 if request.HasField("since") else None
        rows = query_events(
            self.cp.store,
            kinds=list(request.kinds),
            node_name=request.node_name,
            job_id=request.job_id,
            since=since,
            cause=request.cause,
            limit=request.limit,
        )
        return cluster_pb2.ListEventsResponse(events=[cluster_event(row) for row in rows])

    async def GetReliabilityReport(
        self, request: cluster_pb2.GetReliabilityReportRequest, context: Context
    ) -> cluster_pb2.ReliabilityReport:
        since_s = request.since_s
        if math.isnan(since_s) or since_s < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"since_s: must be 0 (everything stored) or a window in seconds > 0 (got {since_s})",
            )
        return reliability_report(build_report(self.cp, since_s, self.cp.clock()))

    async def GetPower(
        self, request: cluster_pb2.GetPowerRequest, context: Context
    ) -> cluster_pb2.PowerStatus:
        power = self.cp.power
        return disabled_status() if power is None else power.status(self.cp)

    async def SetPowerBudget(
        self, request: cluster_pb2.SetPowerBudgetRequest, context: Context
    ) -> cluster_pb2.PowerStatus:
        return await self._change_power(
            context, lambda power: power.set_budget(request.kind, request.name, request.budget_w)
        )

    async def SetZoneInlet(
        self, request: cluster_pb2.SetZoneInletRequest, context: Context
    ) -> cluster_pb2.PowerStatus:
        return await self._change_power(context, lambda power: power.set_inlet(request.zone, request.inlet_c))

    async def _change_power(
        self, context: Context, change: Callable[[PowerRuntime], None]
    ) -> cluster_pb2.PowerStatus:
        """Apply an operator's change (ValueError names the bad field), then wake the control
        loop so the controller acts on it now rather than at its next period."""
        power = self.cp.power
        if power is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, DISABLED_NOTE)
            raise AssertionError("unreachable")  # abort raises; this tells mypy so
        try:
            change(power)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.cp.kick()
        return power.status(self.cp)
