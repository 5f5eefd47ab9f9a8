"""The greedy allocation against brute force on tiny instances, and the offline optimum."""

from __future__ import annotations

import itertools
import random

import pytest

from scheduler.power.controller import DeviceView
from scheduler.power.curves import PowerCurve, reference_curve
from scheduler.power.domains import RACK, ZONE, DomainKey, PowerDomains, Rack, Zone
from scheduler.power.optimum import Claim, optimal, solve

STEP = 10  # every breakpoint, bound and capacity below is a multiple: the optimum then is too


def random_curve(rng: random.Random, lo: int, hi: int) -> PowerCurve:
    """A concave curve over [lo, hi] with breakpoints on the STEP grid."""
    xs = sorted({lo, hi, *(rng.randrange(lo, hi, STEP) for _ in range(2))})
    gains = sorted((rng.uniform(0.1, 3.0) for _ in xs[1:]), reverse=True)
    ys = [0.0]
    for (a, b), g in zip(itertools.pairwise(xs), gains, strict=True):
        ys.append(ys[-1] + g * (b - a))
    top = ys[-1]
    return PowerCurve("rnd", tuple((x, 0.1 + 0.9 * y / top) for x, y in zip(xs, ys, strict=True)), "test")


def brute_force(claims: list[Claim], capacity: dict[DomainKey, float]) -> float:
    grids = [range(int(c.lo_w), int(c.hi_w) + 1, STEP) for c in claims]
    best = -1.0
    for watts in itertools.product(*grids):
        use: dict[DomainKey, float] = {}
        for c, w in zip(claims, watts, strict=True):
            for d in c.domains:
                use[d] = use.get(d, 0) + w
        if all(use.get(d, 0) <= cap + 1e-9 for d, cap in capacity.items()):
            best = max(
                best, sum(c.weight * c.curve.throughput(w) for c, w in zip(claims, watts, strict=True))
            )
    return best


@pytest.mark.parametrize("seed", range(12))
def test_greedy_equals_brute_force_on_nested_budgets(seed: int) -> None:
    rng = random.Random(seed)
    r1, r2, z = (RACK, "r1"), (RACK, "r2"), (ZONE, "z")
    claims = []
    for i in range(4):
        lo = rng.choice([0, 20, 40])
        hi = lo + rng.choice([60, 80, 100])
        rack = r1 if i < 2 else r2
        claims.append(
            Claim(f"d{i}", rng.choice([0.5, 1.0, 2.0]), random_curve(rng, lo, hi), lo, hi, (rack, z))
        )
    total_lo = sum(c.lo_w for c in claims)
    capacity = {
        r1: float(rng.randrange(60, 200, STEP)),
        r2: float(rng.randrange(60, 200, STEP)),
        z: float(total_lo + rng.randrange(0, 200, STEP)),
    }
    got = solve(claims, capacity)
    assert got.value == pytest.approx(brute_force(claims, capacity), abs=1e-9)
    for d, cap in capacity.items():
        assert sum(got.watts[c.key] for c in claims if d in c.domains) <= cap + 1e-6
    for c in claims:
        assert c.lo_w - 1e-9 <= got.watts[c.key] <= c.hi_w + 1e-9


def test_at_most_one_device_between_vertices_per_binding_budget() -> None:
    curve = reference_curve()
    claims = [Claim(f"d{i}", 1.0, curve, 200, 700, ((RACK, "r"),)) for i in range(8)]
    got = solve(claims, {(RACK, "r"): 8 * 450 + 37})
    vertices = {w for w, _ in curve.points}
    off = [k for k, w in got.watts.items() if round(w, 6) not in vertices]
    assert len(off) <= 1
    assert got.limited_by and set(got.limited_by.values()) == {(RACK, "r")}


def test_floors_over_budget_are_reported_short() -> None:
    curve = reference_curve()
    claims = [Claim(f"d{i}", 1.0, curve, 200, 700, ((RACK, "r"),)) for i in range(3)]
    got = solve(claims, {(RACK, "r"): 500})
    assert got.short_w == {(RACK, "r"): pytest.approx(100)}
    assert all(w == 200 for w in got.watts.values())


def test_optimal_uses_known_demand_and_counts_overhead() -> None:
    curve = reference_curve()
    domains = PowerDomains(
        racks={"r": Rack("r", "z", budget_w=1000 + 1300, overhead_w_per_node=1000, nodes=frozenset({"n"}))},
        zones={"z": Zone("z", capacity_w=10_000)},
    )
    devs = [
        DeviceView(f"n/{i}", "n", "r", "z", "j", w, 200, 700, True, 0, 700, curve)
        for i, w in enumerate((2.0, 1.0))
    ]
    # 1,300 W for two devices: the weight-2 one gets its full 700 W, the other 600 W
    got = optimal(devs, domains, {"n/0": 700, "n/1": 700})
    assert got.watts == {"n/0": pytest.approx(700), "n/1": pytest.approx(600)}
    # a device wanting 90 W keeps 90 W; the other can have the rest, up to its demand
    idle = optimal(devs, domains, {"n/0": 700, "n/1": 90})
    assert idle.watts == {"n/0": pytest.approx(700), "n/1": pytest.approx(90)}
