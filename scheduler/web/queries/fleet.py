"""The fleet health view: counts by state, health, vendor and model; the rack × node × device
grid (one pass over the nodes in memory); error counts by code (errors.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scheduler.web.queries.errors import ErrorWindow, error_counts
from scheduler.web.queries.nodes import device_health_words, node_state, rack_of, worst

if TYPE_CHECKING:
    from scheduler.model import DeviceRecord
    from scheduler.server.controlplane import ControlPlane

# Above this many devices a node is one cell (its worst device's colour), devices expanded
# only for nodes that are not healthy; below it every device is a cell.
EXPAND_ALL_DEVICES_MAX = 512
MAX_EXPANDED_NODES = 200

NODE_STATE_ORDER = ("ready", "cordoned", "draining", "quarantined", "disconnected", "lost")
HEALTH_ORDER = ("healthy", "suspect", "unhealthy", "quarantined")


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
    worst: str  # worst device health, or the node's state when it is not ready
    devices: list[str]  # health word per device, in index order; [] when collapsed
    summary: str  # hover text: "sim-h100-0: ready, 8 devices, 1 suspect"


@dataclass
class RackGrid:
    name: str
    nodes: list[GridNode] = field(default_factory=list)
    devices: int = 0
    bad_nodes: int = 0  # nodes not ready or not healthy

    @property
    def expanded(self) -> list[GridNode]:
        """Nodes drawn with their devices."""
        return [n for n in self.nodes if n.devices]

    @property
    def singles(self) -> list[GridNode]:
        """Nodes drawn as one square."""
        return [n for n in self.nodes if not n.devices]


@dataclass(frozen=True)
class FleetView:
    nodes_total: int
    devices_total: int
    node_states: list[tuple[str, int]]
    device_health: list[tuple[str, int]]
    models: list[ModelCount]
    racks: list[RackGrid]
    expanded: bool  # every device drawn (small fleet)
    errors: ErrorWindow


@dataclass
class _ModelTally:
    nodes: set[str] = field(default_factory=set)
    devices: int = 0
    health: Counter[str] = field(default_factory=Counter)
    simulated: bool = False


def fleet_view(cp: ControlPlane, now: float) -> FleetView:
    states: Counter[str] = Counter()
    health: Counter[str] = Counter()
    models: dict[tuple[str, str], _ModelTally] = {}
    racks: dict[str, RackGrid] = {}
    devices_total = sum(len(rt.record.devices) for rt in cp.nodes)
    expanded = devices_total <= EXPAND_ALL_DEVICES_MAX
    drawn_with_devices = 0
    for rt in sorted(cp.nodes, key=lambda r: r.record.name):
        name = rt.record.name
        state = node_state(cp, rt, now)
        states[state] += 1
        words = device_health_words(cp, rt)
        all_healthy = words.count("healthy") == len(words)
        _tally_models(models, name, rt.record.devices, words)
        health.update(words)
        shown = _cell_word(state, "healthy" if all_healthy else worst(words))
        rack = racks.get(rack_of(rt))
        if rack is None:
            rack = racks[rack_of(rt)] = RackGrid(rack_of(rt))
        rack.devices += len(words)
        if shown != "healthy":
            rack.bad_nodes += 1
        # Big fleets: devices are drawn only for nodes with devices that are not healthy, and
        # only for the first MAX_EXPANDED_NODES of them; the rest are one cell each.
        draw = expanded or (not all_healthy and drawn_with_devices < MAX_EXPANDED_NODES)
        if draw and not expanded:
            drawn_with_devices += 1
        summary = f"{name}: {state}, {len(words)} devices"
        if not all_healthy:
            bad = sorted({w for w in words if w != "healthy"})
            summary += f", {sum(1 for w in words if w != 'healthy')} not healthy ({', '.join(bad)})"
        rack.nodes.append(GridNode(name, state, shown, words if draw else [], summary))
    model_rows = [
        ModelCount(vendor, model, t.simulated, len(t.nodes), t.devices, dict(t.health))
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
        errors=error_counts(cp, now),
    )


def _tally_models(
    models: dict[tuple[str, str], _ModelTally], node: str, devices: list[DeviceRecord], words: list[str]
) -> None:
    """Count one node's devices by (vendor, model): a node usually has one model, counted in
    one step rather than device by device."""
    kind, simulated = _node_kind(node, devices)
    groups = (
        [(kind, words)]
        if kind is not None
        else [((d.vendor, d.model), [w]) for d, w in zip(devices, words, strict=True)]
    )
    for key, group in groups:
        tally = models.get(key)
        if tally is None:
            tally = models[key] = _ModelTally()
        tally.nodes.add(node)
        tally.devices += len(group)
        tally.health.update(group)
        tally.simulated = tally.simulated or simulated


# node -> (its device list, its one (vendor, model) or None, any simulated): a node's inventory
# changes only when it registers, which replaces the list, so identity says when to recompute.
_KINDS: dict[str, tuple[list[DeviceRecord], tuple[str, str] | None, bool]] = {}


def _node_kind(node: str, devices: list[DeviceRecord]) -> tuple[tuple[str, str] | None, bool]:
    cached = _KINDS.get(node)
    if cached is None or cached[0] is not devices:
        kinds = {(d.vendor, d.model) for d in devices}
        cached = _KINDS[node] = (
            devices,
            kinds.pop() if len(kinds) == 1 else None,
            any(d.simulated for d in devices),
        )
    return cached[1], cached[2]


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
