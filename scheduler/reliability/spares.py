"""Hot spares: healthy idle nodes held back so a gang that lost a node restarts at once.

Pure: `choose_spares` says which nodes form the pool after any change (a spare taken, a node
repaired, health changed), `rank_spares` which spare should replace a failed node. The live
control plane and the ETTR simulator (benchmarks/ettr.py) call both.

A spare is only as good as it is close: a gang packed into a rack or block loses bandwidth
when its replacement sits across the fabric. So the pool is filled in the racks that hold
the most nodes of each model (where gangs of that model run), and a failed node is replaced
by the spare nearest to it: same rack, then same block, then anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RACK = "rack"
BLOCK = "block"


@dataclass(frozen=True)
class SparePolicy:
    per_model: int = 0  # nodes of each device model held idle as hot spares

    def problems(self) -> list[str]:
        return [] if self.per_model >= 0 else [f"per_model {self.per_model}: must be ≥ 0"]


@dataclass(frozen=True)
class SpareCandidate:
    node: str
    model: str  # its devices' model; for mixed nodes, the majority model
    devices_total: int
    idle: bool  # no device held by any worker
    healthy: bool  # the node and all its devices HEALTHY
    schedulable: bool  # connected, not cordoned, draining or quarantined
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.idle and self.healthy and self.schedulable


def choose_spares(
    candidates: Sequence[SpareCandidate], current: frozenset[str], policy: SparePolicy
) -> frozenset[str]:
    """The spare pool: current spares that are still usable, topped up per model to
    `per_model` from other usable nodes. Deterministic for the same inputs."""
    # One pass: the cluster-wide list comes in on every change of the pool.
    rack_size: dict[tuple[str, str], int] = {}
    by_model: dict[str, list[SpareCandidate]] = {}
    for c in candidates:
        rack = c.labels.get(RACK)
        if rack is not None:
            key = (c.model, rack)
            rack_size[key] = rack_size.get(key, 0) + 1
        if c.idle and c.healthy and c.schedulable and c.devices_total > 0:
            by_model.setdefault(c.model, []).append(c)

    def preference(c: SpareCandidate) -> tuple[int, int, str]:
        # Current spares first, so the pool does not churn when a better rack frees a node.
        rack = c.labels.get(RACK)
        size = rack_size.get((c.model, rack), 0) if rack is not None else 0
        return (0 if c.node in current else 1, -size, c.node)

    chosen: set[str] = set()
    for usable in by_model.values():
        usable.sort(key=preference)
        chosen.update(c.node for c in usable[: policy.per_model])
    return frozenset(chosen)


def distance(labels: Mapping[str, str], near: Mapping[str, str]) -> int:
    """0 in the same rack, 1 in the same block, 2 anywhere else (or when a label is missing)."""
    for rank, key in enumerate((RACK, BLOCK)):
        mine = labels.get(key)
        if mine is not None and mine == near.get(key):
            return rank
    return 2


def rank_spares(
    spares: frozenset[str], candidates: Sequence[SpareCandidate], model: str, near: Mapping[str, str]
) -> list[str]:
    """Usable spares of `model`, nearest to `near` (the failed node's labels) first, then by
    name. A spare that stopped being usable since the pool was chosen is left out."""
    fitting = [c for c in candidates if c.node in spares and c.model == model and c.usable]
    fitting.sort(key=lambda c: (distance(c.labels, near), c.node))
    return [c.node for c in fitting]
