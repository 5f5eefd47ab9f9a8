"""Synthetic fleets for the simulator and the benchmarks: nodes of one model per rack, racks
grouped into blocks, devices split into interconnect islands as the model has them.

Racks are homogeneous because fleets are bought and cabled a rack at a time; a block (a network
pod) is built from one run of racks, so the fractions below are laid out in contiguous runs
and most blocks hold one model. That is what lets a block-required gang of one model exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.placement.cluster import ClusterState, DeviceState, NodeState
from scheduler.placement.request import Pool

GIB = 2**30


@dataclass(frozen=True)
class NodeKind:
    vendor: str
    model: str
    share: float  # of all nodes
    islands: tuple[int, ...] = (8,)  # devices per interconnect island, in device order
    memory_gib: int = 80

    @property
    def pool(self) -> Pool:
        return (self.vendor, self.model)

    @property
    def devices(self) -> int:
        return sum(self.islands)


# A plausible mixed fleet of a Chinese operator: mostly NVIDIA (H100 and A100 bought before the
# export rules, H20 after), a large Ascend share, and some Cambricon and Hygon. Islands:
# NVSwitch boards and Ascend 910B servers (HCCS full mesh) are one 8-way island; the
# PCIe parts here pair or quad up over bridges/links, so they are split 4 × 2 or 2 × 4.
# TODO: take islands from the catalog once it fills `island_size` for the Chinese parts.
MIXED_FLEET: tuple[NodeKind, ...] = (
    NodeKind("nvidia", "H100 80GB", 0.25, (8,), 80),
    NodeKind("nvidia", "A100 80GB", 0.20, (8,), 80),
    NodeKind("nvidia", "H20", 0.12, (8,), 96),
    NodeKind("ascend", "Ascend 910B", 0.20, (8,), 64),
    NodeKind("cambricon", "MLU590", 0.08, (4, 4), 80),
    NodeKind("hygon", "K100", 0.08, (4, 4), 64),
    NodeKind("nvidia", "H100 80GB PCIe", 0.07, (2, 2, 2, 2), 80),
)


def build_fleet(
    nodes: int,
    kinds: Sequence[NodeKind] = MIXED_FLEET,
    *,
    nodes_per_rack: int = 16,
    racks_per_block: int = 32,
    cpu_milli: int = 128_000,
    memory_mib: int = 2 * 1024 * 1024,
) -> ClusterState:
    """`nodes` nodes split among `kinds` by share, laid out kind after kind so racks and most
    blocks hold one model."""
    # Whole racks per kind when there are enough racks to go round; otherwise (tiny test
    # fleets) node by node, so every kind is still there.
    unit = nodes_per_rack if nodes >= nodes_per_rack * len(kinds) else 1
    counts = [c * unit for c in _split(nodes // unit, [k.share for k in kinds])]
    counts[-1] += nodes - sum(counts)  # a last, partial rack
    cluster = ClusterState()
    n = 0
    for kind, count in zip(kinds, counts, strict=True):
        for _ in range(count):
            devices: list[DeviceState] = []
            for island, size in enumerate(kind.islands):
                for _ in range(size):
                    devices.append(DeviceState(len(devices), kind.pool, kind.memory_gib * GIB, island))
            rack = n // nodes_per_rack
            cluster.add(
                NodeState(
                    f"n{n:05d}",
                    devices,
                    cpu_milli,
                    memory_mib,
                    rack=f"r{rack:04d}",
                    block=f"b{rack // racks_per_block:03d}",
                )
            )
            n += 1
    return cluster


def _split(n: int, shares: Sequence[float]) -> list[int]:
    """`n` split by `shares`, largest remainder first (ties to the earlier kind)."""
    total = sum(shares)
    exact = [n * x / total for x in shares]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(shares)), key=lambda i: (counts[i] - exact[i], i))[: n - sum(counts)]:
        counts[i] += 1
    return counts


def device_count(cluster: ClusterState) -> int:
    return sum(len(n.devices) for n in cluster.nodes)
