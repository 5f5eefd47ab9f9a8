"""The fleet health view: counts by state, health, vendor and model; the rack × node × device
grid (one pass over the nodes in memory); error counts by code (errors.py).

A small fleet (up to EXPAND_ALL_DEVICES_MAX devices) draws every node with every device. A
big one draws each rack as one summary cell (its nodes counted by colour) and, under the
racks they belong to, only the nodes that need attention, with their devices: at most
MAX_DRAWN_NODES, the worst first. The page then stays small and quick to build however many
nodes are healthy; the node table (/nodes?rack=...) lists the rest.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from scheduler.web.queries.errors import ErrorWindow, error_counts
from scheduler.web.queries.inventory import Inventory, inventory
from scheduler.web.queries.nodes import device_health_words, node_state, worst

if TYPE_CHECKING:
    from scheduler.model import DeviceRecord
    from scheduler.server.controlplane import ControlPlane
    from scheduler.server.nodes import NodeRuntime

EXPAND_ALL_DEVICES_MAX = 512
MAX_DRAWN_NODES = 64

NODE_STATE_ORDER = ("ready", "cordoned", "draining", "quarantined", "disconnected", "lost")
HEALTH_ORDER = ("healthy", "suspect", "unhealthy", "quarantined")
# A node's colour in the grid ("cell word"), most pressing first: the order nodes are picked
# to be drawn in, and a rack's colour (its worst node's).
CELL_ORDER = ("quarantined", "unhealthy", "lost", "suspect", "cordoned", "healthy")
_CELL_RANK = {word: rank for rank, word in enumerate(CELL_ORDER)}


@dataclass(frozen=True)
class ModelCount:
    vendor: str
    model: str
    simulated: bool
    nodes: int
    devices: int
    health: dict[str, int]  # health word -> devices


@dataclass(frozen=True)
class GridNode:
    name: str
    state: str
    worst: str  # its cell word: worst device health, or the node's state when it is not ready
    devices: list[str]  # health word per device, in index order
    summary: str  # hover text: "sim-h100-0: ready, 8 devices, 1 not healthy (suspect)"


@dataclass
class RackGrid:
    name: str
    nodes: int = 0
    devices: int = 0
    by_word: Counter[str] = field(default_factory=Counter)  # nodes by cell word
    drawn: list[GridNode] = field(default_factory=list)  # in name order

    @property
    def bad_nodes(self) -> int:
        """Nodes not ready or not healthy."""
        return self.nodes - self.by_word["healthy"]

    @property
    def not_drawn(self) -> int:
        """Nodes needing attention that are counted but not drawn (past the fleet's cap)."""
        return self.bad_nodes - sum(1 for n in self.drawn if n.worst != "healthy")

    @property
    def worst(self) -> str:
        return min(self.by_word, key=lambda w: _CELL_RANK.get(w, len(CELL_ORDER)), default="healthy")

    @property
    def counts(self) -> list[tuple[str, int]]:
        """(cell word, nodes), the most pressing first, healthy last."""
        return sorted(self.by_word.items(), key=lambda kv: _CELL_RANK.get(kv[0], len(CELL_ORDER)))


@dataclass(frozen=True)
class FleetView:
    nodes_total: int
    devices_total: int
    node_states: list[tuple[str, int]]
    device_health: list[tuple[str, int]]
    models: list[ModelCount]
    racks: list[RackGrid]
    expanded: bool  # small fleet: every node drawn with every device
    attention: int  # nodes not ready or not healthy
    drawn: int  # of them, drawn with their devices (all of them on a small fleet)
    errors: ErrorWindow

    @property
    def racks_drawn(self) -> list[RackGrid]:
        """Racks with nodes drawn: all of them on a small fleet."""
        return [r for r in self.racks if r.drawn]


@dataclass
class _ModelTally:
    nodes: int = 0
    devices: int = 0
    healthy: int = 0  # devices of nodes with every device healthy, added to `health` at the end
    health: Counter[str] = field(default_factory=Counter)
    simulated: bool = False

    def counts(self) -> dict[str, int]:
        out = Counter(self.health)
        out["healthy"] += self.healthy
        return dict(out)


class _Candidate(NamedTuple):
    """A node that may be drawn. Tuples compare field by field, so a list of them sorts the
    most pressing first: by cell word, then most devices not healthy, then name (unique, so
    the fields after it are never compared)."""

    rank: int  # its cell word's place in CELL_ORDER
    minus_bad: int  # minus its devices that are not healthy
    name: str
    rt: NodeRuntime
    rack: str
    state: str
    shown: str
    words: list[str] | None  # None: all healthy


def fleet_view(cp: ControlPlane, now: float) -> FleetView:
    states: Counter[str] = Counter()
    health: Counter[str] = Counter()
    models: dict[tuple[str, str], _ModelTally] = {}
    racks: dict[str, RackGrid] = {}
    attention: list[_Candidate] = []
    healthy_nodes: list[_Candidate] = []  # kept only while the fleet could be a small one
    devices_total = 0
    healthy_devices = 0
    marked = _nodes_with_health_records(cp)
    unranked = len(CELL_ORDER)
    # One pass over every node: kept lean, as it runs on every poll of the landing page.
    for rt in cp.nodes:
        record = rt.record
        inv = inventory(record)
        n = len(record.devices)
        devices_total += n
        state = node_state(cp, rt, now)
        states[state] += 1
        words = _words_if_not_all_healthy(cp, rt) if record.name in marked else None
        if words is None:
            healthy_devices += n
            bad = 0
            shown = _cell_word(state, "healthy")
        else:
            health.update(words)
            bad = n - words.count("healthy")
            shown = _cell_word(state, worst(words))
        _tally_models(models, inv, record.devices, words)
        rack = racks.get(inv.rack)
        if rack is None:
            rack = racks[inv.rack] = RackGrid(inv.rack)
        rack.nodes += 1
        rack.devices += n
        rack.by_word[shown] += 1
        if shown != "healthy":
            attention.append(
                _Candidate(
                    _CELL_RANK.get(shown, unranked), -bad, record.name, rt, inv.rack, state, shown, words
                )
            )
        elif devices_total <= EXPAND_ALL_DEVICES_MAX:
            healthy_nodes.append(_Candidate(unranked, 0, record.name, rt, inv.rack, state, shown, words))
    health["healthy"] += healthy_devices
    expanded = devices_total <= EXPAND_ALL_DEVICES_MAX
    picked = attention + healthy_nodes if expanded else heapq.nsmallest(MAX_DRAWN_NODES, attention)
    for c in picked:
        racks[c.rack].drawn.append(_grid_node(c))
    for grid in racks.values():
        grid.drawn.sort(key=lambda g: g.name)
    model_rows = [
        ModelCount(vendor, model, t.simulated, t.nodes, t.devices, t.counts())
        for (vendor, model), t in sorted(models.items())
    ]
    return FleetView(
        nodes_total=len(cp.nodes),
        devices_total=devices_total,
        node_states=_ordered(states, NODE_STATE_ORDER),
        device_health=_ordered(health, HEALTH_ORDER),
        models=model_rows,
        racks=[racks[k] for k in sorted(racks, key=_rack_key)],
        expanded=expanded,
        attention=len(attention),
        drawn=len(picked),
        errors=error_counts(cp, now),
    )


def _nodes_with_health_records(cp: ControlPlane) -> set[str]:
    """Nodes the HealthBook holds a record for, of the node or of one of its devices: the
    only ones whose devices can be anything but healthy. The registry's per-device health
    is written only from the book (faults/health.py `_sync_device`, at load and on every
    change), so the other nodes' devices are not read at all: at 10,000 nodes, reaching
    80,000 device objects was a third of the landing page's time."""
    marked = {node for node, _ in cp.health.devices}
    marked.update(cp.health.nodes)
    return marked


def _words_if_not_all_healthy(cp: ControlPlane, rt: NodeRuntime) -> list[str] | None:
    """Each device's health word, or None when every device is healthy."""
    words = device_health_words(cp, rt)
    return None if words.count("healthy") == len(words) else words


def _grid_node(c: _Candidate) -> GridNode:
    n = len(c.rt.record.devices)
    words = c.words if c.words is not None else ["healthy"] * n
    summary = f"{c.name}: {c.state}, {n} devices"
    if c.minus_bad:
        bad = sorted({w for w in words if w != "healthy"})
        summary += f", {-c.minus_bad} not healthy ({', '.join(bad)})"
    return GridNode(c.name, c.state, c.shown, words, summary)


def _tally_models(
    models: dict[tuple[str, str], _ModelTally],
    inv: Inventory,
    devices: list[DeviceRecord],
    words: list[str] | None,
) -> None:
    """Count one node's devices by (vendor, model): a node usually has one model, counted in
    one step rather than device by device."""
    if len(inv.kinds) == 1:
        kind, n = inv.kinds[0]
        tally = models.get(kind)
        if tally is None:
            tally = models[kind] = _ModelTally()
        tally.nodes += 1
        tally.devices += n
        if words is None:
            tally.healthy += n
        else:
            tally.health.update(words)
        tally.simulated = tally.simulated or inv.simulated
        return
    seen: set[tuple[str, str]] = set()
    for i, d in enumerate(devices):
        key = (d.vendor, d.model)
        tally = models.get(key)
        if tally is None:
            tally = models[key] = _ModelTally()
        if key not in seen:
            seen.add(key)
            tally.nodes += 1
        tally.devices += 1
        tally.health["healthy" if words is None else words[i]] += 1
        tally.simulated = tally.simulated or d.simulated


def _cell_word(state: str, worst_device: str) -> str:
    """A node's colour in the grid: gone nodes grey, then its worst device, then its marks."""
    if state in ("lost", "disconnected"):
        return "lost"
    if worst_device != "healthy":
        return worst_device
    return "cordoned" if state in ("cordoned", "draining") else "healthy"


def _ordered(counts: Mapping[str, int], order: tuple[str, ...]) -> list[tuple[str, int]]:
    known = [(k, counts.get(k, 0)) for k in order]
    return known + sorted((k, n) for k, n in counts.items() if k not in order)


def _rack_key(name: str) -> tuple[int, str]:
    return (1, name) if name == "unassigned" else (0, name)
