"""The placement engine: one request in, a gang placement (or the reason it waits) out.

Steps: the pools (vendor, model) the request accepts (a vendor allocation rule may refuse the
worker's device count, and says so in the reason), fastest first for this job; in each,
a single worker goes where the policy scores best; a gang first picks the topology domain
(node, rack or block) that holds it most tightly, then the fewest nodes in it. A gang is all
or nothing: allocations made while planning are rolled back if it does not fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from scheduler.catalog import model_key
from scheduler.placement.cluster import ANY_POOL, Allocation, ClusterState, NodeState
from scheduler.placement.fit import device_options, largest_block, worker_slots
from scheduler.placement.policies import Policy, Score
from scheduler.placement.request import PlacementRequest, Pool, TopologyLevel, WorkerShape

SpeedOf = Callable[[Pool], float | None]  # relative throughput of a model; None: unknown


@dataclass(frozen=True)
class WorkerSlot:
    rank: int
    node_name: str
    device_indices: tuple[int, ...]


@dataclass(frozen=True)
class PlacementDecision:
    slots: tuple[WorkerSlot, ...] | None
    reason: str = ""  # why it could not be placed, in one line
    pool: Pool = ANY_POOL
    allocations: tuple[Allocation, ...] = field(default=(), repr=False)
    largest_block: int = 0  # devices (or workers, for CPU-only) the best domain could give

    @property
    def placed(self) -> bool:
        return self.slots is not None


def _speed(request: PlacementRequest, speed_of: SpeedOf, pool: Pool) -> float:
    for model, rate in request.rates:
        if model_key(model) == model_key(pool[1]):
            return rate
    return speed_of(pool) or 0.0


def candidate_pools(request: PlacementRequest, cluster: ClusterState, speed_of: SpeedOf) -> list[list[Pool]]:
    """Accepted pools in tiers of equal speed, fastest tier first (unknown speed last)."""
    if request.shape.devices == 0:
        return [[ANY_POOL]]
    pools = [p for p in cluster.pools if request.accepts_pool(p)]
    if request.min_tflops:
        pools = [p for p in pools if (speed_of(p) or 0.0) >= request.min_tflops]
    tiers: dict[float, list[Pool]] = {}
    for p in pools:
        tiers.setdefault(_speed(request, speed_of, p), []).append(p)
    return [tiers[s] for s in sorted(tiers, reverse=True)]


def best_node(
    cluster: ClusterState,
    policy: Policy,
    pools: list[Pool],
    shape: WorkerShape,
    min_memory_bytes: int = 0,
) -> tuple[NodeState, Pool, tuple[int, ...]] | None:
    """The best (node, pool, devices) for one worker among `pools`, or None."""
    best: tuple[Score, int, NodeState, Pool, tuple[int, ...]] | None = None
    for pool in pools:
        groups = cluster.groups.get(pool, {})
        if policy.state_only:
            candidates = [cluster.nodes[next(iter(ids))] for ids in groups.values()]
        else:
            candidates = sorted(
                (cluster.nodes[i] for ids in groups.values() for i in ids), key=lambda n: n.id
            )
        for node in candidates:
            if node.cpu_free < shape.cpu_milli or node.memory_free < shape.memory_mib:
                continue
            for option in device_options(node, pool, shape, min_memory_bytes):
                s = policy.score(node, option, shape)
                if best is None or (s, node.id) < (best[0], best[1]):
                    best = (s, node.id, node, pool, option)
            if best is not None and not policy.state_only:
                break  # position-ordered policies: the first fit is the answer
    return None if best is None else (best[2], best[3], best[4])


def place(
    request: PlacementRequest,
    cluster: ClusterState,
    policy: Policy,
    speed_of: SpeedOf = lambda _: None,
) -> PlacementDecision:
    """Place `request` in `cluster` (changing it) or say why not (leaving it unchanged)."""
    tiers = candidate_pools(request, cluster, speed_of)
    if not any(tiers):
        refusals = "".join(f"; {why}" for why in _rule_refusals(request, cluster))
        return PlacementDecision(None, f"waiting: no connected device matches {request.describe()}{refusals}")
    shape = request.shape
    largest = 0
    for tier in tiers:
        if request.workers == 1 and request.topology.level in (TopologyLevel.NONE, TopologyLevel.ISLAND):
            found = best_node(cluster, policy, tier, shape, request.min_memory_bytes)
            if found is not None:
                node, pool, devices = found
                a = cluster.allocate(node, devices, shape.device_milli, shape.cpu_milli, shape.memory_mib)
                return PlacementDecision((WorkerSlot(0, node.name, devices),), pool=pool, allocations=(a,))
            largest = max(largest, _largest_single(cluster, tier, shape))
            continue
        for pool in tier:
            decision = _place_gang(request, cluster, policy, pool)
            if decision.placed:
                return decision
            largest = max(largest, decision.largest_block)
    unit = "workers" if shape.devices == 0 else "devices"
    return PlacementDecision(
        None,
        f"waiting: needs {request.describe()}; largest free block {largest} {unit}",
        largest_block=largest,
    )


def _rule_refusals(request: PlacementRequest, cluster: ClusterState) -> list[str]:
    """Why the allocation rules of the pools the request names refuse it, one line per model,
    unless the request's own description already states the rule (it names the model)."""
    if request.models:
        return []
    found: dict[str, None] = {}
    for pool in cluster.pools:
        if request.names_pool(pool):
            why = request.rule_refusal(pool)
            if why is not None:
                found.setdefault(why)
    return list(found)


