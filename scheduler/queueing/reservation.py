"""Where the head-of-line gang will go once enough frees up, so a pass can keep it clear.

Kept simple on purpose, since nothing says when running jobs end: in each pool the gang
accepts, the candidate domains are those of its topology level (node, rack or block; the
whole cluster when it may span; one node for a single worker) whose devices, were they all
free, could hold it. In each, take the nodes with the most free devices now until their
full capacity covers the gang; the domain whose pick has the most free devices wins (ties:
fewer nodes, then domain name, then pool). Those nodes are hidden from lower-ranked jobs
for the rest of the pass, so what frees there accumulates for the gang instead of being
taken by small jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.placement.cluster import ClusterState, NodeState
from scheduler.placement.request import WHOLE, PlacementRequest, Pool, TopologyLevel, WorkerShape


@dataclass(frozen=True)
class Reservation:
    pool: Pool
    node_ids: tuple[int, ...]


def is_gang(request: PlacementRequest) -> bool:
    return request.total_devices >= 2 and request.shape.device_milli == WHOLE


def _full_slots(node: NodeState, pool: Pool, shape: WorkerShape, min_memory_bytes: int) -> int:
    """Workers of `shape` the node could hold were everything on it free."""
    devices = len(node.usable(pool, min_memory_bytes))
    by_cpu = node.cpu_milli // shape.cpu_milli if shape.cpu_milli else devices
    by_mem = node.memory_mib // shape.memory_mib if shape.memory_mib else devices
    return min(devices // shape.devices, by_cpu, by_mem)


def _free_devices(node: NodeState, pool: Pool, min_memory_bytes: int) -> int:
    return sum(1 for d in node.usable(pool, min_memory_bytes) if d.milli_free == WHOLE)


def _domain_key(request: PlacementRequest, cluster: ClusterState, node: NodeState, spanning: bool) -> str:
    level = request.topology.level
    if request.workers == 1 or level is TopologyLevel.NODE:
        return node.name
    if level in (TopologyLevel.RACK, TopologyLevel.BLOCK) and not spanning:
        return cluster.domain_of(node, level.value)
    return ""


def choose_reservation(
    request: PlacementRequest, pools: list[Pool], cluster: ClusterState
) -> Reservation | None:
    shape = request.shape
    best: tuple[tuple[int, int, str, Pool], Reservation] | None = None
    for pool in sorted(pools):
        ids = sorted(i for group in cluster.groups.get(pool, {}).values() for i in group)
        # Free devices, not free worker slots: 3 of 4 free beats 1 of 4 though neither
        # holds a 4-device worker yet.
        free = {i: _free_devices(cluster.nodes[i], pool, request.min_memory_bytes) for i in ids}
        full = {i: _full_slots(cluster.nodes[i], pool, shape, request.min_memory_bytes) for i in ids}
        # A preferred (not required) rack or block falls back to the whole cluster, as the engine does.
        spans = (False,) if request.topology.required else (False, True)
        for spanning in spans:
            found_here = False
            domains: dict[str, list[int]] = {}
            for i in ids:
                if full[i] > 0:
                    domains.setdefault(_domain_key(request, cluster, cluster.nodes[i], spanning), []).append(
                        i
                    )
            for key, members in domains.items():
                if sum(full[i] for i in members) < request.workers:
                    continue
                chosen: list[int] = []
                covered = 0
                for i in sorted(members, key=lambda i: (-free[i], -full[i], i)):
                    chosen.append(i)
                    covered += full[i]
                    if covered >= request.workers:
                        break
                found_here = True
                rank = (-sum(free[i] for i in chosen), len(chosen), key, pool)
                if best is None or rank < best[0]:
                    best = (rank, Reservation(pool, tuple(sorted(chosen))))
            if found_here:
                break
    return None if best is None else best[1]
