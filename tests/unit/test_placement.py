from __future__ import annotations

from scheduler.model import DeviceRecord
from scheduler.placement import NodeCapacity, PlacementRequest, first_fit


def devices(node: str, vendor: str, model: str, n: int, mem_gib: int = 80) -> tuple[DeviceRecord, ...]:
    return tuple(DeviceRecord(node, i, vendor, model, memory_bytes=mem_gib * 2**30) for i in range(n))


CLUSTER = [
    NodeCapacity("h100-0", devices("h100-0", "nvidia", "H100-SXM5-80GB", 8)),
    NodeCapacity("h100-1", devices("h100-1", "nvidia", "H100-SXM5-80GB", 3)),
    NodeCapacity("ascend-0", devices("ascend-0", "huawei", "Ascend-910B", 8, 64)),
]


def test_gang_goes_on_first_node_with_room_and_ranks_are_ordered() -> None:
    d = first_fit(PlacementRequest("j", workers=2, devices_per_worker=4, vendors=("nvidia",)), CLUSTER)
    assert d.slots is not None
    assert [(s.rank, s.node_name, s.device_indices) for s in d.slots] == [
        (0, "h100-0", (0, 1, 2, 3)),
        (1, "h100-0", (4, 5, 6, 7)),
    ]


def test_never_mixes_vendors_in_one_gang() -> None:
    # 8 free H100 + 3 free H100 + 8 Ascend: 3 workers x 4 fit only if vendors mixed.
    d = first_fit(PlacementRequest("j", workers=3, devices_per_worker=4), CLUSTER)
    assert d.slots is None
    assert "largest free block" in d.reason
    d = first_fit(PlacementRequest("j", workers=2, devices_per_worker=4), CLUSTER)
    assert d.slots is not None
    vendors = {
        dev.vendor
        for n in CLUSTER
        for dev in n.free_devices
        for s in d.slots
        if s.node_name == n.name and dev.index in s.device_indices
    }
    assert len(vendors) == 1


def test_all_or_nothing_when_gang_does_not_fit() -> None:
    d = first_fit(PlacementRequest("j", workers=4, devices_per_worker=4, vendors=("nvidia",)), CLUSTER)
    assert not d.placed
    assert "4 × 4 devices (vendor nvidia)" in d.reason


def test_memory_and_model_constraints() -> None:
    req = PlacementRequest("j", workers=1, devices_per_worker=2, min_memory_bytes=70 * 2**30)
    d = first_fit(req, CLUSTER)
    assert d.slots is not None and d.slots[0].node_name.startswith("h100")
    d = first_fit(PlacementRequest("j", workers=1, devices_per_worker=1, models=("MLU370-X8",)), CLUSTER)
    assert not d.placed and "no free device matches" in d.reason


def test_cpu_only_workers_and_empty_cluster() -> None:
    d = first_fit(PlacementRequest("j", workers=2, devices_per_worker=0), CLUSTER)
    assert d.slots is not None and all(s.device_indices == () for s in d.slots)
    assert "no schedulable node" in first_fit(PlacementRequest("j", 1, 1), []).reason
