"""The cluster as placement sees it: nodes, their devices and what is still free.

A `ClusterState` is a snapshot the engine may change: the live control plane builds one per
scheduling pass from its registry, the simulator keeps one for a whole run. Nodes in exactly
the same state (same free CPU, memory and devices) are grouped under one *signature*, so a
policy whose score depends only on a node's state scores each group once instead of each
node: an empty 10,000-node cluster is a handful of groups. For models whose devices go in
index-aligned units (an Ascend 910C's die pairs) the signature also counts the free units, since
two nodes with as many free dies may hold different numbers of whole pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from scheduler.catalog import allocation_rule
from scheduler.placement.request import WHOLE, Pool

ANY_POOL: Pool = ("", "")  # the group index every node is in, for CPU-only workers
UNLIMITED = 1 << 62  # CPU or memory a node did not report: never the limiting resource

# (vendor, model, island, count): milli free on one device, or free whole units on an island
_PerIsland = tuple[tuple[str, str, int, int], ...]
# (cpu_free, memory_free, cpu_total, memory_total, per device (vendor, model, island, milli_free),
#  per island of an aligned-unit model (vendor, model, island, free units))
Signature = tuple[int, int, int, int, _PerIsland, _PerIsland]


@dataclass(eq=False, slots=True)
class DeviceState:
    index: int
    pool: Pool
    memory_bytes: int = 0
    island: int = 0
    milli_free: int = WHOLE
    healthy: bool = True


@dataclass(eq=False)
class NodeState:
    name: str
    devices: list[DeviceState] = field(default_factory=list)
    cpu_milli: int = UNLIMITED
    memory_mib: int = UNLIMITED
    rack: str = ""
    block: str = ""
    schedulable: bool = True
    id: int = -1  # set by ClusterState
    cpu_free: int = -1
    memory_free: int = -1
    signature: Signature = (0, 0, 0, 0, (), ())
    whole_free: dict[Pool, int] = field(default_factory=dict)
    _usable: dict[tuple[Pool, int], list[DeviceState]] = field(default_factory=dict, repr=False)
    _aligned: tuple[tuple[Pool, int], ...] = field(default=(), repr=False)  # (pool, unit) with unit > 1

    def __post_init__(self) -> None:
        if self.cpu_free < 0:
            self.cpu_free = self.cpu_milli
        if self.memory_free < 0:
            self.memory_free = self.memory_mib
        self.devices.sort(key=lambda d: d.index)
        units = {pool: _unit_of(pool) for pool in {d.pool for d in self.devices}}
        self._aligned = tuple(sorted((pool, unit) for pool, unit in units.items() if unit > 1))

    @property
    def pools(self) -> set[Pool]:
        return {d.pool for d in self.devices}

    def device(self, index: int) -> DeviceState:
        for d in self.devices:
            if d.index == index:
                return d
        raise KeyError(f"node {self.name} has no device {index}")

    def usable(self, pool: Pool, min_memory_bytes: int = 0) -> list[DeviceState]:
        """Healthy devices of `pool` with enough memory, whatever is free on them: the hottest
        call of a placement, so kept until the node changes (`refresh`)."""
        key = (pool, min_memory_bytes)
        found = self._usable.get(key)
        if found is None:
            found = self._usable[key] = [
                d for d in self.devices if d.pool == pool and d.healthy and d.memory_bytes >= min_memory_bytes
            ]
        return found

    def free_milli(self) -> int:
        return sum(d.milli_free for d in self.devices if d.healthy)

    def refresh(self) -> None:
        self._usable.clear()
        self.whole_free = {}
        for d in self.devices:
            if d.healthy and d.milli_free == WHOLE:
                self.whole_free[d.pool] = self.whole_free.get(d.pool, 0) + 1
        self.signature = (
            self.cpu_free,
            self.memory_free,
            self.cpu_milli,
            self.memory_mib,
            tuple(
                sorted(
                    (d.pool[0], d.pool[1], d.island, d.milli_free if d.healthy else -1) for d in self.devices
                )
            ),
            self._free_units() if self._aligned else (),
        )

    def _free_units(self) -> _PerIsland:
        """Free whole units per island for the models whose devices go in aligned units."""
        out: dict[tuple[str, str, int], int] = {}
        for pool, unit in self._aligned:
            members: dict[int, list[DeviceState]] = {}
            for d in self.devices:
                if d.pool == pool:
                    members.setdefault(d.index // unit, []).append(d)
            for group in members.values():
                if len(group) == unit and all(d.healthy and d.milli_free == WHOLE for d in group):
                    key = (pool[0], pool[1], group[0].island)
                    out[key] = out.get(key, 0) + 1
        return tuple(sorted((v, m, island, n) for (v, m, island), n in out.items()))


def _unit_of(pool: Pool) -> int:
    rule = allocation_rule(*pool)
    return rule.unit if rule is not None else 1


@dataclass(frozen=True)
class Allocation:
    """One worker's share of one node: what `ClusterState.release` gives back."""

    node_id: int
    device_indices: tuple[int, ...]
    device_milli: int
    cpu_milli: int
    memory_mib: int


