"""The live power controller on small topologies whose answers can be worked out by hand."""

from __future__ import annotations

import pytest

from scheduler.power.controller import ControllerConfig, DeviceView, PowerController, priority_weight
from scheduler.power.curves import PowerCurve, reference_curve
from scheduler.power.domains import (
    DEFAULT_RACK,
    RACK,
    ZONE,
    PowerDomains,
    Rack,
    Zone,
    effective_zone_capacity_w,
    inlet_factor,
)

H100 = reference_curve()
# no margin, so budgets below are exactly what the devices share
EXACT = ControllerConfig(margin=0.0)


def dev(
    key: str,
    *,
    rack: str = "r",
    zone: str = "z",
    weight: float = 1.0,
    draw: float = 700,
    cap: float = 700,
    settable: bool = True,
    curve: PowerCurve = H100,
    capped: bool | None = None,
) -> DeviceView:
    node = key.split("/")[0]
    return DeviceView(key, node, rack, zone, "job", weight, 200, 700, settable, draw, cap, curve, capped)


def site(rack_budgets: dict[str, float], zone_capacity: float = 1e9, overhead: float = 0.0) -> PowerDomains:
    racks = {name: Rack(name, "z", b, overhead) for name, b in rack_budgets.items()}
    return PowerDomains(racks=racks, zones={"z": Zone("z", zone_capacity, 27.0)})


def test_priority_weight_doubles_every_100_points() -> None:
    assert priority_weight(0) == 1.0
    assert priority_weight(100) == 2.0
    assert priority_weight(-100) == 0.5
    assert priority_weight(1000) == 1024.0
    with pytest.raises(ValueError):
        priority_weight(1001)


def test_rack_over_budget_caps_the_low_priority_device_first() -> None:
    c = PowerController(EXACT)
    devices = [dev("n/0", weight=2.0), dev("n/1", weight=1.0)]
    out = c.step(devices, site({"r": 1300}), now=0.0)
    assert out.over_budget == {(RACK, "r"): pytest.approx(100)}
    assert out.caps == {"n/1": pytest.approx(600)}
    assert "rack r is at its budget" in out.reasons["n/1"]
    assert "over budget by 100 W" in out.reasons["rack r"]


def test_least_power_sensitive_work_gives_first() -> None:
    c = PowerController(EXACT)
    memory_bound = H100.with_sensitivity(0.4)
    devices = [dev("n/0"), dev("n/1", curve=memory_bound)]
    out = c.step(devices, site({"r": 1200}), now=0.0)
    # equal priority: the job that loses less per watt (α = 0.4) is capped to 500 W
    assert out.caps == {"n/1": pytest.approx(500)}


def test_nested_zone_tighter_than_its_racks() -> None:
    c = PowerController(EXACT)
    devices = [
        dev("a/0", rack="r1", weight=4.0),
        dev("a/1", rack="r1", weight=1.0),
        dev("b/0", rack="r2", weight=2.0),
        dev("b/1", rack="r2", weight=1.0),
    ]
    # each rack could hold both its devices at 700 W; the zone holds 2,200 W in all
    out = c.step(devices, site({"r1": 1400, "r2": 1400}, zone_capacity=2200), now=0.0)
    caps = {d.key: out.caps.get(d.key, d.cap_w) for d in devices}
    assert sum(caps.values()) == pytest.approx(2200)
    # by weighted gain per watt: the weight-4 device's last 100 W (4 × 0.00073/W) beat the
    # weight-1 devices' 400→500 W (0.0016/W), which beat the weight-2 one's 600→700 W (0.0015/W)
    assert caps["a/0"] == 700
    assert caps["b/0"] == pytest.approx(600)
    assert sorted([caps["a/1"], caps["b/1"]]) == [pytest.approx(400), pytest.approx(500)]
    assert out.over_budget == {(ZONE, "z"): pytest.approx(600)}
    assert (RACK, "r1") not in out.over_budget


def test_idle_device_lends_its_headroom() -> None:
    c = PowerController(EXACT)
    devices = [dev("n/0", draw=90, cap=700), dev("n/1", draw=400, cap=400)]
    out = c.step(devices, site({"r": 1000}), now=0.0)
    # the idle device keeps 90 + 50 W; the held one may use 700 of the remaining 860 W and
    # is raised by the whole 300 W step; the idle one's cap holds its minimum + 100 W slack
    assert out.caps["n/1"] == pytest.approx(700)
    assert out.caps["n/0"] == pytest.approx(300)
    assert "drawing 90 W" in out.reasons["n/0"]
    assert out.over_budget == {}


def test_raises_are_rate_limited_and_have_hysteresis() -> None:
    c = PowerController(ControllerConfig(margin=0.0, raise_step_w=150, hysteresis_w=20))
    domains = site({"r": 5000})
    first = c.step([dev("n/0", draw=200, cap=200)], domains, now=0.0)
    assert first.caps == {"n/0": 350}
    assert "rate-limited" in first.reasons["n/0"]
    second = c.step([dev("n/0", draw=350, cap=350)], domains, now=1.0)
    assert second.caps == {"n/0": 500}
    # 15 W short of the target is within the hysteresis: left alone
    assert c.step([dev("n/0", draw=685, cap=685)], domains, now=2.0).caps == {}


def test_no_raise_right_after_a_domain_was_over() -> None:
    c = PowerController(ControllerConfig(margin=0.0, raise_hold_s=2.0, lend_after_s=0.0))
    domains = site({"r": 1000})
    over = c.step([dev("n/0", draw=600, cap=600), dev("n/1", draw=600, cap=600)], domains, now=0.0)
    assert sum(over.caps.values()) == pytest.approx(1000)
    # a moment later one job pauses: headroom, but the rack was over 1 s ago
    paused = [dev("n/0", draw=100, cap=500), dev("n/1", draw=500, cap=500)]
    assert "n/1" not in c.step(paused, domains, now=1.0).caps
    assert c.step(paused, domains, now=2.5).caps["n/1"] == pytest.approx(700)


