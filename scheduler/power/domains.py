"""Power domains: the budgets a site's draw must stay inside, as plain frozen data.

Racks sit inside cooling zones (each rack names one zone), so the budgets are nested: a
device's draw counts against its rack's PDU budget and against its zone's heat-removal
capacity. `scheduler/power/topology.py` reads them from the site's YAML file; the controller,
the offline optimum and the benchmark take them as they are. Watts throughout.

A node no rack lists lands in the rack named "default". That rack has a budget only where the
topology gives it one (the loader does); absent from `racks`, it bounds nothing, and its nodes
count against no zone either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_RACK = "default"
RACK = "rack"
ZONE = "zone"
DomainKey = tuple[str, str]  # (RACK or ZONE, name), so a rack and a zone may share a name

# Corral's thermal derating rule (see effective_zone_capacity_w). No standard sets these:
# ASHRAE gives inlet envelopes, not how far to cut load when the inlet nears one, so they are
# chosen to act early and gently and are parameters of the function.
DERATE_FROM_C_BELOW_LIMIT = 5.0  # derating starts this far below the zone's inlet limit
DERATE_PER_C = 0.04  # fraction of capacity given up per °C above that point: 80% at the limit
DERATE_FLOOR = 0.5  # never below half: past that the site needs people, not a controller
THROTTLE_DERATE = 0.2  # capacity given up when every device of the zone throttles thermally


@dataclass(frozen=True)
class Zone:
    """A cooling zone: the heat its cooling removes (W) and the inlet temperature to stay under."""

    name: str
    capacity_w: float
    inlet_limit_c: float = 27.0


@dataclass(frozen=True)
class Rack:
    """A rack: its PDU budget (W), the non-accelerator draw of each of its nodes (CPUs, NICs,
    fans, switches: counted, never measured per device) and the nodes placed in it."""

    name: str
    zone: str
    budget_w: float
    overhead_w_per_node: float
    nodes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PowerDomains:
    racks: Mapping[str, Rack]
    zones: Mapping[str, Zone]
    # node -> the rack listing it: asked for every node on every controller tick.
    _listed: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_listed", {n: r.name for r in self.racks.values() for n in r.nodes})

    def listed_rack(self, node: str) -> str | None:
        """The rack the topology file places `node` in; None if it lists it nowhere."""
        return self._listed.get(node)

    def rack_of(self, node: str) -> str:
        """The rack listing `node`, else the default rack (which may have no budget)."""
        return self._listed.get(node, DEFAULT_RACK)

    def zone_of(self, rack: str) -> str | None:
        """The zone `rack` sits in; None for a rack the topology does not know."""
        found = self.racks.get(rack)
        return found.zone if found is not None else None

    def rack_budget_w(self, rack: str) -> float:
        found = self.racks.get(rack)
        return found.budget_w if found is not None else math.inf

    def with_zone_capacity(self, zone: str, capacity_w: float) -> PowerDomains:
        """The same domains with one zone's capacity changed (a demand-response event)."""
        old = self.zones[zone]
        zones = {**self.zones, zone: Zone(old.name, capacity_w, old.inlet_limit_c)}
        return PowerDomains(racks=self.racks, zones=zones)


def inlet_factor(
    inlet_c: float | None,
    limit_c: float,
    *,
    start_below_c: float = DERATE_FROM_C_BELOW_LIMIT,
    per_c: float = DERATE_PER_C,
    floor: float = DERATE_FLOOR,
) -> float:
    """The share of a zone's capacity usable at inlet temperature `inlet_c` (None: unknown, 1).

    Rising inlet air means the cooling is not keeping up, so the heat load must come down
    before the limit is reached, not after: 1 up to `limit - 5 °C`, then 4% less per °C
    (80% at the limit, still falling beyond it), never below 50%."""
    if inlet_c is None:
        return 1.0
    return max(floor, 1.0 - per_c * max(0.0, inlet_c - (limit_c - start_below_c)))


def effective_zone_capacity_w(
    zone: Zone,
    inlet_c: float | None,
    throttled_fraction: float,
    *,
    throttle_derate: float = THROTTLE_DERATE,
) -> float:
    """The heat a zone can take now: its capacity × the inlet factor × (1 − 0.2 × the fraction
    of its devices throttling thermally).

    Corral's rule. A device that throttles on temperature is already being held back by heat
    its cooling cannot remove; drawing less across the zone is what relieves it, and the
    fraction throttling is the only per-zone measure of that every device reports. At 0.2 a
    zone where every device throttles loses a fifth of its capacity; with the inlet factor,
    never below the inlet floor × 0.8."""
    if not 0.0 <= throttled_fraction <= 1.0:
        raise ValueError(f"throttled fraction must be in [0, 1] (got {throttled_fraction})")
    factor = inlet_factor(inlet_c, zone.inlet_limit_c) * (1.0 - throttle_derate * throttled_fraction)
    return zone.capacity_w * factor
