#!/usr/bin/env python3
"""Power capping under rack and zone budgets: no control, static uniform caps, Corral's
controller and the offline optimum, in a time-stepped simulation of a training site.

The site: two cooling zones. hall-a holds three racks of H100 nodes; hall-b two racks of H100
nodes and one of A100 80GB nodes (a model with no measured curve: the H100 shape scaled by
TDP, scheduler/power/curves.py). 4 nodes of 8 devices per rack, 192 devices. Each node has
--overhead-w (2 kW) of non-accelerator draw, an assumption for CPUs, NICs, switches and fans
under training load. Counted at the DGX H100 ceiling (10.2 kW less 8 × 700 W = 4.6 kW, the
topology loader's default) the overhead alone would take most of the cut zone's capacity, and
no device caps could absorb a 30% cut. Racks are provisioned at 80% and at 70% of their
devices' nameplate (TDP) plus the overhead; each zone's cooling at 97% of its racks' budgets,
so a full zone binds before its racks. A demand-response event cuts hall-b's capacity by 30%
from --dr-at to --dr-until.

The training mix (each job on whole nodes, phases synchronised across a job's devices):

  pretrain   priority 100 (weight 2): dense bf16 matmul-bound, the H100 calibration's curve
             (../shared/calibration/h100_sxm_powercap_bf16.json, scheduler/power/curves.yaml);
             draws its default limit unheld; a 2 s data stall at 20% TDP every 120 s and a
             20 s checkpoint at 17% TDP every 600 s. One pretrain job spans two racks.
  finetune   priority 0 (weight 1): memory-bound; draws 74% of its default limit unheld
             and keeps 1 − 0.4·(1 − f) of its throughput under a cap, f the device's curve
             relative to that draw. Both figures are assumptions, not measurements: memory-
             bound kernels follow HBM bandwidth, which a power cap (it lowers SM clocks: 1375 →
             347 MHz across the calibration) touches much less than dense math. A 30 s
             evaluation at 43% TDP every 300 s.
  research   priority −100 (weight 0.5): dense, input-bound: 40 s of compute, then 8 s
             loading data at 20% TDP.
  idle       nodes without a job draw 13% of TDP (90 W on the H100, the calibration's idle
             figure). Jobs start on idle nodes at --start-at and one ends at --end-at.

A device's value is its priority weight × its dense TFLOPS relative to the H100 (the catalog).
Throughput counts compute phases only (the others are not slowed by caps, which never fall
below what those phases draw); a phase's timing does not stretch when it runs slower.
A job spanning devices with different caps is counted device by device, not at its slowest
device's pace: the controller's objective is per device too.

Demand is given second by second; time advances in steps of the controller's period
(--period, 0.5 s by default as in ControllerConfig), and every strategy is charged the same way
within a step: a cap set at time s holds from s + its lag, and each device draws
min(demand, cap in force). Every strategy sees the same demand:

  none      no caps: what is kept is 100%; the seconds over budget are counted.
  uniform   equal static caps that fit each rack and zone with every device at its cap,
            recomputed the moment a budget changes (an operator's script, generously fast).
  corral    scheduler/power/controller.py's PowerController.step every period on the draw
            measured over the last period and the agent's power-cap throttle flag as the
            period ends: it learns of a phase change at the first step after it.
  optimal   scheduler/power/optimum.py: the best caps for each second with that second's
            demand known in advance, no margin, no lag, no rate limit.

A new cap takes 0.3 s to take hold (the calibration's step response: 700 → 300 W read 317 W
after 164 ms and 302 W after 364 ms); over that time the old cap holds. `optimal` applies its
caps at once. That is the same devices, not a faster one: knowing the demand in advance, it
would send each cap 0.3 s before the second it is for, and the cap would hold from the start
of that second; so charging it no lag is what "demand known in advance" on these devices
means. A second counts over budget in the parts where any rack or zone is over.

Where corral's shortfall comes from (70%, measured at this version): at --period 1 it keeps
98.90% of the optimum's weighted throughput, at 0.5 s 99.04%. About 0.6 points of the 1.1 lost
at 1 s are no latency but the hardware guarantee: corral keeps every budget's sum of caps
within it, and no cap goes below a device's minimum, so an idle or loading device reserves
its minimum (200 W on the H100) where the optimum, knowing it stays at 90–140 W, counts its
draw. (The optimum held to the same rule keeps 99.38% of its own figure.) The rest (about 0.5
points at 1 s, 0.35 at 0.5 s) is seeing phase changes a step late.

    python -m benchmarks.power [--json OUT]
    python -m benchmarks.power --quick --json /tmp/p.json
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.reporting import machine_info, write_reports
from scheduler.catalog.catalog import DeviceCatalog
from scheduler.power.controller import ControllerConfig, DeviceView, PowerController, priority_weight
from scheduler.power.curves import PowerCurve, curve_for
from scheduler.power.domains import PowerDomains, Rack, Zone
from scheduler.power.optimum import optimal

HERE = Path(__file__).resolve().parent
LEVELS = ("80", "70")
STRATEGIES = ("none", "uniform", "corral", "optimal")
LAG_S = 0.3
IDLE_FRACTION = 90 / 700
NODES_PER_RACK = 4
DEVICES_PER_NODE = 8
ZONE_SHARE = 0.97
DR_CUT = 0.30


@dataclass(frozen=True)
class Model:
    name: str
    tdp_w: float
    min_w: float
    default_w: float


H100 = Model("H100 80GB", 700, 200, 700)
A100 = Model("A100 80GB", 400, 100, 400)


@dataclass(frozen=True)
class Phase:
    name: str
    draw_fraction: float  # of TDP
    every_s: float
    duration_s: float


@dataclass(frozen=True)
class WorkloadClass:
    name: str
    priority: int
    unheld_fraction: float  # draw unheld, as a fraction of the default limit
    sensitivity: float
    phases: tuple[Phase, ...]
    source: str
    duty: tuple[float, float] | None = None  # (compute s, loading s) for input-bound work


CLASSES = {
    "pretrain": WorkloadClass(
        "pretrain",
        100,
        1.0,
        1.0,
        (Phase("data stall", 0.20, 120, 2), Phase("checkpoint", 0.17, 600, 20)),
        "H100 dense bf16 calibration (measured)",
    ),
    "finetune": WorkloadClass(
        "finetune",
        0,
        0.74,
        0.4,
        (Phase("evaluation", 0.43, 300, 30),),
        "calibration shape, α = 0.4, saturating at 74% of the default limit (assumption)",
    ),
    "research": WorkloadClass(
        "research",
        -100,
        1.0,
        1.0,
        (),
        "H100 dense bf16 calibration (measured); input-bound duty cycle",
        duty=(40, 8),
    ),
}


@dataclass
class SimDevice:
    key: str
    node: str
    rack: str
    zone: str
    model: Model
    job: str | None
    cls: str | None
    weight: float
    curve: PowerCurve
    demand: list[float] = field(default_factory=list)  # W wanted, second by second
    compute: list[bool] = field(default_factory=list)


@dataclass
class Site:
    devices: list[SimDevice]
    base: dict[str, PowerDomains]  # level → domains
    racks: dict[str, list[int]]  # rack → device indices
    zones: dict[str, list[int]]
    overhead_w: dict[str, float]  # rack → node overhead in W
    jobs: dict[str, dict[str, Any]]

    def domains(self, level: str, t: int, args: argparse.Namespace) -> PowerDomains:
        d = self.base[level]
        if args.dr_at <= t < args.dr_until:
            z = d.zones[args.dr_zone]
            return d.with_zone_capacity(args.dr_zone, z.capacity_w * (1 - DR_CUT))
        return d


def _timeline(
    cls: WorkloadClass, model: Model, horizon: int, start: int, end: int, rng: random.Random
) -> tuple[list[float], list[bool]]:
    idle = IDLE_FRACTION * model.tdp_w
    demand, compute = [idle] * horizon, [False] * horizon
    offsets = [rng.uniform(0, p.every_s) for p in cls.phases]
    duty_offset = rng.uniform(0, sum(cls.duty)) if cls.duty else 0.0
    for t in range(start, min(end, horizon)):
        draw, busy = cls.unheld_fraction * model.default_w, True
        if cls.duty and (t + duty_offset) % sum(cls.duty) >= cls.duty[0]:
            draw, busy = 0.20 * model.tdp_w, False
        for p, off in zip(cls.phases, offsets, strict=True):
            if (t + off) % p.every_s < p.duration_s:
                draw, busy = p.draw_fraction * model.tdp_w, False
        demand[t], compute[t] = draw, busy
    return demand, compute


def build_site(args: argparse.Namespace) -> Site:
    catalog = DeviceCatalog.load()
    ref = catalog.get("nvidia", H100.name)
    assert ref is not None and ref.dense_tflops is not None
    layout = [("hall-a", f"a{i}", H100) for i in (1, 2, 3)] + [
        ("hall-b", "b1", H100),
        ("hall-b", "b2", H100),
        ("hall-b", "b3", A100),
    ]
    # jobs: (class, rack, nodes, start, end); one pretrain job spans racks a1 and a2
    horizon = args.horizon
    plan: list[tuple[str, list[tuple[str, int]], int, int]] = [
        ("pretrain", [("a1", 0), ("a1", 1), ("a1", 2), ("a1", 3), ("a2", 0), ("a2", 1)], 0, horizon),
        ("finetune", [("a2", 2), ("a2", 3)], 0, horizon),
        ("research", [("a3", 0), ("a3", 1)], 0, horizon),
        ("pretrain", [("a3", 2), ("a3", 3)], args.start_at, horizon),
        ("pretrain", [("b1", 0), ("b1", 1), ("b1", 2)], 0, horizon),
        ("research", [("b1", 3)], 0, args.end_at),
        ("finetune", [("b2", 0), ("b2", 1)], 0, horizon),
        ("research", [("b2", 2), ("b2", 3)], args.start_at, horizon),
        ("pretrain", [("b3", 0), ("b3", 1)], 0, horizon),
        ("finetune", [("b3", 2)], 0, horizon),
        # b3 node 3 stays idle throughout
    ]
    where: dict[tuple[str, int], tuple[str | None, str | None, int, int]] = {}
    jobs: dict[str, dict[str, Any]] = {}
    for j, (cls, nodes, start, end) in enumerate(plan):
        job = f"job{j}-{cls}"
        jobs[job] = {"class": cls, "nodes": [f"{r}-n{n}" for r, n in nodes], "start_s": start, "end_s": end}
        for rack_node in nodes:
            where[rack_node] = (job, cls, start, end)
    base_curves = {m.name: curve_for(m.name, m.tdp_w, m.min_w, m.default_w) for m in (H100, A100)}
    class_curves: dict[tuple[str, str], PowerCurve] = {}
    for m in (H100, A100):
        for name, c in CLASSES.items():
            curve = base_curves[m.name]
            if c.unheld_fraction < 1:
                curve = curve.saturating_at(c.unheld_fraction * m.default_w)
            if c.sensitivity != 1:
                curve = curve.with_sensitivity(c.sensitivity)
            class_curves[(m.name, name)] = curve
    devices: list[SimDevice] = []
    racks: dict[str, list[int]] = {}
    zones: dict[str, list[int]] = {}
    nodes_of: dict[str, set[str]] = {}
    for zone, rack, model in layout:
        entry = catalog.get("nvidia", model.name)
        assert entry is not None and entry.dense_tflops is not None
        speed = entry.dense_tflops / ref.dense_tflops
        for n in range(NODES_PER_RACK):
            node = f"{rack}-n{n}"
            nodes_of.setdefault(rack, set()).add(node)
            job, cls, start, end = where.get((rack, n), (None, None, horizon, horizon))
            job_rng = random.Random(f"{args.seed}-{job}")
            if cls is not None:
                demand, compute = _timeline(CLASSES[cls], model, horizon, start, end, job_rng)
                curve = class_curves[(model.name, cls)]
                weight = priority_weight(CLASSES[cls].priority) * speed
            else:
                demand, compute = [IDLE_FRACTION * model.tdp_w] * horizon, [False] * horizon
                curve, weight = base_curves[model.name], speed
            for i in range(DEVICES_PER_NODE):
                racks.setdefault(rack, []).append(len(devices))
                zones.setdefault(zone, []).append(len(devices))
                devices.append(
                    SimDevice(
                        f"{node}/{i}", node, rack, zone, model, job, cls, weight, curve, demand, compute
                    )
                )
    overhead = {rack: args.overhead_w * len(nodes) for rack, nodes in nodes_of.items()}
    base: dict[str, PowerDomains] = {}
    for level in LEVELS:
        share = int(level) / 100
        rack_budget = {
            rack: share * sum(devices[i].model.tdp_w for i in idx) + overhead[rack]
            for rack, idx in racks.items()
        }
        rack_objs = {
            rack: Rack(rack, zone, rack_budget[rack], args.overhead_w, frozenset(nodes_of[rack]))
            for zone, rack, _ in layout
        }
        zone_objs = {
            z: Zone(z, ZONE_SHARE * sum(rack_budget[r] for zz, r, _ in layout if zz == z), 27.0)
            for z in {z for z, _, _ in layout}
        }
        base[level] = PowerDomains(racks=rack_objs, zones=zone_objs)
    return Site(devices, base, racks, zones, overhead, jobs)


def uniform_caps(site: Site, domains: PowerDomains) -> list[float]:
    """Equal caps per rack that fit the rack and its zone with every device at its cap."""
    caps = [d.model.default_w for d in site.devices]
    fraction: dict[str, float] = {}
    for rack, idx in site.racks.items():
        nameplate = sum(site.devices[i].model.tdp_w for i in idx)
        fraction[rack] = (domains.racks[rack].budget_w - site.overhead_w[rack]) / nameplate
    for zone, idx in site.zones.items():
        zone_racks = {site.devices[i].rack for i in idx}
        nameplate = sum(site.devices[i].model.tdp_w for i in idx)
        room = domains.zones[zone].capacity_w - sum(site.overhead_w[r] for r in zone_racks)
        for r in zone_racks:
            fraction[r] = min(fraction[r], room / nameplate)
    for i, d in enumerate(site.devices):
        caps[i] = min(d.model.default_w, max(d.model.min_w, fraction[d.rack] * d.model.tdp_w))
    return caps


@dataclass
class Tally:
    throughput: float = 0.0
    weighted: float = 0.0
    energy_j: float = 0.0
    over_s: float = 0.0
    episode_s: float = 0.0
    longest_episode_s: float = 0.0
    over_by_domain: dict[str, float] = field(default_factory=dict)

    def over(self, seconds: float, domains: Sequence[str]) -> None:
        if domains:
            self.over_s += seconds
            self.episode_s += seconds
            self.longest_episode_s = max(self.longest_episode_s, self.episode_s)
            for d in domains:
                self.over_by_domain[d] = self.over_by_domain.get(d, 0.0) + seconds
        else:
            self.episode_s = 0.0


def _over(site: Site, domains: PowerDomains, power: list[float]) -> list[str]:
    out = []
    for rack, idx in site.racks.items():
        if site.overhead_w[rack] + sum(power[i] for i in idx) > domains.racks[rack].budget_w + 1e-6:
            out.append(f"rack {rack}")
    for zone, idx in site.zones.items():
        racks = {site.devices[i].rack for i in idx}
        draw = sum(site.overhead_w[r] for r in racks) + sum(power[i] for i in idx)
        if draw > domains.zones[zone].capacity_w + 1e-6:
            out.append(f"zone {zone}")
    return out


def simulate(site: Site, level: str, strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    """One strategy over the horizon. Demand changes on whole seconds; time advances in steps
    of the controller's period, and every strategy is charged the same way within a step: a
    cap set at time s holds from s + its lag, the cap before it until then, and each device
    draws min(demand, cap in force)."""
    devs = site.devices
    n = len(devs)
    period = args.period
    steps = round(1.0 / period)
    caps = [d.model.default_w for d in devs]  # what was last set (what the agent reports)
    in_force = list(caps)  # what holds the device now
    pending: list[tuple[float, list[float]]] = []  # (holds from, caps), in time order
    tally = Tally()
    controller = PowerController(
        ControllerConfig(period_s=period, raise_step_w=args.raise_step_w, margin=args.margin)
    )
    measured = [devs[i].demand[0] for i in range(n)]
    capped = [False] * n
    last_domains: PowerDomains | None = None
    index = {d.key: i for i, d in enumerate(devs)}
    rates: tuple[list[float], list[float]] = ([], [])  # caps → each device's throughput at them
    speed = [d.weight / priority_weight(CLASSES[d.cls].priority) if d.cls else 1.0 for d in devs]
    for t in range(args.horizon):
        domains = site.domains(level, t, args)
        demand = [d.demand[t] for d in devs]
        for k in range(steps):
            now = t + k * period
            new: list[float] | None = None
            lag = LAG_S
            if strategy == "uniform" and domains is not last_domains:
                new = uniform_caps(site, domains)
            elif strategy == "corral":
                views = [
                    DeviceView(
                        d.key, d.node, d.rack, d.zone, d.job, d.weight, d.model.min_w, d.model.default_w,
                        True, measured[i], caps[i], d.curve, capped[i],
                    )
                    for i, d in enumerate(devs)
                ]  # fmt: skip
                out = controller.step(views, domains, now)
                if out.caps:
                    new = list(caps)
                    for key, cap in out.caps.items():
                        new[index[key]] = cap
            elif strategy == "optimal" and k == 0:
                # the demand of the whole second is known at its start: one solve a second
                views = [
                    DeviceView(
                        d.key, d.node, d.rack, d.zone, d.job, d.weight, d.model.min_w, d.model.default_w,
                        True, demand[i], caps[i], d.curve,
                    )
                    for i, d in enumerate(devs)
                ]  # fmt: skip
                alloc = optimal(views, domains, {d.key: demand[i] for i, d in enumerate(devs)})
                new = [max(d.model.min_w, alloc.watts[d.key]) for d in devs]
                lag = 0.0
            last_domains = domains
            if new is not None:
                caps = new
                pending.append((now + lag, new))
            avg = [0.0] * n
            start, end = now, now + period
            while start < end - 1e-9:
                while pending and pending[0][0] <= start + 1e-9:
                    in_force = pending.pop(0)[1]
                stop = min(end, pending[0][0]) if pending else end
                seconds = stop - start
                power = [min(demand[i], in_force[i]) for i in range(n)]
                if rates[0] is not in_force:
                    rates = (in_force, [d.curve.throughput(in_force[i]) for i, d in enumerate(devs)])
                for i, d in enumerate(devs):
                    avg[i] += power[i] * seconds / period
                    if d.compute[t]:
                        thr = seconds * rates[1][i]
                        tally.throughput += thr * speed[i]
                        tally.weighted += thr * d.weight
                tally.energy_j += seconds * sum(power)
                tally.over(seconds, _over(site, domains, power))
                start = stop
            measured = avg
            # the agent's throttle flag: the cap in force holds the device back as it samples
            capped = [demand[i] > in_force[i] + 0.5 for i in range(n)]
    return {
        "throughput": tally.throughput,
        "weighted": tally.weighted,
        "energy_kwh": tally.energy_j / 3.6e6,
        "seconds_over_budget": tally.over_s,
        "longest_over_s": tally.longest_episode_s,
        "over_by_domain": tally.over_by_domain,
    }


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    site = build_site(args)
    levels: dict[str, Any] = {}
    mapping: dict[str, dict[str, dict[str, float]]] = {}
    for level in LEVELS:
        raw = {s: simulate(site, level, s, args) for s in STRATEGIES}
        base = raw["none"]
        rows = {}
        for s, r in raw.items():
            rows[s] = {
                "throughput_kept": r["throughput"] / base["throughput"],
                "weighted_throughput_kept": r["weighted"] / base["weighted"],
                "seconds_over_budget": round(r["seconds_over_budget"], 3),
                "energy_kwh": round(r["energy_kwh"], 3),
            }
        mapping[level] = rows
        levels[level] = {
            s: {
                **rows[s],
                "longest_over_budget_s": round(raw[s]["longest_over_s"], 3),
                "over_by_domain_s": {k: round(v, 3) for k, v in sorted(raw[s]["over_by_domain"].items())},
            }
            for s in STRATEGIES
        }
    return {
        "benchmark": "power",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": machine_info(),
        "settings": {
            "horizon_s": args.horizon,
            "dr_zone": args.dr_zone,
            "dr_cut": DR_CUT,
            "dr_at_s": args.dr_at,
            "dr_until_s": args.dr_until,
            "start_at_s": args.start_at,
            "end_at_s": args.end_at,
            "overhead_w_per_node": args.overhead_w,
            "cap_lag_s": LAG_S,
            "control_period_s": args.period,
            "controller": {"raise_step_w": args.raise_step_w, "margin": args.margin},
            "zone_share_of_racks": ZONE_SHARE,
            "seed": args.seed,
        },
        "site": site_summary(site),
        "classes": {
            name: {"priority": c.priority, "weight": priority_weight(c.priority), "curve": c.source}
            for name, c in CLASSES.items()
        },
        "mapping": mapping,
        "levels": levels,
        "extra_devices": extra_devices(site, mapping),
        "goals": goals(levels),
    }


def site_summary(site: Site) -> dict[str, Any]:
    by_rack: dict[str, Any] = {}
    for rack, idx in site.racks.items():
        d = site.devices[idx[0]]
        by_rack[rack] = {
            "zone": d.zone,
            "model": d.model.name,
            "devices": len(idx),
            "budget_w": {lv: round(site.base[lv].racks[rack].budget_w) for lv in LEVELS},
            "curve": d.curve.source if d.model is A100 else "see classes",
        }
    return {
        "devices": len(site.devices),
        "racks": by_rack,
        "zones": {z: {lv: round(site.base[lv].zones[z].capacity_w) for lv in LEVELS} for z in site.zones},
        "jobs": site.jobs,
    }


def extra_devices(site: Site, mapping: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """How many more devices one rack's nameplate budget hosts when provisioned at the level
    (with Corral keeping it inside), and what the site then delivers relative to nameplate."""
    per_node = DEVICES_PER_NODE * H100.tdp_w
    overhead = site.overhead_w[next(iter(site.racks))] / NODES_PER_RACK
    out = {}
    for level in LEVELS:
        share = int(level) / 100
        ratio = (per_node + overhead) / (share * per_node + overhead)
        kept = mapping[level]["corral"]
        out[level] = {
            "devices_per_nameplate_budget": round(ratio, 4),
            "extra_devices_pct": round(100 * (ratio - 1), 2),
            "site_throughput_vs_nameplate": round(ratio * kept["throughput_kept"], 4),
            "site_weighted_throughput_vs_nameplate": round(ratio * kept["weighted_throughput_kept"], 4),
        }
    return out


def goals(levels: dict[str, Any]) -> dict[str, Any]:
    ratio = {
        lv: v["corral"]["weighted_throughput_kept"] / v["optimal"]["weighted_throughput_kept"]
        for lv, v in levels.items()
    }
    longest = {lv: v["corral"]["longest_over_budget_s"] for lv, v in levels.items()}
    margin = {
        lv: v["corral"]["weighted_throughput_kept"] - v["uniform"]["weighted_throughput_kept"]
        for lv, v in levels.items()
    }
    return {
        "corral_over_optimal_weighted": ratio,
        "within_1pct_of_optimal": all(r >= 0.99 for r in ratio.values()),
        "corral_longest_over_budget_s": longest,
        "at_most_2s_over_after_any_change": all(s <= 2.0 for s in longest.values()),
        "corral_minus_uniform_weighted": margin,
        "above_uniform": all(m > 0 for m in margin.values()),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def markdown(r: dict[str, Any]) -> str:
    st, g = r["settings"], r["goals"]
    lines = [
        "# Power capping under rack and zone budgets",
        "",
        f"Run {r['finished_at']} with `{r['command']}` ({r['wall_s']:.1f} s). "
        f"{r['site']['devices']} devices, "
        f"{st['horizon_s']} s simulated with demand per second, in {st['control_period_s']:g} s steps "
        f"(the controller's period); demand response cuts zone {st['dr_zone']} by "
        f"{st['dr_cut']:.0%} from t = {st['dr_at_s']} s to {st['dr_until_s']} s; jobs start at "
        f"t = {st['start_at_s']} s, one ends at t = {st['end_at_s']} s. New caps take {st['cap_lag_s']} s "
        "to hold (except `optimal`: knowing the demand in advance, it would send each cap that much "
        "early, so on the same devices its caps hold from the start of the second they are for).",
        "",
        "| level | strategy | throughput kept | weighted kept | s over budget | longest episode | energy |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for lv, rows in r["levels"].items():
        for s, v in rows.items():
            lines.append(
                f"| {lv}% | {s} | {_pct(v['throughput_kept'])} | {_pct(v['weighted_throughput_kept'])} "
                f"| {v['seconds_over_budget']:.1f} | {v['longest_over_budget_s']:.1f} s "
                f"| {v['energy_kwh']:.1f} kWh |"
            )
    met = {k: "met" if g[k] else "not met" for k in g if isinstance(g[k], bool)}
    lines += [
        "",
        "Goals: Corral ≥ 99% of the optimum's weighted throughput at both levels: "
        f"**{met['within_1pct_of_optimal']}** ("
        + ", ".join(f"{lv}%: {_pct(v)}" for lv, v in g["corral_over_optimal_weighted"].items())
        + "); never more than 2 s over budget after a change: "
        f"**{met['at_most_2s_over_after_any_change']}** (longest "
        + ", ".join(f"{lv}%: {v:.1f} s" for lv, v in g["corral_longest_over_budget_s"].items())
        + f"); above uniform caps: **{met['above_uniform']}**.",
        "",
        "Where Corral's shortfall comes from (70%, measured at this version): at `--period 1` (one "
        "control step a second) it keeps 98.90% of the optimum's weighted throughput, at 0.5 s 99.04%. "
        "About 0.6 points of the 1.1 lost at 1 s are no latency but the hardware guarantee: Corral keeps "
        "every budget's sum of caps within it and no cap below a device's minimum, so an idle or "
        "loading device reserves its minimum (200 W on the H100) where the optimum, knowing it stays "
        "at 90–140 W, counts its draw (the optimum held to the same rule keeps 99.38% of its own "
        "figure). The rest (about 0.5 points at 1 s, 0.35 at 0.5 s) is seeing phase changes a step late.",
        "",
        "## Devices a fixed budget hosts",
        "",
        "A rack budget sized for N devices at nameplate (TDP + node overhead) hosts this many times N "
        "when provisioned at the level, Corral keeping it inside; the site then delivers:",
        "",
        "| level | devices vs nameplate | extra devices | site throughput vs nameplate | weighted |",
        "|---:|---:|---:|---:|---:|",
    ]
    for lv, e in r["extra_devices"].items():
        lines.append(
            f"| {lv}% | {e['devices_per_nameplate_budget']:.3f}× | +{e['extra_devices_pct']:.1f}% "
            f"| {e['site_throughput_vs_nameplate']:.3f}× "
            f"| {e['site_weighted_throughput_vs_nameplate']:.3f}× |"
        )
    lines += ["", "## Site and mix", ""]
    for rack, v in r["site"]["racks"].items():
        lines.append(
            f"- rack {rack} (zone {v['zone']}): {v['devices']} × {v['model']}, budget "
            + ", ".join(f"{lv}%: {w / 1000:.1f} kW" for lv, w in v["budget_w"].items())
        )
    for z, caps in r["site"]["zones"].items():
        lines.append(f"- zone {z}: " + ", ".join(f"{lv}%: {w / 1000:.1f} kW" for lv, w in caps.items()))
    for name, c in r["classes"].items():
        lines.append(
            f"- class {name}: priority {c['priority']} (weight {c['weight']:g}); curve: {c['curve']}"
        )
    lines += ["", "Over-budget seconds by domain (none / uniform / corral):", ""]
    for lv, rows in r["levels"].items():
        for s in ("none", "uniform", "corral"):
            doms = rows[s]["over_by_domain_s"]
            lines.append(f"- {lv}% {s}: " + (", ".join(f"{k} {v:.1f} s" for k, v in doms.items()) or "none"))
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--json", default=None, help="write exactly the {level: {strategy: figures}} mapping here")
    p.add_argument(
        "--report", default=str(HERE / "results" / "power.json"), help="full report (+ .md beside)"
    )
    p.add_argument("--horizon", type=int, default=1800, help="simulated seconds")
    p.add_argument("--dr-zone", default="hall-b")
    p.add_argument("--dr-at", type=int, default=900)
    p.add_argument("--dr-until", type=int, default=1200)
    p.add_argument("--start-at", type=int, default=300)
    p.add_argument("--end-at", type=int, default=1400)
    p.add_argument("--overhead-w", type=float, default=2000.0, help="non-accelerator draw per node")
    p.add_argument("--raise-step-w", type=float, default=ControllerConfig().raise_step_w)
    p.add_argument("--margin", type=float, default=ControllerConfig().margin)
    p.add_argument(
        "--period",
        type=float,
        default=ControllerConfig().period_s,
        help="controller period in s (1 s divided by a whole number)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="300 s: budget cut at 100 s, jobs start at 50 s")
    args = p.parse_args(argv)
    if args.quick:
        args.horizon, args.dr_at, args.dr_until, args.start_at, args.end_at = 300, 100, 200, 50, 250
    if not 0 < args.period <= 1 or abs(round(1 / args.period) * args.period - 1) > 1e-9:
        p.error(f"--period {args.period}: must divide 1 s into a whole number of steps")
    if args.horizon < 10 or not 0 <= args.dr_at <= args.dr_until:
        p.error("--horizon ≥ 10 and 0 ≤ --dr-at ≤ --dr-until")
    if args.json and Path(args.json).resolve() in (
        Path(args.report).resolve(),
        Path(args.report).resolve().with_suffix(".md"),
    ):
        p.error(
            f"--json {args.json}: the full report is written there (--report); give the mapping another path"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.power", *(sys.argv[1:] if argv is None else argv)])
    t0 = time.perf_counter()
    result = run(args, command)
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    report = Path(args.report)
    write_reports(result, report, report.with_suffix(".md"), markdown)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result["mapping"], indent=2) + "\n")
    for lv, rows in result["levels"].items():
        for s, v in rows.items():
            print(
                f"{lv}% {s:8} throughput {_pct(v['throughput_kept'])}  "
                f"weighted {_pct(v['weighted_throughput_kept'])}"
                f"  over budget {v['seconds_over_budget']:.1f} s (longest {v['longest_over_budget_s']:.1f} s)"
                f"  {v['energy_kwh']:.1f} kWh"
            )
    g = result["goals"]
    show: Callable[[bool], str] = lambda ok: "met" if ok else "not met"  # noqa: E731
    print(
        f"goals: corral ≥ 99% of optimal weighted {show(g['within_1pct_of_optimal'])} "
        f"({', '.join(f'{k}: {_pct(v)}' for k, v in g['corral_over_optimal_weighted'].items())}); "
        f"≤ 2 s over after any change {show(g['at_most_2s_over_after_any_change'])}; "
        f"above uniform {show(g['above_uniform'])}"
    )
    for lv, e in result["extra_devices"].items():
        print(
            f"{lv}%: {e['devices_per_nameplate_budget']:.3f}× the devices of nameplate provisioning, "
            f"site throughput {e['site_throughput_vs_nameplate']:.3f}× nameplate's"
        )
    print(
        f"{result['wall_s']:.1f} s; wrote {report} and {report.with_suffix('.md')}"
        + (f", {args.json}" if args.json else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
