#!/usr/bin/env python3
"""Heterogeneous workload: does choosing the model by the job's speed shorten job completion?

A seeded Gavel-style mix (scheduler/sim/workload.py: LLM gangs that run 3× faster on H100
than on A100, transformers 2×, small CNNs 1.2×, recommendation models 1.1×; some CNN and
recsys jobs CUDA-only) arrives as a Poisson stream on a fleet of H100 80GB, A100 80GB and
Ascend 910B nodes (8 devices each), and runs in the simulator (scheduler/sim/engine.py, the
control plane's scheduling pass, the default placement policy). The same jobs, with the same true speeds, are
scheduled three ways:

  agnostic          no rates in the requests and `speed_of=lambda p: None`: the engine sees
                    every accepted model as one tier and picks by fragmentation alone;
  fastest-first     each request declares its speed per model (`rates`), ranked raw
                    (`Simulator(relative_rates=False)`): every job tries its fastest model
                    first, so a CNN gaining 1.2× takes the H100 an LLM would run 3× faster on;
  throughput-aware  the same rates ranked by comparative advantage, the product's behaviour
                    (scheduler/placement/speedup.py): each job's rate over the running mean
                    rate on that model of the jobs arrived so far (no look-ahead), so H100 goes
                    first to the jobs that gain more there than the typical job; the others
                    take it when their first choice is full.

Reported per variant: mean, p50 and p95 JCT, mean queueing delay, makespan, allocation, and
per job class the mean JCT and where its device-time went.

    python -m benchmarks.hetero                     # 64 nodes, 3,000 jobs, loads 1.0 and 1.6
    python -m benchmarks.hetero --nodes 12 --jobs 150 --loads 1.2 --json /tmp/h.json   # smoke
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.reporting import machine_info, write_reports
from scheduler.placement.policies import DEFAULT_POLICY, make_policy
from scheduler.sim.engine import SimJob, SimResult, Simulator, catalog_speed_of, mix_of
from scheduler.sim.fleet import NodeKind, build_fleet, device_count
from scheduler.sim.workload import GAVEL_CLASSES, gavel_jobs, with_rates

HERE = Path(__file__).resolve().parent
FLEET = (
    NodeKind("nvidia", "H100 80GB", 0.25, (8,), 80),
    NodeKind("nvidia", "A100 80GB", 0.40, (8,), 80),
    NodeKind("ascend", "Ascend 910B", 0.35, (8,), 64),
)
VARIANTS = ("agnostic", "fastest-first", "throughput-aware")


def run_variant(name: str, jobs: Sequence[SimJob], nodes: int) -> tuple[SimResult, dict[str, Any]]:
    cluster = build_fleet(nodes, FLEET, nodes_per_rack=8, racks_per_block=8)
    policy = make_policy(DEFAULT_POLICY, mix_of(jobs))
    if name == "agnostic":
        sim = Simulator(cluster, jobs, policy, speed_of=lambda _: None)
    elif name == "fastest-first":
        sim = Simulator(cluster, with_rates(jobs), policy, speed_of=catalog_speed_of(), relative_rates=False)
    elif name == "throughput-aware":
        sim = Simulator(cluster, with_rates(jobs), policy, speed_of=catalog_speed_of(), relative_rates=True)
    else:
        raise ValueError(f"unknown variant {name!r}")
    result = sim.run()
    summary = result.summary(timeline_points=40)
    summary["preemptions"] = sim.preemptions
    classes: dict[str, dict[str, Any]] = {}
    for r in result.jobs:
        cls = r.job.job_id.rsplit("-", 1)[0]
        c = classes.setdefault(cls, {"jobs": 0, "jct_sum": 0.0, "device_s": {}})
        c["jobs"] += 1
        c["jct_sum"] += r.jct
        pool = r.pool[1]
        c["device_s"][pool] = c["device_s"].get(pool, 0.0) + (r.end - r.start) * r.job.units
    per_class = {}
    for cls, c in sorted(classes.items()):
        total = sum(c["device_s"].values()) or 1.0
        per_class[cls] = {
            "jobs": c["jobs"],
            "jct_mean_s": c["jct_sum"] / c["jobs"],
            "device_time_share": {p: round(v / total, 4) for p, v in sorted(c["device_s"].items())},
        }
    summary["per_class"] = per_class
    return result, summary


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    devices = device_count(build_fleet(args.nodes, FLEET, nodes_per_rack=8, racks_per_block=8))
    runs = []
    for load in args.load_list:
        jobs = gavel_jobs(args.jobs, devices, load, args.seed)
        variants: dict[str, Any] = {}
        for name in VARIANTS:
            t0 = time.perf_counter()
            _, summary = run_variant(name, jobs, args.nodes)
            summary["run_s"] = time.perf_counter() - t0
            variants[name] = summary
        agn = variants["agnostic"]
        runs.append(
            {
                "load": load,
                "variants": variants,
                "jct_vs_agnostic": {
                    n: v["jct_mean_s"] / (agn["jct_mean_s"] or 1.0) for n, v in variants.items()
                },
                "p95_vs_agnostic": {
                    n: v["jct_p95_s"] / (agn["jct_p95_s"] or 1.0) for n, v in variants.items()
                },
                "makespan_vs_agnostic": {
                    n: v["makespan_s"] / (agn["makespan_s"] or 1.0) for n, v in variants.items()
                },
                "aware_beats_agnostic": (
                    variants["throughput-aware"]["jct_mean_s"] < variants["agnostic"]["jct_mean_s"]
                ),
            }
        )
    return {
        "benchmark": "hetero",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": machine_info(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "md", "load_list")},
        "fleet": {
            "nodes": args.nodes,
            "devices": devices,
            "models": [{"pool": f"{k.vendor} {k.model}", "share": k.share} for k in FLEET],
        },
        "classes": [
            {
                "name": c.name,
                "weight": c.weight,
                "devices": list(c.devices),
                "mean_hours": c.mean_hours,
                "speed": dict(c.speed),
                "nvidia_only": c.nvidia_only,
            }
            for c in GAVEL_CLASSES
        ],
        "runs": runs,
    }


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def markdown(r: dict[str, Any]) -> str:
    f = r["fleet"]
    models = ", ".join(f"{m['pool']} {m['share']:.0%}" for m in f["models"])
    lines = [
        "# Heterogeneous workload: throughput-aware vs model-agnostic placement",
        "",
        f"Run {r['finished_at']} with `{r['command']}` (seed {r['settings']['seed']}, deterministic).",
        "",
        f"Fleet: {f['nodes']} nodes × 8 devices ({f['devices']} devices): {models}. "
        f"{r['settings']['jobs']:,} jobs per load, policy {DEFAULT_POLICY}, "
        "the control plane's scheduling pass in the simulator.",
        "",
        "Variants: **agnostic** (no rates, no catalog speed: one tier, fragmentation alone); "
        "**fastest-first** (declared rates ranked raw: every job tries its fastest model first); "
        "**throughput-aware** (the product's behaviour: declared rates ranked by comparative "
        "advantage, each over the running mean rate on that model of the jobs arrived so far, "
        "so fast models go first to the jobs they speed up most; scheduler/placement/speedup.py).",
        "",
        "Job classes (speed relative to A100 80GB):",
        "",
        "| class | share | devices | mean duration on A100 | H100 | A100 | Ascend 910B | CUDA-only |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in r["classes"]:
        s = c["speed"]
        lines.append(
            f"| {c['name']} | {c['weight']:.0%} | {'/'.join(map(str, sorted(set(c['devices']))))} | "
            f"{c['mean_hours']:g} h | {s.get('H100 80GB', 0):g}× | {s.get('A100 80GB', 0):g}× | "
            f"{s.get('Ascend 910B', 0):g}× | {c['nvidia_only']:.0%} |"
        )
    for run in r["runs"]:
        lines += _run_markdown(run)
    return "\n".join(lines)


def _m(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _run_markdown(run: dict[str, Any]) -> list[str]:
    variants = run["variants"]
    lines = [
        "",
        f"## Offered load {run['load']:.0%} (at A100 speed)",
        "",
        "| variant | mean JCT | vs agnostic | p50 JCT | p95 JCT | vs agnostic | mean queueing | makespan "
        "| vs agnostic | allocation |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in variants.items():
        lines.append(
            f"| {name} | {_h(v['jct_mean_s'])} | {run['jct_vs_agnostic'][name]:.2f}× | "
            f"{_h(v['jct_p50_s'])} | {_h(v['jct_p95_s'])} | {run['p95_vs_agnostic'][name]:.2f}× | "
            f"{_m(v['queueing_delay_mean_s'])} | {_h(v['makespan_s'])} | "
            f"{run['makespan_vs_agnostic'][name]:.2f}× | {v['mean_allocation']:.0%} |"
        )
    lines += ["", "Per class: mean JCT, and the share of its device-time on each model.", ""]
    classes = sorted({c for v in variants.values() for c in v["per_class"]})
    lines += ["| class | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for cls in classes:
        cells = []
        for v in variants.values():
            c = v["per_class"].get(cls)
            if c is None:
                cells.append("—")
                continue
            where = ", ".join(f"{p.split()[0]} {s:.0%}" for p, s in c["device_time_share"].items())
            cells.append(f"{_h(c['jct_mean_s'])} ({where})")
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    agn = variants["agnostic"]
    lines.append("")
    for name, v in variants.items():
        if name == "agnostic":
            continue
        ratio = run["jct_vs_agnostic"][name]
        verdict = "beats" if ratio < 0.995 else "ties" if ratio <= 1.005 else "does NOT beat"
        lines.append(
            f"- {name} {verdict} agnostic on mean JCT ({_h(v['jct_mean_s'])} vs {_h(agn['jct_mean_s'])}, "
            f"{run['jct_vs_agnostic'][name]:.2f}×); p95 {_h(v['jct_p95_s'])} vs {_h(agn['jct_p95_s'])} "
            f"({run['p95_vs_agnostic'][name]:.2f}×); makespan {_h(v['makespan_s'])} vs "
            f"{_h(agn['makespan_s'])} ({run['makespan_vs_agnostic'][name]:.2f}×)."
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--nodes", type=int, default=64)
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--loads", default="1.0,1.6", help="offered loads at A100 speed, comma-separated")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=str(HERE / "results" / "hetero.json"), help="the JSON report")
    p.add_argument("--md", default=None, help="the Markdown report (default: beside --json, .md)")
    args = p.parse_args(argv)
    try:
        args.load_list = [float(x) for x in args.loads.split(",") if x.strip()]
    except ValueError:
        p.error(f"--loads: expected comma-separated numbers (got {args.loads!r})")
    if args.nodes < 1 or args.jobs < 1 or not args.load_list or min(args.load_list) <= 0:
        p.error("--nodes and --jobs must be ≥ 1, --loads positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.hetero", *(sys.argv[1:] if argv is None else argv)])
    result = run(args, command)
    out = Path(args.json)
    md = Path(args.md) if args.md else out.with_suffix(".md")
    write_reports(result, out, md, markdown)
    for one in result["runs"]:
        for name, v in one["variants"].items():
            vs = one["jct_vs_agnostic"][name]
            print(
                f"load {one['load']:.0%} {name:>16}: mean JCT {_h(v['jct_mean_s'])} ({vs:.2f}× agnostic), "
                f"p95 {_h(v['jct_p95_s'])}, makespan {_h(v['makespan_s'])}, "
                f"allocation {v['mean_allocation']:.0%}, {v['jobs_finished']} jobs in {v['run_s']:.1f} s"
            )
    print(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
