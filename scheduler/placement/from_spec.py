"""A submitted job's spec (`corral.v1.JobSpec`) as the placement engine's request.

The spec is expected to have passed `scheduler.spec.spec_from_proto` (the server stores the
normalised message): this only translates, it does not validate again. Zero values mean what
they mean on the wire: device_milli 0 = whole devices, cpu_milli / memory_bytes 0 = none
reserved, min_memory_bytes / min_tflops 0 = no minimum, topology unset or pack "" = none.
"""

from __future__ import annotations

from corral.v1 import job_pb2

from scheduler.placement.request import WHOLE, PlacementRequest, Topology, TopologyLevel, WorkerShape

MIB = 2**20


def placement_request(job_id: str, spec: job_pb2.JobSpec) -> PlacementRequest:
    """corral.v1.JobSpec -> PlacementRequest (one WorkerShape for every worker of the gang)."""
    pack = TopologyLevel(spec.topology.pack or TopologyLevel.NONE.value)
    required = bool(spec.topology.required) and pack is not TopologyLevel.NONE
    acc = spec.accelerator
    return PlacementRequest(
        job_id=job_id,
        workers=spec.workers or 1,
        shape=WorkerShape(
            devices=spec.devices_per_worker,
            device_milli=spec.device_milli or WHOLE,
            cpu_milli=spec.cpu_milli,
            memory_mib=-(-spec.memory_bytes // MIB),  # rounded up: never reserve less than asked
            island_required=pack is TopologyLevel.ISLAND and required,
        ),
        vendors=tuple(acc.vendors),
        models=tuple(acc.models),
        min_memory_bytes=acc.min_memory_bytes,
        min_tflops=acc.min_tflops,
        topology=Topology(level=pack, required=required),
    )
