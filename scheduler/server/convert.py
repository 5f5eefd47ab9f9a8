"""Control-plane records to wire messages."""

from __future__ import annotations

from corral.v1 import cluster_pb2, common_pb2, job_pb2, node_pb2
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from scheduler.model import AttemptRecord, DeviceRecord, JobRecord
from scheduler.queueing.usage import QueueUsage
from scheduler.server.nodes import HEALTH_NAMES, NodeRuntime


def timestamp(t: float | None) -> Timestamp | None:
    if t is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def device_to_proto(d: DeviceRecord) -> common_pb2.Device:
    return common_pb2.Device(
        index=d.index,
        vendor=d.vendor,
        model=d.model,
        uuid=d.uuid,
        memory_bytes=d.memory_bytes,
        power_limit_min_w=d.power_limit_min_w,
        power_limit_max_w=d.power_limit_max_w,
        power_limit_default_w=d.power_limit_default_w,
        power_limit_settable=d.power_limit_settable,
        bus_id=d.bus_id,
        peer_indices=d.peer_indices,
        interconnect=d.interconnect,
        simulated=d.simulated,
        visibility_env=d.visibility_env,
        health=HEALTH_NAMES.get(d.health, common_pb2.DEVICE_HEALTH_UNSPECIFIED),
    )


def node_to_proto(rt: NodeRuntime, devices_free: int, workloads: list[str]) -> node_pb2.Node:
    r = rt.record
    return node_pb2.Node(
        name=r.name,
        state=node_pb2.NODE_STATE_READY if rt.connected else node_pb2.NODE_STATE_DISCONNECTED,
        cordoned=r.cordoned,
        draining=r.draining,
        address=r.address,
        backend=r.backend,
        simulated=r.simulated,
        devices=[device_to_proto(d) for d in r.devices],
        telemetry=list(rt.telemetry.devices) if rt.telemetry is not None else [],
        last_seen=timestamp(rt.last_seen or r.last_seen),
        labels=r.labels,
        agent_version=r.agent_version,
        workloads=workloads,
        cordon_reason=r.cordon_reason,
        devices_free=devices_free,
    )


def attempt_to_proto(a: AttemptRecord) -> job_pb2.Attempt:
    return job_pb2.Attempt(
        number=a.number,
        started_at=timestamp(a.started_at),
        ended_at=timestamp(a.ended_at),
        outcome=a.outcome or ("in progress" if a.ended_at is None else ""),
        master_addr=a.master_addr,
        master_port=a.master_port,
        workers=[
            job_pb2.WorkerPlacement(
                rank=w.rank,
                node_name=w.node_name,
                device_indices=w.device_indices,
                workload_id=w.workload_id,
                phase=w.phase.value,
                exit_code=w.exit_code or 0,
                signal=w.signal or 0,
                progress_step=w.progress_step,
            )
            for w in a.workers
        ],
    )


def job_to_proto(job: JobRecord) -> job_pb2.Job:
    return job_pb2.Job(
        id=job.id,
        spec=json_format.ParseDict(job.spec, job_pb2.JobSpec()),
        state=job.state.to_proto(),
        reason=job.reason,
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
        restarts=job.restarts,
        attempts=[attempt_to_proto(a) for a in job.attempts],
        owner=job.owner,
    )


def queue_info(q: QueueUsage) -> cluster_pb2.QueueInfo:
    return cluster_pb2.QueueInfo(
        name=q.name,
        weight=q.weight,
        cohort=q.cohort or "",
        pools=[
            cluster_pb2.QueuePoolUsage(
                vendor=r.vendor,
                model=r.model,
                has_quota=r.nominal is not None,
                nominal=r.nominal or 0,
                has_borrowing_limit=r.borrowing_limit is not None,
                borrowing_limit=r.borrowing_limit or 0,
                in_use=r.in_use,
                pending_devices=r.pending_devices,
                pending_jobs=r.pending_jobs,
            )
            for r in q.rows
        ],
        in_use=q.in_use,
        running_jobs=q.running_jobs,
        pending_devices=q.pending_devices,
        pending_jobs=q.pending_jobs,
    )
