"""Which devices of a node could host one worker: the feasibility rules every policy shares."""

from __future__ import annotations

from scheduler.placement.cluster import NodeState
from scheduler.placement.request import WHOLE, Pool, WorkerShape


def fits_resources(node: NodeState, shape: WorkerShape) -> bool:
    return node.cpu_free >= shape.cpu_milli and node.memory_free >= shape.memory_mib


def device_options(
    node: NodeState, pool: Pool, shape: WorkerShape, min_memory_bytes: int = 0
) -> list[tuple[int, ...]]:
    """Device sets on `node` that could host one worker of `shape`; empty when none.

    A shared (fractional) worker gets one option per distinct (island, free share) so a
    policy can choose which partly used device to fill. Whole devices are interchangeable
    except for their island, so there is one option: the island that fits most tightly
    (keeping bigger free islands for bigger workers), or, when the worker may span islands,
    the fewest islands, fullest first.
    """
    if not fits_resources(node, shape):
        return []
    if shape.devices == 0:
        return [()]
    if shape.shared:
        seen: dict[tuple[int, int], int] = {}
        for d in node.usable(pool, min_memory_bytes):
            if d.milli_free >= shape.device_milli:
                seen.setdefault((d.island, d.milli_free), d.index)
        return [(i,) for i in seen.values()]
    if node.whole_free.get(pool, 0) < shape.devices:  # cheap, and usually decides it
        return []
    islands: dict[int, list[int]] = {}
    for d in node.usable(pool, min_memory_bytes):
        if d.milli_free == WHOLE:
            islands.setdefault(d.island, []).append(d.index)
    fitting = [ids for ids in islands.values() if len(ids) >= shape.devices]
    if fitting:
        tightest = min(fitting, key=lambda ids: (len(ids), ids[0]))
        return [tuple(tightest[: shape.devices])]
    if shape.island_required:
        return []
    chosen: list[int] = []
    for ids in sorted(islands.values(), key=lambda ids: (-len(ids), ids[0])):
        chosen.extend(ids[: shape.devices - len(chosen)])
        if len(chosen) == shape.devices:
            return [tuple(sorted(chosen))]
    return []


def worker_slots(node: NodeState, pool: Pool, shape: WorkerShape, min_memory_bytes: int = 0) -> int:
    """How many whole-device workers of `shape` the node could take at once (islands ignored)."""
    by_cpu = node.cpu_free // shape.cpu_milli if shape.cpu_milli else 1 << 30
    by_mem = node.memory_free // shape.memory_mib if shape.memory_mib else 1 << 30
    if shape.devices == 0:
        return min(by_cpu, by_mem, 1 << 20)
    if min_memory_bytes:
        whole = sum(1 for d in node.usable(pool, min_memory_bytes) if d.milli_free == WHOLE)
    else:
        whole = node.whole_free.get(pool, 0)
    return min(whole // shape.devices, by_cpu, by_mem)
