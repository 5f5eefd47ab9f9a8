"""First-fit gang placement of whole devices.

A gang is all-or-nothing and never mixes device models (their collective libraries and
speeds differ), so each (vendor, model) pool is tried on its own, nodes in name order,
each worker's devices on one node. The placement engine issue replaces this policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.placement.types import NodeCapacity, PlacementDecision, PlacementRequest, WorkerSlot


def first_fit(request: PlacementRequest, nodes: Sequence[NodeCapacity]) -> PlacementDecision:
    ordered = sorted(nodes, key=lambda n: n.name)
    if not ordered:
        return PlacementDecision(None, "no schedulable node is connected")
    if request.devices_per_worker == 0:
        first = ordered[0].name
        return PlacementDecision(tuple(WorkerSlot(rank, first, ()) for rank in range(request.workers)))

    pools = sorted({(d.vendor, d.model) for n in ordered for d in n.free_devices if request.accepts(d)})
    largest_block = 0
    for vendor, model in pools:
        free = {
            n.name: sorted(
                d.index
                for d in n.free_devices
                if (d.vendor, d.model) == (vendor, model) and request.accepts(d)
            )
            for n in ordered
        }
        largest_block = max(largest_block, *(len(v) for v in free.values()))
        slots: list[WorkerSlot] = []
        for rank in range(request.workers):
            node = next(
                (name for name, devs in free.items() if len(devs) >= request.devices_per_worker), None
            )
            if node is None:
                break
            taken, free[node] = (
                free[node][: request.devices_per_worker],
                free[node][request.devices_per_worker :],
            )
            slots.append(WorkerSlot(rank, node, tuple(taken)))
        else:
            return PlacementDecision(tuple(slots))
    if not pools:
        return PlacementDecision(None, f"waiting: no free device matches {request.describe()}")
    return PlacementDecision(
        None,
        f"waiting: needs {request.describe()}; "
        f"largest free block of one model on one node is {largest_block}",
    )