def test_never_below_minimum_nor_above_default() -> None:
    c = PowerController(EXACT)
    out = c.step([dev("n/0"), dev("n/1")], site({"r": 300}), now=0.0)
    assert out.caps == {"n/0": 200, "n/1": 200}
    assert out.unenforceable == {(RACK, "r"): pytest.approx(100)}
    assert "admission only" in out.reasons["rack r"]
    # a limit found above the default is brought back to it
    high = c.step([dev("n/0", draw=300, cap=900)], site({"r": 5000}), now=1.0)
    assert high.caps == {"n/0": 700}


def test_non_settable_devices_are_fixed_loads() -> None:
    c = PowerController(EXACT)
    devices = [dev("n/0", settable=False, draw=700), dev("n/1")]
    out = c.step(devices, site({"r": 1100}), now=0.0)
    assert out.caps == {"n/1": pytest.approx(400)}
    alone = c.step([dev("m/0", rack="q", settable=False, draw=700)], site({"q": 500}), now=1.0)
    assert alone.caps == {}
    assert alone.unenforceable == {(RACK, "q"): pytest.approx(200)}
    assert "admission only" in alone.reasons["rack q"]


def test_node_overhead_counts_and_unlisted_nodes_have_no_budget() -> None:
    c = PowerController(EXACT)
    domains = PowerDomains(
        racks={"r": Rack("r", "z", 2300, 1000, frozenset({"n"}))}, zones={"z": Zone("z", 1e9, 27.0)}
    )
    assert domains.rack_of("elsewhere") == DEFAULT_RACK
    devices = [dev("n/0"), dev("n/1"), dev("x/0", rack=DEFAULT_RACK, zone="none")]
    out = c.step(devices, domains, now=0.0)
    assert out.caps == {"n/1": pytest.approx(600)}  # 2,300 W − 1,000 W overhead = 1,300 W


def test_thermal_derating_lowers_caps() -> None:
    zone = Zone("z", 10_000, inlet_limit_c=27.0)
    assert inlet_factor(None, 27) == 1.0
    assert inlet_factor(22, 27) == 1.0
    assert inlet_factor(27, 27) == pytest.approx(0.8)
    assert inlet_factor(60, 27) == 0.5
    assert effective_zone_capacity_w(zone, 27.0, 0.5) == pytest.approx(10_000 * 0.8 * 0.9)
    c = PowerController(EXACT)
    devices = [dev("n/0"), dev("n/1")]
    domains = site({"r": 10_000}, zone_capacity=1750)
    # 1,750 W × 0.8 at the inlet limit = 1,400 W: nothing to cut
    assert c.step(devices, domains, now=0.0, zone_inlet_c={"z": 27.0}).caps == {}
    # one of two devices throttling thermally: × 0.9 → 1,260 W
    out = c.step(devices, domains, now=1.0, zone_inlet_c={"z": 27.0}, throttled={"n/0"})
    assert sum(out.caps.get(d.key, 700) for d in devices) == pytest.approx(1260)


def test_a_rising_draw_is_forecast() -> None:
    c = PowerController(EXACT)
    domains = site({"r": 1300})
    c.step([dev("n/0", draw=300, cap=700), dev("n/1", draw=600, cap=700)], domains, now=0.0)
    out = c.step([dev("n/0", draw=550, cap=700), dev("n/1", draw=700, cap=700)], domains, now=1.0)
    # 550 W and rising by 250 W a period: forecast 700 + 700 > 1,300
    assert out.forecast_over == {(RACK, "r"): pytest.approx(100)}
    assert out.over_budget == {}


def test_a_short_dip_keeps_its_cap_a_long_one_lends_it() -> None:
    c = PowerController(ControllerConfig(margin=0.0, lend_after_s=3.0))
    domains = site({"r": 1000})
    both = [dev("n/0", draw=500, cap=500), dev("n/1", draw=500, cap=500)]
    assert c.step(both, domains, now=0.0).caps == {}
    dip = [dev("n/0", draw=100, cap=500), dev("n/1", draw=500, cap=500)]
    # 1 s into n/0's pause: it keeps its 500 W, n/1 stays where it is
    assert c.step(dip, domains, now=1.0).caps == {}
    # 3 s in: the pause is no blip; n/0 keeps its 200 W minimum, n/1 may use the rest
    out = c.step(dip, domains, now=3.0)
    assert out.caps == {"n/0": pytest.approx(300), "n/1": pytest.approx(700)}


def test_half_second_period_keeps_the_rules_in_seconds() -> None:
    # the default acts twice a second; holds and lending delays count seconds, not steps
    assert ControllerConfig().period_s == 0.5
    with pytest.raises(ValueError):
        ControllerConfig(period_s=0.0)
    c = PowerController(ControllerConfig(margin=0.0, lend_after_s=3.0))
    domains = site({"r": 1000})
    both = [dev("n/0", draw=500, cap=500), dev("n/1", draw=500, cap=500)]
    assert c.step(both, domains, now=0.0).caps == {}
    dip = [dev("n/0", draw=100, cap=500), dev("n/1", draw=500, cap=500)]
    for k in range(1, 6):  # 0.5 … 2.5 s into the pause: five steps, still under 3 s
        assert c.step(dip, domains, now=0.5 * k).caps == {}
    out = c.step(dip, domains, now=3.0)
    assert out.caps == {"n/0": pytest.approx(300), "n/1": pytest.approx(700)}