class ClusterState:
    def __init__(self, nodes: Iterable[NodeState] = ()) -> None:
        self.nodes: list[NodeState] = []
        self.by_name: dict[str, NodeState] = {}
        # pool -> signature -> ids of schedulable nodes in that state (int ids: deterministic order)
        self.groups: dict[Pool, dict[Signature, set[int]]] = {}
        self.racks: dict[str, list[int]] = {}
        self.blocks: dict[str, list[int]] = {}
        self.version = 0  # bumped on every change, so callers can cache per state
        # Healthy devices per pool in milli, whatever is free on them: fair share's yardstick,
        # kept up to date here so a scheduling pass need not walk every device.
        self.capacity: dict[Pool, int] = {}
        for n in nodes:
            self.add(n)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[NodeState]:
        return iter(self.nodes)

    def add(self, node: NodeState) -> NodeState:
        if node.name in self.by_name:
            raise ValueError(f"node {node.name!r} is already in the cluster")
        node.id = len(self.nodes)
        self.nodes.append(node)
        self.by_name[node.name] = node
        self.racks.setdefault(node.rack, []).append(node.id)
        self.blocks.setdefault(node.block, []).append(node.id)
        node.refresh()
        self._count(node, +1)
        self._index(node)
        return node

    def _count(self, node: NodeState, sign: int) -> None:
        for d in node.devices:
            if d.healthy:
                self.capacity[d.pool] = self.capacity.get(d.pool, 0) + sign * WHOLE

    @property
    def pools(self) -> list[Pool]:
        return sorted(p for p, g in self.groups.items() if p != ANY_POOL and g)

    def _index(self, node: NodeState) -> None:
        self.version += 1
        if not node.schedulable:
            return
        for pool in (*node.pools, ANY_POOL):
            self.groups.setdefault(pool, {}).setdefault(node.signature, set()).add(node.id)

    def _unindex(self, node: NodeState) -> None:
        if not node.schedulable:
            return
        for pool in (*node.pools, ANY_POOL):
            by_sig = self.groups[pool]
            ids = by_sig[node.signature]
            ids.discard(node.id)
            if not ids:
                del by_sig[node.signature]

    def update(self, node: NodeState, *, schedulable: bool | None = None) -> None:
        """Re-index `node` after changing it in place (health, marks)."""
        self._unindex(node)
        self._count_before_change(node)
        if schedulable is not None:
            node.schedulable = schedulable
        node.refresh()
        self._count(node, +1)
        self._index(node)

    def _count_before_change(self, node: NodeState) -> None:
        # Health may already have been changed in place: take off what was counted, from the
        # signature refresh() last recorded (-1 marks an unhealthy device there).
        for vendor, model, _, milli in node.signature[4]:
            if milli >= 0:
                self.capacity[(vendor, model)] -= WHOLE

    def allocate(
        self, node: NodeState, device_indices: tuple[int, ...], device_milli: int, cpu: int, memory: int
    ) -> Allocation:
        self._unindex(node)
        for i in device_indices:
            d = node.device(i)
            if d.milli_free < device_milli:
                raise ValueError(f"{node.name} device {i} has {d.milli_free} milli free, not {device_milli}")
            d.milli_free -= device_milli
        node.cpu_free -= cpu
        node.memory_free -= memory
        node.refresh()
        self._index(node)
        return Allocation(node.id, device_indices, device_milli, cpu, memory)

    def release(self, a: Allocation) -> None:
        node = self.nodes[a.node_id]
        self._unindex(node)
        for i in a.device_indices:
            node.device(i).milli_free += a.device_milli
        node.cpu_free += a.cpu_milli
        node.memory_free += a.memory_mib
        node.refresh()
        self._index(node)

    def domain_of(self, node: NodeState, level: str) -> str:
        return node.rack if level == "rack" else node.block if level == "block" else node.name
