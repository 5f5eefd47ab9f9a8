"""A submitted spec as the placement engine's request (scheduler.placement.from_spec)."""

from __future__ import annotations

import pytest
from corral.v1 import job_pb2

from scheduler.placement.from_spec import placement_request
from scheduler.placement.request import PlacementRequest, Topology, TopologyLevel, WorkerShape
from scheduler.spec import parse_spec, spec_to_proto


def request_of(**fields: object) -> PlacementRequest:
    spec = parse_spec({"name": "a", "command": "x", **fields})
    return placement_request("j1", job_pb2.JobSpec.FromString(spec_to_proto(spec).SerializeToString()))


def test_defaults_are_one_cpu_only_worker_with_no_constraint() -> None:
    assert request_of() == PlacementRequest(job_id="j1")
    assert placement_request("j0", job_pb2.JobSpec()) == PlacementRequest(job_id="j0")  # workers 0 -> 1


def test_everything_maps() -> None:
    req = request_of(
        workers=4,
        devices_per_worker=8,
        accelerator={
            "vendors": ["nvidia", "ascend"],
            "models": ["H100-SXM5-80GB"],
            "min_memory": "64GiB",
            "min_tflops": 400,
        },
        resources={"cpu": "1500m", "memory": "16GiB"},
        topology={"pack": "island", "required": True},
    )
    assert req == PlacementRequest(
        job_id="j1",
        workers=4,
        shape=WorkerShape(devices=8, cpu_milli=1500, memory_mib=16 * 1024, island_required=True),
        vendors=("nvidia", "ascend"),
        models=("H100-SXM5-80GB",),
        min_memory_bytes=64 * 2**30,
        min_tflops=400.0,
        topology=Topology(TopologyLevel.ISLAND, required=True),
    )
    assert req.total_devices == 32


def test_a_share_of_a_device() -> None:
    req = request_of(workers=3, devices_per_worker=0.25)
    assert req.shape == WorkerShape(devices=1, device_milli=250)
    assert req.shape.shared and req.shape.total_milli == 250
    assert req.total_devices == 3


@pytest.mark.parametrize(
    ("memory", "mib"),
    [("1GiB", 1024), ("1GB", 954), (2**20 + 1, 2), (1, 1), ("512Mi", 512)],
)
def test_memory_is_rounded_up_to_whole_mib(memory: object, mib: int) -> None:
    assert request_of(resources={"memory": memory}).shape.memory_mib == mib


@pytest.mark.parametrize(
    ("topology", "level", "required", "island_required"),
    [
        (None, TopologyLevel.NONE, False, False),
        ({"pack": "island"}, TopologyLevel.ISLAND, False, False),
        ({"pack": "island", "required": True}, TopologyLevel.ISLAND, True, True),
        ({"pack": "node", "required": True}, TopologyLevel.NODE, True, False),
        ({"pack": "rack"}, TopologyLevel.RACK, False, False),
        ({"pack": "block", "required": True}, TopologyLevel.BLOCK, True, False),
    ],
)
def test_topology(
    topology: dict[str, object] | None, level: TopologyLevel, required: bool, island_required: bool
) -> None:
    req = request_of(workers=2, devices_per_worker=4, topology=topology)
    assert req.topology == Topology(level, required)
    assert req.shape.island_required is island_required


def test_wire_spellings_of_none() -> None:
    msg = job_pb2.JobSpec(workers=2, devices_per_worker=1, device_milli=1000)
    msg.topology.pack = ""
    req = placement_request("j", msg)
    assert (req.topology, req.shape.device_milli) == (Topology(), 1000)
    msg.topology.pack = "none"
    msg.topology.required = True  # refused by spec_from_proto; required of nothing is nothing
    assert placement_request("j", msg).topology == Topology()
