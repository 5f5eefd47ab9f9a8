#!/usr/bin/env python3
"""Placement at fleet scale: how fast does the engine decide on a 10,000-node mixed fleet?

The fleet (scheduler/sim/fleet.py, MIXED_FLEET): --nodes nodes × 8 devices of seven models —
H100 SXM, A100 80GB, H20, Ascend 910B (one 8-way island each), Cambricon MLU590 and Hygon K100
(2 × 4 islands), H100 PCIe (4 × 2) — 16 nodes per rack, 32 racks (4,096 devices) per block,
laid out model by model so racks and most blocks hold one model.

  (a) single-device decisions with the default policy (corral) while the fleet fills from empty
      to --fill (60 %) of its devices: a stream of 1-device requests (any model, NVIDIA only,
      Ascend only, H100/A100 only; CPU and memory vary), each one `engine.place` call, timed
      one by one. The rate is decisions over the summed decision time (the benchmark's own
      bookkeeping excluded); p50/p99 per decision, and the rate per tenth of the fill.
  (b) gangs of 8, 64, 512 and 4,096 devices (workers of 8 devices) with the topology
      *required*: 8 on one node, 64 in one rack, 512 and 4,096 in one block. They are placed
      on the fleet as (a) left it (partly loaded), cycling through four model constraints,
      and each decision is rolled back (its allocations released) right after it is timed,
      so every repeat sees the same cluster.
  (c) peak memory: the process's maximum resident set (getrusage ru_maxrss), and the
      fleet's own size (tracemalloc while building it).
  (d) with --sim-jobs N: the simulator end to end — N jobs of a mixed synthetic workload
      (scheduler/sim/workload.py: mixed_jobs) on a fresh fleet, with the control plane's
      scheduling pass (--sim-pass admission) or the simulator's greedy stand-in (greedy):
      simulator wall time and placements per wall second. Off by default (minutes at scale).

Goals: ≥ 1,000 single-device decisions/s, and p99 ≤ 100 ms for a 512-device gang. The anchor:
kube-scheduler places 680-810 pods/s at 5,000 nodes (the issue's figure, from the Kubernetes
scheduling-throughput benchmarks; no better public source was found here).

    python -m benchmarks.scale                         # 10,000 nodes, ~1-2 minutes
    python -m benchmarks.scale --nodes 500 --fill 0.2 --repeats 5 --json /tmp/s.json  # smoke
    python -m benchmarks.scale --profile               # adds cProfile's top functions
    python -m benchmarks.scale --sim-jobs 100000 --sim-pass greedy   # + the simulator, minutes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import resource
import shlex
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.reporting import machine_info, write_reports
from scheduler.placement.cluster import ClusterState
from scheduler.placement.engine import place
from scheduler.placement.policies import DEFAULT_POLICY, make_policy
from scheduler.placement.request import PlacementRequest, Topology, TopologyLevel, WorkerShape
from scheduler.sim.engine import Simulator, admission_pass, catalog_speed_of, greedy_pass, mix_of, percentile
from scheduler.sim.fleet import MIXED_FLEET, build_fleet, device_count
from scheduler.sim.workload import mixed_jobs

HERE = Path(__file__).resolve().parent
GOAL_SINGLE_PER_S = 1000.0
GOAL_GANG_DEVICES = 512
GOAL_GANG_P99_MS = 100.0
ANCHOR = "kube-scheduler: 680-810 pods/s at 5,000 nodes (the issue's figure)"
GANGS = (
    (8, TopologyLevel.NODE),
    (64, TopologyLevel.RACK),
    (512, TopologyLevel.BLOCK),
    (4096, TopologyLevel.BLOCK),
)
# The constraints requests carry: (vendors, models), cycled
CONSTRAINTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((), ()),
    (("nvidia",), ()),
    ((), ("Ascend 910B",)),
    ((), ("H100 80GB", "A100 80GB")),
)


def single_requests(seed: int) -> Any:
    """An endless stream of 1-device requests with a few CPU/memory sizes and constraints."""
    rng = random.Random(seed)
    i = 0
    while True:
        vendors, models = CONSTRAINTS[rng.choice((0, 0, 0, 1, 1, 2, 3))]
        shape = WorkerShape(1, 1000, rng.choice((4000, 8000, 12000)), rng.choice((32768, 65536, 131072)))
        yield PlacementRequest(f"s{i}", 1, shape, vendors=vendors, models=models)
        i += 1


def fill(cluster: ClusterState, target: float, seed: int) -> dict[str, Any]:
    policy = make_policy(DEFAULT_POLICY)
    speed_of = catalog_speed_of()
    total = device_count(cluster)
    goal = int(total * target)
    placed = failed = 0
    lat_ns: list[int] = []
    tenths: list[list[int]] = [[] for _ in range(10)]
    perf = time.perf_counter_ns
    for request in single_requests(seed):
        if placed >= goal:
            break
        t0 = perf()
        decision = place(request, cluster, policy, speed_of)
        dt = perf() - t0
        lat_ns.append(dt)
        tenths[min(9, placed * 10 // max(goal, 1))].append(dt)
        if decision.placed:
            placed += 1
        else:
            failed += 1
            if failed > 1000 and failed > placed:
                break  # the constrained pools are full: the fill cannot go on
    busy_s = sum(lat_ns) / 1e9
    lat_ms = sorted(x / 1e6 for x in lat_ns)
    return {
        "target_fill": target,
        "reached_fill": placed / total,
        "decisions": len(lat_ns),
        "placed": placed,
        "unplaced": failed,
        "decisions_per_s": len(lat_ns) / busy_s if busy_s else 0.0,
        "p50_ms": percentile(lat_ms, 50),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": lat_ms[-1] if lat_ms else 0.0,
        "per_tenth_decisions_per_s": [round(len(t) / (sum(t) / 1e9)) if t else 0 for t in tenths],
    }


def gangs(cluster: ClusterState, repeats: int) -> list[dict[str, Any]]:
    policy = make_policy(DEFAULT_POLICY)
    speed_of = catalog_speed_of()
    out = []
    perf = time.perf_counter_ns
    for devices, level in GANGS:
        lat_ms: list[float] = []
        placed = 0
        reasons: dict[str, int] = {}
        for r in range(repeats):
            vendors, models = CONSTRAINTS[r % len(CONSTRAINTS)]
            request = PlacementRequest(
                f"g{devices}-{r}",
                devices // 8,
                WorkerShape(8, 1000, 64000, 512 * 1024),
                vendors=vendors,
                models=models,
                topology=Topology(level, required=True),
            )
            t0 = perf()
            decision = place(request, cluster, policy, speed_of)
            lat_ms.append((perf() - t0) / 1e6)
            if decision.placed:
                placed += 1
            else:
                reasons[decision.reason] = reasons.get(decision.reason, 0) + 1
            for a in decision.allocations:
                cluster.release(a)
        lat_ms.sort()
        out.append(
            {
                "devices": devices,
                "workers": devices // 8,
                "topology": f"{level.value} (required)",
                "repeats": repeats,
                "placed": placed,
                "p50_ms": percentile(lat_ms, 50),
                "p99_ms": percentile(lat_ms, 99),
                "max_ms": lat_ms[-1] if lat_ms else 0.0,
                "unplaced_reasons": reasons,
            }
        )
    return out


def simulate_trace(nodes: int, jobs: int, pass_name: str, seed: int) -> dict[str, Any]:
    cluster = build_fleet(nodes)
    trace = mixed_jobs(jobs, device_count(cluster), load=0.9, seed=seed)
    policy = make_policy(DEFAULT_POLICY, mix_of(trace))
    sim = Simulator(
        cluster, trace, policy, pass_fn=admission_pass if pass_name == "admission" else greedy_pass
    )
    result = sim.run()
    summary = result.summary(timeline_points=20)
    return {
        "nodes": nodes,
        "jobs": jobs,
        "pass": pass_name,
        "wall_s": result.wall_s,
        "placements": result.placements,
        "placements_per_wall_s": result.placements_per_s,
        "passes": result.passes,
        "jobs_offered_to_pass": result.place_calls,
        "preemptions": sim.preemptions,
        "jobs_unplaced": summary["jobs_unplaced"],
        "jct_mean_s": summary["jct_mean_s"],
        "queueing_delay_mean_s": summary["queueing_delay_mean_s"],
        "makespan_s": summary["makespan_s"],
        "mean_allocation": summary["mean_allocation"],
    }


def profile_top(fn: Any, n: int = 12) -> list[dict[str, Any]]:
    prof = cProfile.Profile()
    prof.runcall(fn)
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({name})",
                "calls": ncalls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
        )
    rows.sort(key=lambda r: -float(r["tottime_s"]))
    return rows[:n]


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    tracemalloc.start()
    t0 = time.perf_counter()
    cluster = build_fleet(args.nodes)
    build_s = time.perf_counter() - t0
    fleet_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    single = fill(cluster, args.fill, args.seed)
    gang = gangs(cluster, args.repeats)
    profile: dict[str, Any] = {}
    if args.profile:
        fresh = build_fleet(args.nodes)
        profile["single"] = profile_top(lambda: fill(fresh, args.fill, args.seed))
        profile["gang_512"] = profile_top(lambda: gangs(cluster, args.repeats))
    sim = simulate_trace(args.nodes, args.sim_jobs, args.sim_pass, args.seed) if args.sim_jobs else None
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    g512 = next((g for g in gang if g["devices"] == GOAL_GANG_DEVICES), None)
    return {
        "benchmark": "scale",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": machine_info(),
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("json", "md")},
            "policy": DEFAULT_POLICY,
        },
        "fleet": {
            "nodes": len(cluster),
            "devices": device_count(cluster),
            "racks": len(cluster.racks),
            "blocks": len(cluster.blocks),
            "models": [
                {"pool": f"{k.vendor} {k.model}", "share": k.share, "islands": list(k.islands)}
                for k in MIXED_FLEET
            ],
            "build_s": build_s,
            "state_bytes": fleet_bytes,
        },
        "single": single,
        "gangs": gang,
        "peak_rss_mib": maxrss_kib / 1024,
        "simulator": sim,
        "profile": profile,
        "goals": {
            "single_per_s": GOAL_SINGLE_PER_S,
            "single_met": single["decisions_per_s"] >= GOAL_SINGLE_PER_S,
            "gang_devices": GOAL_GANG_DEVICES,
            "gang_p99_ms": GOAL_GANG_P99_MS,
            "gang_met": g512 is not None and g512["p99_ms"] <= GOAL_GANG_P99_MS,
        },
        "anchor": ANCHOR,
    }


def markdown(r: dict[str, Any]) -> str:
    m, f, s, goals = r["machine"], r["fleet"], r["single"], r["goals"]
    models = ", ".join(
        f"{x['pool']} {x['share']:.0%} ({'+'.join(map(str, x['islands']))})" for x in f["models"]
    )
    lines = [
        "# Placement scale benchmark",
        "",
        f"Run {r['finished_at']} with `{r['command']}`.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, {m['platform']}. "
        "One thread; times are `engine.place` calls alone.",
        "",
        f"Fleet: {f['nodes']:,} nodes, {f['devices']:,} devices, {f['racks']} racks of 16 nodes, "
        f"{f['blocks']} blocks of 32 racks; models (share, islands): {models}. Built in "
        f"{f['build_s']:.2f} s; the cluster state takes {f['state_bytes'] / 2**20:.0f} MiB.",
        "",
        f"## (a) Single-device decisions, policy {DEFAULT_POLICY}, fleet filling up",
        "",
        f"{s['decisions']:,} decisions ({s['placed']:,} placed, {s['unplaced']:,} could not be) took the "
        f"fleet from 0 to {s['reached_fill']:.0%} of its devices (target {s['target_fill']:.0%}).",
        "",
        "| decisions/s | p50 | p99 | max |",
        "|---:|---:|---:|---:|",
        f"| **{s['decisions_per_s']:,.0f}** | {s['p50_ms']:.3f} ms | {s['p99_ms']:.3f} ms "
        f"| {s['max_ms']:.2f} ms |",
        "",
        "Rate per tenth of the fill (0-10 %, ..., of the target): "
        + ", ".join(f"{x:,}" for x in s["per_tenth_decisions_per_s"])
        + " decisions/s.",
        "",
        "## (b) Gangs with a required topology, partly loaded fleet, each rolled back",
        "",
        "Workers of 8 devices; model constraints cycle through any / NVIDIA / Ascend 910B / H100+A100.",
        "",
        "| devices | workers | topology | repeats | placed | p50 | p99 | max |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for g in r["gangs"]:
        lines.append(
            f"| {g['devices']:,} | {g['workers']} | {g['topology']} | {g['repeats']} | {g['placed']} | "
            f"{g['p50_ms']:.2f} ms | {g['p99_ms']:.2f} ms | {g['max_ms']:.2f} ms |"
        )
    reasons = {g["devices"]: g["unplaced_reasons"] for g in r["gangs"] if g["unplaced_reasons"]}
    if reasons:
        lines += ["", "Why some gangs could not be placed (count):", ""]
        for devices, why in reasons.items():
            for text, n in why.items():
                lines.append(f"- {devices:,} devices, {n}×: {text}")
    lines += [
        "",
        "## (c) Memory",
        "",
        f"Peak resident set of the whole run: {r['peak_rss_mib']:.0f} MiB.",
        "",
    ]
    sim = r.get("simulator")
    if sim:
        lines += [
            "## (d) The simulator end to end",
            "",
            f"{sim['jobs']:,} jobs (mixed synthetic workload, offered load 90 %) on {sim['nodes']:,} nodes, "
            f"scheduling pass `{sim['pass']}`: **{sim['wall_s']:.1f} s** of wall time, "
            f"{sim['placements_per_wall_s']:,.0f} placements per wall second, {sim['passes']:,} passes, "
            f"{sim['jobs_offered_to_pass']:,} jobs offered to a pass, {sim['jobs_unplaced']} never placed; "
            f"mean JCT {sim['jct_mean_s'] / 3600:.2f} h, mean allocation {sim['mean_allocation']:.0%}.",
            "",
        ]
    lines += [
        "## Goals",
        "",
        f"- ≥ {goals['single_per_s']:,.0f} single-device decisions/s: "
        f"{'met' if goals['single_met'] else '**NOT met**'} ({s['decisions_per_s']:,.0f}/s).",
        f"- p99 ≤ {goals['gang_p99_ms']:.0f} ms for a {goals['gang_devices']}-device gang: "
        f"{'met' if goals['gang_met'] else '**NOT met**'}.",
        f"- Anchor: {r['anchor']}.",
        "",
    ]
    for phase, rows in r["profile"].items():
        lines += [f"## Profile: {phase} (cProfile, top by own time)", ""]
        lines += ["| function | calls | own s | cum s |", "|---|---:|---:|---:|"]
        lines += [
            f"| `{x['function']}` | {x['calls']:,} | {x['tottime_s']} | {x['cumtime_s']} |" for x in rows
        ]
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--fill", type=float, default=0.6, help="fill the fleet to this share in (a)")
    p.add_argument("--repeats", type=int, default=100, help="decisions per gang size in (b)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=str(HERE / "results" / "scale.json"), help="the JSON report")
    p.add_argument("--md", default=None, help="the Markdown report (default: beside --json, .md)")
    p.add_argument("--profile", action="store_true", help="also run (a) and (b) under cProfile")
    p.add_argument("--sim-jobs", type=int, default=0, help="(d): simulate this many jobs (0: skip)")
    p.add_argument(
        "--sim-pass",
        choices=("admission", "greedy"),
        default="admission",
        help="(d): the control plane's pass or the simulator's greedy stand-in",
    )
    args = p.parse_args(argv)
    if args.nodes < 1 or not 0 < args.fill <= 1 or args.repeats < 1:
        p.error("--nodes and --repeats must be ≥ 1, --fill in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.scale", *(sys.argv[1:] if argv is None else argv)])
    result = run(args, command)
    out = Path(args.json)
    md = Path(args.md) if args.md else out.with_suffix(".md")
    write_reports(result, out, md, markdown)
    s = result["single"]
    print(f"fleet: {result['fleet']['nodes']:,} nodes, {result['fleet']['devices']:,} devices")
    print(
        f"(a) single-device, {DEFAULT_POLICY}, 0 → {s['reached_fill']:.0%}: "
        f"{s['decisions_per_s']:,.0f} decisions/s, "
        f"p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms"
    )
    for g in result["gangs"]:
        print(
            f"(b) gang {g['devices']:>5,} devices, {g['topology']:<16}: p50 {g['p50_ms']:8.2f} ms, "
            f"p99 {g['p99_ms']:8.2f} ms, placed {g['placed']}/{g['repeats']}"
        )
    state_mib = result["fleet"]["state_bytes"] / 2**20
    if result["simulator"]:
        d = result["simulator"]
        print(
            f"(d) simulator: {d['jobs']:,} jobs on {d['nodes']:,} nodes ({d['pass']} pass): "
            f"{d['wall_s']:.1f} s, {d['placements_per_wall_s']:,.0f} placements/s"
        )
    print(f"(c) peak RSS {result['peak_rss_mib']:.0f} MiB; fleet state {state_mib:.0f} MiB")
    goals = result["goals"]
    print(
        f"goals: ≥{GOAL_SINGLE_PER_S:,.0f}/s single {'met' if goals['single_met'] else 'NOT met'}; "
        f"512-gang p99 ≤ {GOAL_GANG_P99_MS:.0f} ms {'met' if goals['gang_met'] else 'NOT met'}"
    )
    print(f"anchor: {ANCHOR}")
    print(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
