"""From the control plane's records to one scheduling pass's inputs, and back.

Each pass sees a fresh snapshot: connected nodes and their healthy devices, minus what the
workers of unfinished attempts hold (their job's share of each device, CPU and memory). The
decisions themselves come from `scheduler.queueing.schedule_pass`, the same code the
simulator runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field

from corral.v1 import job_pb2

from scheduler.catalog import DeviceCatalog
from scheduler.jobstate import JobState
from scheduler.model import DeviceRecord, JobRecord
from scheduler.placement.cluster import UNLIMITED, Allocation, ClusterState, DeviceState, NodeState
from scheduler.placement.engine import SpeedOf
from scheduler.placement.from_spec import placement_request
from scheduler.placement.request import WHOLE, PlacementRequest, Pool
from scheduler.placement.taskmix import TaskMix
from scheduler.queueing.types import PendingJob, RunningJob
from scheduler.server.nodes import NodeRuntime

RACK_LABEL = "rack"
BLOCK_LABEL = "block"
MIB = 1 << 20


@dataclass
class PassInputs:
    cluster: ClusterState
    pending: list[PendingJob] = field(default_factory=list)
    running: list[RunningJob] = field(default_factory=list)
    requests: dict[str, PlacementRequest] = field(default_factory=dict)  # every unfinished job's


def island_of(d: DeviceRecord) -> int:
    """Devices that list each other as fabric peers share an island; name it by its lowest index."""
    return min([d.index, *d.peer_indices])


def node_state(rt: NodeRuntime, held_back: bool = False) -> NodeState:
    r = rt.record
    return NodeState(
        name=r.name,
        devices=[
            DeviceState(
                index=d.index,
                pool=(d.vendor, d.model),
                memory_bytes=d.memory_bytes,
                island=island_of(d),
                healthy=d.health != "UNHEALTHY",
            )
            for d in r.devices
        ],
        cpu_milli=r.cpu_count * 1000 if r.cpu_count else UNLIMITED,
        memory_mib=r.memory_bytes // MIB if r.memory_bytes else UNLIMITED,
        rack=r.labels.get(RACK_LABEL, ""),
        block=r.labels.get(BLOCK_LABEL, ""),
        schedulable=rt.schedulable and not held_back,
    )


def pass_inputs(
    nodes: Iterable[NodeRuntime],
    jobs: Iterable[JobRecord],
    spec_of: dict[str, job_pb2.JobSpec],
    now: float,
    made_room_for: Set[str] = frozenset(),
    victims_stopping_for: Set[str] = frozenset(),
    held_back: Set[str] = frozenset(),
) -> PassInputs:
    """`spec_of` maps every unfinished job's id to its spec (parsed once by the caller);
    `made_room_for` names pending jobs running work was preempted for, and
    `victims_stopping_for` those of them whose victims still hold devices; `held_back` nodes
    (hot spares) take no new work in this pass."""
    cluster = ClusterState(node_state(rt, rt.record.name in held_back) for rt in nodes)
    out = PassInputs(cluster)
    for job in jobs:
        spec = spec_of.get(job.id)
        if spec is None:
            continue
        request = out.requests[job.id] = placement_request(job.id, spec)
        shape = request.shape
        holders = [w for a in job.attempts for w in a.workers if w.phase.holds_devices]
        allocations = []
        for w in holders:
            node = cluster.by_name.get(w.node_name)
            if node is None:
                continue
            indices = tuple(i for i in w.device_indices if any(d.index == i for d in node.devices))
            # Never fail the pass over a record that no longer matches the node (a device
            # gone, an over-commit after a restart): take what is there.
            milli = min([shape.device_milli, *(node.device(i).milli_free for i in indices)])
            allocations.append(cluster.allocate(node, indices, milli, shape.cpu_milli, shape.memory_mib))
        if job.state is JobState.PENDING:
            out.pending.append(
                PendingJob(
                    job.id,
                    job.queue,
                    job.priority,
                    job.created_at,
                    request,
                    made_room=job.id in made_room_for,
                    victims_stopping=job.id in victims_stopping_for,
                )
            )
        elif job.state in (JobState.PLACED, JobState.RUNNING, JobState.CHECKPOINTING) and allocations:
            attempt = job.current_attempt
            assert attempt is not None
            since = max([attempt.started_at, *(w.checkpoint_at for w in attempt.workers if w.checkpoint_at)])
            out.running.append(
                RunningJob(
                    job_id=job.id,
                    queue=job.queue,
                    priority=job.priority,
                    started_at=attempt.started_at,
                    pool=pool_of(cluster, allocations[0].node_id, allocations[0].device_indices),
                    allocations=tuple(allocations),
                    devices=sum(len(a.device_indices) * a.device_milli for a in allocations) // WHOLE,
                    seconds_since_checkpoint=max(0.0, now - since),
                )
            )
    return out


# Jobs whose holdings count as a queue's usage: what a pass counts as running.
HOLDING_STATES = frozenset({JobState.PLACED, JobState.RUNNING, JobState.CHECKPOINTING})


def usage_inputs(
    nodes: Iterable[NodeRuntime], jobs: Iterable[JobRecord], spec_of: Callable[[JobRecord], job_pb2.JobSpec]
) -> tuple[list[RunningJob], ClusterState, list[PendingJob]]:
    """What `queue_usage` reads, as `pass_inputs` would give it, without a placement snapshot
    of every node (about a second at 10,000 busy nodes, on the loop, for every `corral queues`
    and dashboard refresh): each running gang's holdings from its workers (device indices the
    node still has, at the gang's share per device), and a cluster of one stand-in node per
    pool that schedulable nodes offer (`queue_usage` reads only `cluster.pools`)."""
    by_name = {rt.record.name: rt for rt in nodes}
    running: list[RunningJob] = []
    pending: list[PendingJob] = []
    for job in jobs:
        if job.state is JobState.PENDING:
            request = placement_request(job.id, spec_of(job))
            pending.append(PendingJob(job.id, job.queue, job.priority, job.created_at, request))
            continue
        if job.state not in HOLDING_STATES:
            continue
        # The share of each device a worker holds, as placement_request reads it off the spec.
        milli = spec_of(job).device_milli or WHOLE
        allocations: list[Allocation] = []
        pool: Pool | None = None
        for attempt in job.attempts:
            if attempt.ended_at is not None:  # over: none of its workers holds a device
                continue
            for w in attempt.workers:
                rt = by_name.get(w.node_name) if w.phase.holds_devices else None
                if rt is None:
                    continue
                indices = tuple(i for i in w.device_indices if i in rt.devices_by_index)
                if pool is None:
                    first = rt.devices_by_index[indices[0]] if indices else None
                    pool = (first.vendor, first.model) if first is not None else ("", "")
                # queue_usage reads only the devices and the share; CPU and memory stay 0.
                allocations.append(Allocation(0, indices, milli, 0, 0))
        if allocations and pool is not None and job.current_attempt is not None:
            running.append(
                RunningJob(
                    job_id=job.id,
                    queue=job.queue,
                    priority=job.priority,
                    started_at=job.current_attempt.started_at,
                    pool=pool,
                    allocations=tuple(allocations),
                    devices=sum(len(a.device_indices) * a.device_milli for a in allocations) // WHOLE,
                )
            )
    offered = {(d.vendor, d.model) for rt in by_name.values() if rt.schedulable for d in rt.record.devices}
    stand_ins = ClusterState(
        NodeState(f"pool-{i}", [DeviceState(0, pool)]) for i, pool in enumerate(sorted(offered))
    )
    return running, stand_ins, pending


def pool_of(cluster: ClusterState, node_id: int, indices: tuple[int, ...]) -> Pool:
    node = cluster.nodes[node_id]
    return node.device(indices[0]).pool if indices else ("", "")


def task_mix(requests: Iterable[PlacementRequest]) -> TaskMix:
    """The live policy's expected mix: the requests of unfinished jobs (the default mix
    while there are none)."""
    shaped = [(r.shape, r.models) for r in requests if r.shape.devices]
    return TaskMix.from_requests(shaped) if shaped else TaskMix.default()


def catalog_speed(catalog: DeviceCatalog) -> SpeedOf:
    def speed_of(pool: Pool) -> float | None:
        model = catalog.get(pool[0], pool[1])
        return model.dense_tflops if model is not None else None

    return speed_of
