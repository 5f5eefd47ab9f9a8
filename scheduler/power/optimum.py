"""The allocation of power budgets to devices that maximises priority-weighted throughput.

The problem: choose watts a_i for every device i, lo_i ≤ a_i ≤ hi_i, so that every budget
holds (Σ a_i over a domain's devices ≤ its capacity, domains nested: racks inside zones), and
Σ weight_i × f_i(a_i) is largest, every f_i concave and piecewise linear.

`solve` fills the curves' linear pieces in order of weighted gain per watt, each as far as
every enclosing budget allows. That greedy is exact here, not a heuristic: the feasible set of
(a_i − lo_i) under nested (laminar) capacities plus per-device bounds is a polymatroid, and on
a polymatroid the greedy is optimal for any separable concave objective (Federgruen &
Groenevelt, "The greedy procedure for resource allocation problems: necessary and sufficient
conditions for optimality", Operations Research 34(6), 1986). Each device's pieces come with
falling gain, so filling them in global order of weighted gain never fills a device's later
piece before its earlier one. Ties in gain give the same value whichever goes first.

Its consequence the curves rely on (curves.yaml): in the result every device sits at a
vertex of its curve except where a budget binds, and at most one device per binding budget
sits between vertices, since that budget is full once a piece stops short.

The live controller (controller.py) solves this on what it can measure; `optimal` solves it
with each device's true demand known in advance, which is the benchmark's yardstick.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scheduler.power.curves import PowerCurve
from scheduler.power.domains import RACK, ZONE, DomainKey, PowerDomains, effective_zone_capacity_w

if TYPE_CHECKING:
    from scheduler.power.controller import DeviceView

_EPS_W = 1e-6


@dataclass(frozen=True)
class Claim:
    """One device's part in the problem: the watts it must keep (lo), the most it can use (hi),
    its curve, the value of its throughput, and the budgets it counts against."""

    key: str
    weight: float
    curve: PowerCurve
    lo_w: float
    hi_w: float
    domains: tuple[DomainKey, ...]


@dataclass(frozen=True)
class Allocation:
    """Watts per device; the objective's value; which budget held each device short of its
    `hi_w`; how far the floors alone overrun a budget (caps cannot fix that); what is left."""

    watts: dict[str, float]
    value: float
    limited_by: dict[str, DomainKey] = field(default_factory=dict)
    short_w: dict[DomainKey, float] = field(default_factory=dict)
    left_w: dict[DomainKey, float] = field(default_factory=dict)


def solve(claims: Sequence[Claim], capacity_w: Mapping[DomainKey, float]) -> Allocation:
    """The exact optimum (see the module's docstring). Domains a claim names that
    `capacity_w` lacks bound nothing."""
    left: dict[DomainKey, float] = dict(capacity_w)
    watts: dict[str, float] = {}
    for c in claims:
        if c.hi_w < c.lo_w - _EPS_W:
            raise ValueError(f"{c.key}: hi_w {c.hi_w:g} < lo_w {c.lo_w:g}")
        watts[c.key] = c.lo_w
        for d in c.domains:
            if d in left:
                left[d] -= c.lo_w
    short = {d: -v for d, v in left.items() if v < -_EPS_W}
    for d in short:
        left[d] = 0.0
    pieces: list[tuple[float, str, float, float, int]] = []
    for i, c in enumerate(claims):
        for a, b, slope in c.curve.segments(c.lo_w, c.hi_w):
            if slope > 0 and c.weight > 0:
                pieces.append((-c.weight * slope, c.key, a, b, i))
    pieces.sort()
    limited: dict[str, DomainKey] = {}
    for _, key, a, b, i in pieces:
        chain = [d for d in claims[i].domains if d in left]
        room = min((left[d] for d in chain), default=math.inf)
        amount = min(b - a, room)
        if amount < b - a - _EPS_W and key not in limited:
            limited[key] = min(chain, key=lambda d: left[d])
        if amount <= _EPS_W:
            continue
        watts[key] += amount
        for d in chain:
            left[d] -= amount
    value = sum(c.weight * c.curve.throughput(watts[c.key]) for c in claims)
    return Allocation(watts, value, limited, short, left)


@dataclass(frozen=True)
class Budgets:
    """What the devices may draw in each domain once the loads caps cannot move are counted.

    `limit_w`: the budget itself (a zone's after thermal derating). `fixed_w`: node overhead
    plus the draw of devices whose limit cannot be set. `capacity_w`: limit × (1 − margin) −
    fixed, what the settable devices share. `chain`: the budgets each device counts against."""

    limit_w: dict[DomainKey, float]
    fixed_w: dict[DomainKey, float]
    capacity_w: dict[DomainKey, float]
    chain: dict[str, tuple[DomainKey, ...]]
    settable: dict[DomainKey, int]


def budgets(
    devices: Sequence[DeviceView],
    domains: PowerDomains,
    *,
    margin: float = 0.0,
    zone_inlet_c: Mapping[str, float] | None = None,
    throttled: Collection[str] | None = None,
) -> Budgets:
    """The budgets the devices face now. A rack's overhead counts for every node it lists and
    every node a device reports from it; a zone's effective capacity follows its inlet
    temperature and the fraction of its devices throttling thermally (domains.py)."""
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1) (got {margin})")
    inlet = zone_inlet_c or {}
    hot = set(throttled or ())
    nodes: dict[str, set[str]] = {name: set(r.nodes) for name, r in domains.racks.items()}
    in_zone: dict[str, int] = {}
    hot_in_zone: dict[str, int] = {}
    for d in devices:
        if d.rack in nodes:
            nodes[d.rack].add(d.node)
        in_zone[d.zone] = in_zone.get(d.zone, 0) + 1
        hot_in_zone[d.zone] = hot_in_zone.get(d.zone, 0) + (d.key in hot)
    limit: dict[DomainKey, float] = {}
    fixed: dict[DomainKey, float] = {}
    for name, rack in domains.racks.items():
        overhead = rack.overhead_w_per_node * len(nodes[name])
        limit[(RACK, name)] = rack.budget_w
        fixed[(RACK, name)] = overhead
        if rack.zone in domains.zones:
            fixed[(ZONE, rack.zone)] = fixed.get((ZONE, rack.zone), 0.0) + overhead
    for name, zone in domains.zones.items():
        share = hot_in_zone.get(name, 0) / in_zone[name] if in_zone.get(name) else 0.0
        limit[(ZONE, name)] = effective_zone_capacity_w(zone, inlet.get(name), share)
        fixed.setdefault((ZONE, name), 0.0)
    chain: dict[str, tuple[DomainKey, ...]] = {}
    settable: dict[DomainKey, int] = {d: 0 for d in limit}
    for d in devices:
        keys = tuple(k for k in ((RACK, d.rack), (ZONE, d.zone)) if k in limit)
        chain[d.key] = keys
        for k in keys:
            if d.settable:
                settable[k] += 1
            else:
                fixed[k] += d.draw_w
    capacity = {k: v * (1.0 - margin) - fixed[k] for k, v in limit.items()}
    return Budgets(limit, fixed, capacity, chain, settable)


def optimal(
    devices: Sequence[DeviceView],
    domains: PowerDomains,
    demand_w: Mapping[str, float],
    *,
    zone_inlet_c: Mapping[str, float] | None = None,
    throttled: Collection[str] | None = None,
) -> Allocation:
    """The best caps with each device's true demand (what it would draw unheld) known: the
    offline optimum the benchmark compares the controller with. No margin, no lag, no rate
    limit. A device wanting less than its minimum keeps what it wants (its cap cannot go
    lower, and what it draws is all that counts)."""
    b = budgets(devices, domains, zone_inlet_c=zone_inlet_c, throttled=throttled)
    claims = []
    for d in devices:
        if not d.settable:
            continue
        want = min(demand_w[d.key], d.default_w)
        lo = min(d.min_w, want)
        claims.append(Claim(d.key, d.weight, d.curve, lo, max(lo, want), b.chain[d.key]))
    return solve(claims, b.capacity_w)
