"""Power-aware admission: what a scheduling pass may place without breaking a power budget.

Nothing is placed that would push a rack or a cooling zone over its budget at the job's
*expected* draw — not its capped draw: admission must never count on the live controller to
make room, or a budget cut would meet a cluster that only fits when throttled. A device a job
takes stops drawing its idle power and starts drawing the job's expected per-device power, so
each placement adds the difference. Heat is spread: a job tries the zone with the most
relative headroom first, and zones near their inlet-temperature limit last.

Pure: the caller builds a `PowerLedger` from telemetry and the topology for one pass; the
gate changes only that ledger's tallies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from scheduler.placement.engine import PlacementDecision

DeviceKey = tuple[str, int]


@dataclass
class PowerLedger:
    rack_of: Mapping[str, str]  # node -> rack
    zone_of_rack: Mapping[str, str]
    rack_budget_w: Mapping[str, float]  # math.inf where a rack has no budget
    zone_budget_w: Mapping[str, float]  # effective (derated) capacity; math.inf if none
    rack_committed_w: dict[str, float]  # draw counted so far: overhead, idle devices, jobs' expected
    zone_committed_w: dict[str, float]
    idle_w: Mapping[DeviceKey, float]  # what a free device draws now (what a placement replaces)
    expected_w: Callable[[str, DeviceKey], float]  # (job id, device) -> the job's expected draw there
    hot_zones: frozenset[str] = frozenset()  # near their inlet limit: tried last
    reasons: dict[str, str] = field(default_factory=dict)  # job id -> why power kept it waiting

    def headroom_fraction(self, zone: str) -> float:
        budget = self.zone_budget_w.get(zone, math.inf)
        if math.isinf(budget):
            return 1.0
        return (budget - self.zone_committed_w.get(zone, 0.0)) / budget if budget > 0 else 0.0


class PowerGate:
    def __init__(self, ledger: PowerLedger) -> None:
        self.ledger = ledger

    def tiers(self) -> list[frozenset[str] | None]:
        """Node sets to try, best first: each zone's nodes by relative headroom (hot zones
        last), then every node (None) so a gang that needs several zones still fits."""
        ledger = self.ledger
        zones = sorted(
            {ledger.zone_of_rack.get(r, "") for r in ledger.rack_of.values()},
            key=lambda z: (z in ledger.hot_zones, -ledger.headroom_fraction(z), z),
        )
        if len(zones) < 2:
            return [None]
        by_zone = [
            frozenset(n for n, r in ledger.rack_of.items() if ledger.zone_of_rack.get(r, "") == z)
            for z in zones
        ]
        return [*by_zone, None]

    def added_w(self, job_id: str, decision: PlacementDecision) -> tuple[dict[str, float], dict[str, float]]:
        """Watts the placement adds, per rack and per zone."""
        ledger = self.ledger
        racks: dict[str, float] = {}
        zones: dict[str, float] = {}
        share = decision.allocations[0].device_milli / 1000.0 if decision.allocations else 1.0
        for slot in decision.slots or ():
            rack = ledger.rack_of.get(slot.node_name, "")
            zone = ledger.zone_of_rack.get(rack, "")
            watts = sum(
                max(0.0, (ledger.expected_w(job_id, key) - ledger.idle_w.get(key, 0.0)) * share)
                for key in ((slot.node_name, i) for i in slot.device_indices)
            )
            racks[rack] = racks.get(rack, 0.0) + watts
            zones[zone] = zones.get(zone, 0.0) + watts
        return racks, zones

    def check(self, job_id: str, decision: PlacementDecision) -> str | None:
        """Why the placement would break a budget at expected draw, or None."""
        ledger = self.ledger
        racks, zones = self.added_w(job_id, decision)
        for kind, added, committed, budgets in (
            ("rack", racks, ledger.rack_committed_w, ledger.rack_budget_w),
            ("zone", zones, ledger.zone_committed_w, ledger.zone_budget_w),
        ):
            for name, watts in sorted(added.items()):
                budget = budgets.get(name, math.inf)
                now = committed.get(name, 0.0)
                if now + watts > budget:
                    return (
                        f"waiting for power: {kind} {name} at {now / 1000:.1f} of {budget / 1000:.1f} kW, "
                        f"the job adds {watts / 1000:.1f} kW at its expected draw"
                    )
        return None

    def commit(self, job_id: str, decision: PlacementDecision) -> None:
        ledger = self.ledger
        racks, zones = self.added_w(job_id, decision)
        for name, watts in racks.items():
            ledger.rack_committed_w[name] = ledger.rack_committed_w.get(name, 0.0) + watts
        for name, watts in zones.items():
            ledger.zone_committed_w[name] = ledger.zone_committed_w.get(name, 0.0) + watts