def _largest_single(cluster: ClusterState, pools: list[Pool], shape: WorkerShape) -> int:
    """The most devices one node offers a lone worker (CPU and memory permitting), counting
    only what a model's allocation rule would let one worker have."""
    most = 0
    for pool in pools:
        for ids in cluster.groups.get(pool, {}).values():
            node = cluster.nodes[next(iter(ids))]
            if node.cpu_free >= shape.cpu_milli and node.memory_free >= shape.memory_mib:
                most = max(most, largest_block(node, pool, shape) if shape.devices else 1)
    return most


def _place_gang(
    request: PlacementRequest, cluster: ClusterState, policy: Policy, pool: Pool
) -> PlacementDecision:
    shape, level = request.shape, request.topology.level
    per_node: dict[int, int] = {}
    for ids in cluster.groups.get(pool, {}).values():
        for i in ids:
            n = worker_slots(cluster.nodes[i], pool, shape, request.min_memory_bytes)
            if n > 0:
                per_node[i] = n
    domain_level = (
        level.value if level in (TopologyLevel.NODE, TopologyLevel.RACK, TopologyLevel.BLOCK) else ""
    )
    domains: dict[str, list[int]] = {}
    for i in per_node:
        key = cluster.domain_of(cluster.nodes[i], domain_level) if domain_level else ""
        domains.setdefault(key, []).append(i)
    capacity = {k: sum(per_node[i] for i in ids) for k, ids in domains.items()}
    unit = max(shape.devices, 1)
    largest = max(capacity.values(), default=0) * unit
    fitting = [k for k, c in capacity.items() if c >= request.workers]
    if fitting:
        # The tightest domain that holds the gang keeps roomier ones for bigger gangs.
        chosen = [min(fitting, key=lambda k: (capacity[k], k))]
    elif request.topology.required or sum(capacity.values()) < request.workers:
        return PlacementDecision(None, largest_block=largest)
    else:
        chosen = sorted(capacity, key=lambda k: (-capacity[k], k))
    node_ids = [i for k in chosen for i in domains[k]]
    plan = _pack_nodes(request.workers, node_ids, per_node, cluster, policy, pool, shape)
    return _allocate(request, cluster, pool, plan, largest)


def _pack_nodes(
    workers: int,
    node_ids: list[int],
    per_node: dict[int, int],
    cluster: ClusterState,
    policy: Policy,
    pool: Pool,
    shape: WorkerShape,
) -> list[tuple[int, int]]:
    """(node id, workers) covering the gang on as few nodes as possible: roomiest nodes
    first, then the tightest node that holds the remainder; the policy breaks ties."""

    def tie(i: int) -> Score:
        node = cluster.nodes[i]
        options = device_options(node, pool, shape)
        return policy.score(node, options[0], shape) if options and policy.state_only else (float(i),)

    remaining = workers
    plan: list[tuple[int, int]] = []
    pool_ids = sorted(node_ids, key=lambda i: (-per_node[i], i))
    used: set[int] = set()
    while remaining > 0:
        holding = [i for i in pool_ids if i not in used and per_node[i] >= remaining]
        if holding:
            tightest = min(per_node[i] for i in holding)
            best = min((i for i in holding if per_node[i] == tightest), key=lambda i: (tie(i), i))
            plan.append((best, remaining))
            break
        roomiest = next(i for i in pool_ids if i not in used)
        used.add(roomiest)
        plan.append((roomiest, per_node[roomiest]))
        remaining -= per_node[roomiest]
    return plan


def _allocate(
    request: PlacementRequest,
    cluster: ClusterState,
    pool: Pool,
    plan: list[tuple[int, int]],
    largest: int,
) -> PlacementDecision:
    shape = request.shape
    slots: list[WorkerSlot] = []
    allocations: list[Allocation] = []
    for node_id, count in plan:
        node = cluster.nodes[node_id]
        for _ in range(count):
            options = device_options(node, pool, shape, request.min_memory_bytes)
            if not options:  # islands left too small: give back what this gang took
                for a in reversed(allocations):
                    cluster.release(a)
                return PlacementDecision(None, largest_block=largest)
            devices = options[0]
            allocations.append(
                cluster.allocate(node, devices, shape.device_milli, shape.cpu_milli, shape.memory_mib)
            )
            slots.append(WorkerSlot(len(slots), node.name, devices))
    return PlacementDecision(tuple(slots), pool=pool, allocations=tuple(allocations), largest_block=largest)
