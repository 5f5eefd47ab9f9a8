"""Simulate Alibaba's openb trace with its own arrival and deletion times: how long the
simulator takes on a production-sized trace, and what the scheduling pass does with it.

    python -m benchmarks.sim_openb [--pods POD_CSV] [--nodes NODE_CSV] [--policy NAME]

Each task arrives at its `creation_time` and runs until its `deletion_time` (as the trace
recorded it, on whatever model it ran; speeds are not rescaled, since the trace's models G1-G3
are undisclosed). Every pass is the control plane's `schedule_pass` in the default queue.
Anchor: the issue asks for an openb-sized trace in seconds.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.openb import TRACE_DIR
from benchmarks.reporting import write_reports
from scheduler.placement.cluster import ClusterState
from scheduler.placement.policies import DEFAULT_POLICY, POLICIES
from scheduler.placement.request import PlacementRequest
from scheduler.sim.engine import SimJob, simulate
from scheduler.sim.openb import TraceError, load_nodes, load_tasks

RESULTS = Path(__file__).resolve().parent / "results"


def markdown(r: dict[str, Any]) -> str:
    s = r["summary"]
    return "\n".join(
        [
            "# Simulator on the openb trace",
            "",
            f"Command: `{r['command']}` ({r['finished_at']}, Python {r['python']}).",
            "",
            f"{r['tasks']:,} tasks with their own arrival and deletion times on {r['nodes']:,} nodes, "
            f"policy `{r['policy']}`, the control plane's scheduling pass.",
            "",
            "| wall time | passes | placements/s of wall time | mean queueing delay | p95 "
            "| mean allocation |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| **{r['wall_s']:.1f} s** | {s['passes']:,} | {s['placements_per_wall_s']:,.0f} "
            f"| {s['queueing_delay_mean_s']:.0f} s | {s['queueing_delay_p95_s']:.0f} s "
            f"| {s['mean_allocation']:.2%} |",
            "",
            f"Never placed: {s['jobs_unplaced']:,}. The run spans {s['makespan_s'] / 86400:,.0f} days of "
            "mostly short tasks, hence the low mean allocation.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sim_openb", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=Path, default=TRACE_DIR / "openb_node_list_gpu_node.csv")
    p.add_argument("--pods", type=Path, default=TRACE_DIR / "openb_pod_list_default.csv")
    p.add_argument("--policy", default=DEFAULT_POLICY, choices=POLICIES)
    p.add_argument("--report-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    try:
        nodes, tasks = load_nodes(args.nodes), load_tasks(args.pods)
    except TraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    timed = [t for t in tasks if t.creation_time is not None and t.deletion_time is not None]
    if not timed:
        print(f"error: {args.pods}: no task has both creation_time and deletion_time", file=sys.stderr)
        return 2
    jobs = [
        SimJob.of_duration(
            t.name,
            float(t.creation_time or 0),
            PlacementRequest(t.name, shape=t.shape, models=t.gpu_spec),
            max(float((t.deletion_time or 0) - (t.creation_time or 0)), 1.0),
        )
        for t in timed
    ]
    started = time.perf_counter()
    # Durations are as recorded on whatever model each task ran: no speed scaling either way.
    result = simulate(
        ClusterState(nodes), jobs, args.policy, speed_of=lambda _: None, true_speed=lambda _: 1.0
    )
    wall = time.perf_counter() - started
    report = {
        "command": " ".join(["python -m benchmarks.sim_openb", *(sys.argv[1:] if argv is None else argv)]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "tasks": len(jobs),
        "nodes": len(nodes),
        "policy": args.policy,
        "wall_s": round(wall, 2),
        "summary": result.summary(timeline_points=20),
    }
    stem = args.report_dir / f"sim_openb_{args.pods.stem.removeprefix('openb_pod_list_')}"
    write_reports(report, stem.with_suffix(".json"), stem.with_suffix(".md"), markdown)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
