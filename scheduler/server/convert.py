"""Control-plane records to wire messages."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from corral.v1 import cluster_pb2, common_pb2, job_pb2, node_pb2
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from scheduler.model import AttemptRecord, CheckpointRecord, DeviceRecord, JobRecord
from scheduler.queueing.usage import QueueUsage
from scheduler.reliability.health_state import HealthBook, HistoryEntry
from scheduler.reliability.lemon import LemonVerdict
from scheduler.reliability.report import ReliabilityReportData
from scheduler.server.nodes import HEALTH_NAMES, NodeRuntime

# Bounds on what one Node or Job message carries, so that a flapping device or a job that
# checkpoints every few seconds cannot make `corral node`/`corral job` replies grow without end.
HEALTH_HISTORY_LIMIT = 100
CHECKPOINTS_LIMIT = 20


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
        board_id=d.board_id,
        source=d.source,
    )


def health_history(book: HealthBook, name: str) -> list[node_pb2.HealthChange]:
    """The node's own changes (device -1) and its devices', merged oldest first, the newest
    HEALTH_HISTORY_LIMIT kept."""
    entries: list[tuple[int, HistoryEntry]] = [(-1, h) for h in book.node(name).history]
    for (node, index), record in book.devices.items():
        if node == name:
            entries += [(index, h) for h in record.history]
    # Stable on equal times: the node's entry first, then devices by index.
    entries.sort(key=lambda e: (e[1].at, e[0]))
    return [
        node_pb2.HealthChange(
            at=timestamp(h.at),
            device_index=index,
            from_state=h.from_state.value,
            to_state=h.to_state.value,
            reason=h.reason,
        )
        for index, h in entries[-HEALTH_HISTORY_LIMIT:]
    ]


def lemon_evidence(verdict: LemonVerdict | None) -> list[node_pb2.LemonEvidence]:
    if verdict is None:
        return []
    return [
        node_pb2.LemonEvidence(
            at=timestamp(f.at), job_id=f.job_id, attempt=f.attempt, signals="; ".join(f.signals)
        )
        for f in sorted(verdict.evidence, key=lambda f: f.at)
    ]


def node_to_proto(
    rt: NodeRuntime,
    devices_free: int,
    workloads: list[str],
    *,
    health: HealthBook | None = None,
    lemon: LemonVerdict | None = None,
    hot_spare: bool = False,
) -> node_pb2.Node:
    """`health` None: no health book (the node is reported HEALTHY with no history)."""
    r = rt.record
    book = health if health is not None else HealthBook()
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
        health=book.node(r.name).state.value,
        health_history=health_history(book, r.name),
        lemon_evidence=lemon_evidence(lemon),
        hot_spare=hot_spare,
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
        cause=a.cause,
        blame=a.blame,
        resumed_from_step=a.resumed_from_step,
        resume_path=a.resume_path,
        lost_s=a.lost_s,
        failed_at=timestamp(a.failed_at),
        detect_s=a.detect_s,
        restart_s=a.restart_s,
    )


def checkpoint_to_proto(c: CheckpointRecord) -> job_pb2.Checkpoint:
    return job_pb2.Checkpoint(
        attempt=c.attempt,
        rank=c.rank,
        step=c.step,
        path=c.path,
        at=timestamp(c.at),
        size_bytes=c.size_bytes,
        duration_s=c.duration_s,
        complete=c.complete,
        trigger=c.trigger,
    )


def job_to_proto(
    job: JobRecord, *, checkpoints: Sequence[CheckpointRecord] = (), checkpoint_interval: str = ""
) -> job_pb2.Job:
    """`checkpoints`: the job's, newest last; the newest CHECKPOINTS_LIMIT are sent."""
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
        checkpoints=[checkpoint_to_proto(c) for c in list(checkpoints)[-CHECKPOINTS_LIMIT:]],
        checkpoint_interval=checkpoint_interval,
        lost_device_s=job.lost_device_s,
    )


def cluster_event(row: Mapping[str, Any]) -> cluster_pb2.ClusterEvent:
    """An events-table row as `corral events` reads it; cause and blame lifted out of data."""
    raw = row.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return cluster_pb2.ClusterEvent(
        id=int(row["id"]),
        at=timestamp(float(row["at"])),
        kind=str(row["kind"]),
        job_id=row.get("job_id") or "",
        node_name=row.get("node_name") or "",
        message=str(row.get("message") or ""),
        cause=str(data.get("cause") or ""),
        blame=str(data.get("blame") or ""),
        # default=str: data is written by many code paths; an odd value must not fail the query.
        data_json=json.dumps(data, sort_keys=True, default=str),
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


def reliability_report(r: ReliabilityReportData) -> cluster_pb2.ReliabilityReport:
    return cluster_pb2.ReliabilityReport(
        since=timestamp(r.since),
        until=timestamp(r.until),
        interruptions=r.interruptions,
        unexpected=r.unexpected,
        by_cause=[
            cluster_pb2.InterruptionRow(
                component=row.component,
                category=row.category,
                blame=row.blame,
                count=row.count,
                share=row.share,
                lost_gpu_hours=row.lost_gpu_hours,
                unexpected=row.unexpected,
            )
            for row in r.by_cause
        ],
        mtbf=[
            cluster_pb2.MtbfRow(
                component=m.component,
                vendor=m.vendor,
                model=m.model,
                device_hours=m.device_hours,
                failures=m.failures,
                mtbf_hours=m.mtbf_hours,
            )
            for m in r.mtbf
        ],
        fleet_ettr=r.fleet_ettr,
        gpu_time=cluster_pb2.GpuTime(
            productive_s=r.gpu_time.productive_s,
            recompute_lost_s=r.gpu_time.recompute_lost_s,
            restart_lost_s=r.gpu_time.restart_lost_s,
            queued_s=r.gpu_time.queued_s,
            idle_s=r.gpu_time.idle_s,
        ),
        jobs=[
            cluster_pb2.JobReliability(
                job_id=j.job_id,
                name=j.name,
                state=j.state,
                devices=math.ceil(j.devices),  # a share of one device still occupies one
                ettr=j.ettr,
                productive_gpu_hours=j.productive_gpu_hours,
                lost_gpu_hours=j.lost_gpu_hours,
                interruptions=j.interruptions,
            )
            for j in r.jobs
        ],
        recovery=[
            cluster_pb2.PhaseDurations(
                phase=p.phase, count=p.count, p50_s=p.p50_s, p95_s=p.p95_s, max_s=p.max_s
            )
            for p in r.recovery
        ],
        lost_gpu_hours=r.lost_gpu_hours,
        devices=r.devices,
    )
