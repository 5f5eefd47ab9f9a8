"""An in-process fake control plane for the CLI tests: the real services' wire contract with
canned behaviour, so commands are exercised end to end without the server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from corral.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    common_pb2,
    job_pb2,
    job_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
)
from google.protobuf.timestamp_pb2 import Timestamp

NOW = 1_700_000_000


def ts(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def make_node(name: str, *, simulated: bool = True, devices: int = 8, model: str = "H100-SXM5-80GB") -> Any:
    node = node_pb2.Node(
        name=name,
        state=node_pb2.NODE_STATE_READY,
        backend="simulated" if simulated else "nvml",
        simulated=simulated,
        address="127.0.0.1",
        devices_free=devices,
        last_seen=ts(NOW - 2),
    )
    for i in range(devices):
        node.devices.append(
            common_pb2.Device(
                index=i,
                vendor="nvidia",
                model=model,
                memory_bytes=80 * 2**30,
                simulated=simulated,
                power_limit_default_w=700,
                health=common_pb2.DEVICE_HEALTH_HEALTHY,
            )
        )
        node.telemetry.append(
            common_pb2.DeviceTelemetry(
                index=i, power_w=100.0 + i, temperature_c=40.0 + i, utilization_pct=50, power_limit_w=700
            )
        )
    return node


class FakeControlPlane(
    job_pb2_grpc.JobServiceServicer,
    node_pb2_grpc.NodeServiceServicer,
    cluster_pb2_grpc.ClusterServiceServicer,
):
    """Jobs end at once: FAILED when the spec's env has FAKE_OUTCOME=failed, CANCELLED for
    cancelled, else SUCCEEDED. A spec named `rejected` gets INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.jobs: dict[str, Any] = {}
        self.events: dict[str, list[Any]] = {}
        self.nodes = {n.name: n for n in (make_node("sim-h100-0"), make_node("real-0", simulated=False))}
        self.submitted: list[Any] = []
        self.lock = threading.Lock()
        self.event_requests: list[Any] = []
        self.cluster_events = [
            cluster_pb2.ClusterEvent(
                id=1, at=ts(NOW - 600), kind="node", node_name="sim-h100-0",
                message="node sim-h100-0 connected",
            ),
            cluster_pb2.ClusterEvent(
                id=2, at=ts(NOW - 300), kind="failure", job_id="j9", node_name="sim-h100-0",
                message="attempt 1 failed", cause="xid:79 on device 3", blame="hardware",
                data_json='{"cause": "xid:79 on device 3", "blame": "hardware"}',
            ),
            cluster_pb2.ClusterEvent(
                id=3, at=ts(NOW - 290), kind="recovery", job_id="j9", message="attempt 2 on spare real-0"
            ),
        ]  # fmt: skip

    # ---- jobs
    def Submit(self, request: Any, context: Any) -> Any:
        spec = request.spec
        if spec.name == "rejected":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "workers: must be ≥ 1 (got 0)\nname: required")
        with self.lock:
            self.submitted.append(request)
            job_id = f"j{len(self.jobs) + 1}"
        outcome = {"failed": job_pb2.JOB_STATE_FAILED, "cancelled": job_pb2.JOB_STATE_CANCELLED}.get(
            spec.env.get("FAKE_OUTCOME", ""), job_pb2.JOB_STATE_SUCCEEDED
        )
        job = job_pb2.Job(id=job_id, spec=spec, state=outcome, owner=request.owner, created_at=ts(NOW - 60))
        job.reason = {job_pb2.JOB_STATE_FAILED: "rank 1 exited with code 3"}.get(outcome, "")
        attempt = job.attempts.add(number=1, started_at=ts(NOW - 50), ended_at=ts(NOW - 10), outcome="done")
        for rank in range(spec.workers):
            attempt.workers.add(
                rank=rank, node_name=f"sim-h100-{rank}", device_indices=[0, 1], phase="exited"
            )
        self.jobs[job_id] = job
        states = [job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING]
        events = [
            job_pb2.JobEvent(event_id=i + 1, job_id=job_id, kind="state", state=s, message=f"now {s}")
            for i, s in enumerate(states)
        ]
        events.append(
            job_pb2.JobEvent(event_id=3, job_id=job_id, kind="worker", state=states[-1], message="rank 0 up")
        )
        events.append(
            job_pb2.JobEvent(event_id=4, job_id=job_id, kind="state", state=outcome, message="ended")
        )
        self.events[job_id] = events
        return job

    def _job(self, job_id: str, context: Any) -> Any:
        job = self.jobs.get(job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}")
        return job

    def Get(self, request: Any, context: Any) -> Any:
        if hasattr(request, "id"):
            return self._job(request.id, context)
        return self._node(request.name, context)

    def List(self, request: Any, context: Any) -> Any:
        if isinstance(request, node_pb2.ListNodesRequest):
            return node_pb2.ListNodesResponse(nodes=list(self.nodes.values()))
        jobs = [j for j in self.jobs.values() if not request.states or j.state in request.states]
        return job_pb2.ListJobsResponse(jobs=jobs[: request.limit or None])

    def Cancel(self, request: Any, context: Any) -> Any:
        job = self._job(request.id, context)
        if job.state in (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {job.id} already ended")
        job.state = job_pb2.JOB_STATE_CANCELLED
        job.reason = request.reason
        return job

    def Watch(self, request: Any, context: Any) -> Iterator[Any]:
        self._job(request.job_id, context)
        yield from (e for e in self.events[request.job_id] if e.event_id > request.after_event_id)

    def Logs(self, request: Any, context: Any) -> Iterator[Any]:
        job = self._job(request.job_id, context)
        for rank in range(job.spec.workers):
            if request.rank in (-1, rank):
                yield job_pb2.LogsChunk(rank=rank, attempt=1, data=f"hello from {rank}\npart".encode())
                yield job_pb2.LogsChunk(rank=rank, attempt=1, data=b"ial line\n")

    # ---- nodes
    def _node(self, name: str, context: Any) -> Any:
        node = self.nodes.get(name)
        if node is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no node {name!r}")
        return node

    def Cordon(self, request: Any, context: Any) -> Any:
        node = self._node(request.name, context)
        node.cordoned, node.cordon_reason = True, request.reason
        return node

    def Uncordon(self, request: Any, context: Any) -> Any:
        node = self._node(request.name, context)
        node.cordoned, node.draining, node.cordon_reason = False, False, ""
        return node

    def Drain(self, request: Any, context: Any) -> Any:
        node = self._node(request.name, context)
        node.cordoned, node.draining, node.cordon_reason = True, True, request.reason
        return node

    def InjectFault(self, request: Any, context: Any) -> Any:
        node = self._node(request.node_name, context)
        if not node.simulated:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{node.name} runs real devices; faults are simulated only",
            )
        return node_pb2.InjectFaultResponse(
            message=f"injected {request.fault} into {node.name}/{request.device_index}"
        )

    def ClearHealth(self, request: Any, context: Any) -> Any:
        node = self._node(request.name, context)
        if request.device_index >= len(node.devices):
            context.abort(grpc.StatusCode.NOT_FOUND, f"node {node.name} has no device {request.device_index}")
        node.health = "HEALTHY"
        node.ClearField("lemon_evidence")
        node.cordoned = True  # still cordoned after a clear: the command says so
        return node

    # ---- cluster
    def ListEvents(self, request: Any, context: Any) -> Any:
        self.event_requests.append(request)
        kinds = set(request.kinds) or {"failure", "recovery", "health", "node"}
        events = [
            e
            for e in self.cluster_events
            if e.kind in kinds
            and (not request.node_name or e.node_name == request.node_name)
            and request.cause.lower() in e.cause.lower()
        ]
        return cluster_pb2.ListEventsResponse(events=events)

    def GetStatus(self, request: Any, context: Any) -> Any:
        return cluster_pb2.ClusterStatus(
            version="0.1.0",
            nodes_total=2,
            nodes_ready=2,
            devices_total=16,
            devices_free=16,
            jobs_by_state={"JOB_STATE_SUCCEEDED": len(self.jobs)},
            ingest=cluster_pb2.IngestStats(lag_p50_s=0.004, lag_p99_s=0.02),
            data_dir="/tmp/corral",
        )


def serve_fake(fake: FakeControlPlane) -> tuple[grpc.Server, int]:
    # One object serves all three services; Get and List tell job from node requests by type.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    job_pb2_grpc.add_JobServiceServicer_to_server(fake, server)
    node_pb2_grpc.add_NodeServiceServicer_to_server(fake, server)
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port
