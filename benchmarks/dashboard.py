"""Dashboard render and /metrics scrape times against a fleet-sized store, over real HTTP.

What runs: benchmarks/dashboard_seed.py writes (or reuses, from --data-dir) a store of --nodes
nodes × 8 devices, their health, nodes × 0.3 jobs with attempts, placements, checkpoints and
failures, and --events events over 30 days. A copy of it goes to <data-dir>/run, where a real
`corral server --http-listen 127.0.0.1:0` starts on it (the HTTP address read from
<data-dir>/run/http.addr). Then --requests rounds, after --warmup untimed ones, each GET every
view once, in turn, over one keep-alive connection on loopback (http.client): the time is from
sending the request to the last byte of the body. Each row reports p50 / p95 / max and the
response size; the goals are the issue's: `/` and `/failures` p95 ≤ 300 ms, `/metrics` ≤ 1 s
(its p95 here; Prometheus scrapes it every 15-60 s).

No agent connects: every node shows disconnected, the worst case for the node tables and grids
(nothing to collapse as "all healthy and connected"). `--node-grace 86400` keeps the control
plane from declaring the idle nodes lost (and failing every running gang) during the run. Pending
jobs stay pending, so the control plane's scheduling passes run on the same event loop as the
dashboard, as they do in production; `--no-pending` cancels them in the copy to time the pages
alone.

    python -m benchmarks.dashboard                      # 10,000 nodes, 1M events: seeds ~1 min once
    python -m benchmarks.dashboard --nodes 64 --events 20000 --requests 5 --json /tmp/d.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import math
import os
import shlex
import shutil
import sqlite3
import sys
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.dashboard_seed import (
    SeedError,
    SeedResult,
    SeedSpec,
    add_spec_arguments,
    ensure_seeded,
    spec_from,
    write_queues,
)
from benchmarks.live_cluster import CORRAL, ClusterError, Proc, wait_for
from benchmarks.reporting import machine_info, write_reports

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = Path("/tmp/corral-dashboard-seed")
PAGE_GOAL_MS = 300.0
SCRAPE_GOAL_MS = 1000.0
NODE_GRACE_S = 86_400.0
REQUEST_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Target:
    label: str
    path: str
    goal_ms: float | None = None  # the goals; other pages are held to the page bar as a guide
    headline: bool = False


@dataclass
class Timing:
    target: Target
    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        ms = [s * 1000 for s in self.seconds]
        goal = self.target.goal_ms
        p95 = round(percentile(ms, 95), 1) if ms else None
        return {
            "label": self.target.label,
            "path": self.target.path,
            "headline": self.target.headline,
            "goal_ms": goal,
            "requests": len(ms),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_ms": round(percentile(ms, 50), 1) if ms else None,
            "p95_ms": p95,
            "max_ms": round(max(ms), 1) if ms else None,
            "mean_ms": round(sum(ms) / len(ms), 1) if ms else None,
            "bytes": sorted(self.sizes)[len(self.sizes) // 2] if self.sizes else 0,
            "met": None if goal is None or p95 is None else p95 <= goal and set(self.statuses) == {200},
        }


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    s = sorted(values)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def targets(db: Path) -> list[Target]:
    """Every view, the three the issue sets goals for first; detail pages for the node with the
    longest health history and the job with the largest gang."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        node = (
            conn.execute(
                "SELECT node_name FROM health WHERE idx = -1 ORDER BY state = 'QUARANTINED' DESC, "
                "length(record) DESC LIMIT 1"
            ).fetchone()
            or conn.execute("SELECT name FROM nodes ORDER BY name LIMIT 1").fetchone()
        )
        job = (
            conn.execute(
                "SELECT job_id FROM placements GROUP BY job_id ORDER BY count(*) DESC LIMIT 1"
            ).fetchone()
            or conn.execute("SELECT id FROM jobs LIMIT 1").fetchone()
        )
    quoted_node = urllib.parse.quote(str(node[0])) if node else "none"
    quoted_job = urllib.parse.quote(str(job[0])) if job else "none"
    return [
        Target("fleet health", "/", PAGE_GOAL_MS, headline=True),
        Target("failure feed", "/failures", PAGE_GOAL_MS, headline=True),
        Target("/metrics scrape", "/metrics", SCRAPE_GOAL_MS, headline=True),
        Target("fleet health, polled part", "/fleet/body"),
        Target("failure feed, polled part", "/failures/feed"),
        Target("failure feed, cause xid:79", "/failures?cause=xid%3A79"),
        Target("reliability", "/reliability"),
        Target("nodes", "/nodes"),
        Target("node detail (most health history)", f"/nodes/{quoted_node}"),
        Target("queues", "/queues"),
        Target("power", "/power"),
        Target("jobs", "/jobs"),
        Target("job detail (largest gang)", f"/jobs/{quoted_job}"),
        Target("control plane", "/controlplane"),
    ]


# --------------------------------------------------------------------------- the server


def prepare_run_dir(seed: SeedResult, *, no_pending: bool) -> tuple[Path, list[str]]:
    """A fresh copy of the seeded store to run the server on (it writes to its store), with the
    nodes last heard from now and the seeded queues; notes on what was changed."""
    run_dir = seed.data_dir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    shutil.copyfile(seed.db_path, run_dir / "corral.db")
    notes = []
    with contextlib.closing(sqlite3.connect(run_dir / "corral.db")) as conn:
        conn.execute("UPDATE nodes SET last_seen = ?", (time.time(),))
        if no_pending:
            cancelled = conn.execute(
                "UPDATE jobs SET state = 'CANCELLED', reason = 'cancelled for the benchmark' "
                "WHERE state = 'PENDING'"
            ).rowcount
            notes.append(
                f"--no-pending: {cancelled} pending jobs cancelled in the copy; no scheduling passes"
            )
        conn.commit()
    write_queues(run_dir / "queues.yaml", seed.spec.nodes)
    return run_dir, notes


@dataclass
class Server:
    proc: Proc
    url: str
    ready_s: float  # spawn → HTTP address written: imports, store, cp.load, gRPC and HTTP up


def start_server(run_dir: Path, extra: list[str]) -> Server:
    args = [
        CORRAL, "server",
        "--listen", "127.0.0.1:0",
        "--http-listen", "127.0.0.1:0",
        "--data-dir", str(run_dir),
        "--queues", str(run_dir / "queues.yaml"),
        "--node-grace", f"{NODE_GRACE_S:g}",
        *extra,
    ]  # fmt: skip
    addr_file = run_dir / "http.addr"
    log = run_dir.parent / "server.log"  # beside the run copy, which is removed after the run
    log.unlink(missing_ok=True)
    began = time.monotonic()
    proc = Proc(args, log)

    def url() -> str:
        if not proc.alive():
            raise ClusterError(f"corral server exited:\n{proc.tail()}")
        return addr_file.read_text().strip() if addr_file.exists() else ""

    try:
        address = wait_for(url, STARTUP_TIMEOUT_S, "the server's http.addr", interval=0.05)
    except ClusterError:
        proc.stop()
        raise
    return Server(proc, address.rstrip("/"), time.monotonic() - began)


# --------------------------------------------------------------------------- the client


class Client:
    """One keep-alive HTTP/1.1 connection, reopened if the server closes it."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)

    def get(self, path: str) -> tuple[int, bytes, float]:
        """Status, body, and seconds from sending the request to the body's last byte."""
        for retry in (False, True):
            began = time.perf_counter()
            try:
                self.conn.request("GET", path, headers={"Accept": "text/html"})
                resp = self.conn.getresponse()
                body = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
                if retry:
                    raise
                continue
            elapsed = time.perf_counter() - began
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
            return resp.status, body, elapsed
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def measure(client: Client, plan: list[Target], rounds: int, warmup: int) -> list[Timing]:
    """Round-robin: every round GETs every target once, so background work on the server (the
    scheduling loop, the GC) falls on all of them alike."""
    timings = [Timing(t) for t in plan]
    for r in range(warmup + rounds):
        for timing in timings:
            status, body, seconds = client.get(timing.target.path)
            if r >= warmup:
                timing.seconds.append(seconds)
                timing.sizes.append(len(body))
                timing.statuses[status] += 1
        if r >= warmup and (r - warmup + 1) % max(1, rounds // 5) == 0:
            print(f"  round {r - warmup + 1}/{rounds}", flush=True)
    return timings


def scheduling_passes(client: Client) -> dict[str, float]:
    """The control plane's scheduling-pass histogram from /metrics: count and total seconds."""
    status, body, _ = client.get("/metrics")
    if status != 200:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "corral_scheduler_pass_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    out["count"] = out.get("count", 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    out["seconds"] = out.get("seconds", 0.0) + sample.value
    return out


# --------------------------------------------------------------------------- the report


def summary(
    args: argparse.Namespace,
    command: str,
    seed: SeedResult,
    server: dict[str, Any],
    timings: list[Timing],
    notes: list[str],
) -> dict[str, Any]:
    rows = [t.summary() for t in timings]
    by_path = {r["path"]: r for r in rows}
    goals = {
        "page_goal_ms": PAGE_GOAL_MS,
        "scrape_goal_ms": SCRAPE_GOAL_MS,
        "landing_p95_ms": by_path["/"]["p95_ms"],
        "landing_met": by_path["/"]["met"],
        "failures_p95_ms": by_path["/failures"]["p95_ms"],
        "failures_met": by_path["/failures"]["met"],
        "metrics_p95_ms": by_path["/metrics"]["p95_ms"],
        "metrics_met": by_path["/metrics"]["met"],
        "pages_within_page_goal": sum(
            1
            for r in rows
            if r["path"] != "/metrics" and r["p95_ms"] is not None and r["p95_ms"] <= PAGE_GOAL_MS
        ),
        "pages": sum(1 for r in rows if r["path"] != "/metrics"),
    }
    store = seed.describe()
    return {
        "benchmark": "dashboard",
        "command": command,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # Other processes on the machine share its cores with the server and this client.
        "machine": machine_info(loadavg_1m_at_end=round(os.getloadavg()[0], 2)),
        "settings": {
            "requests": args.requests,
            "warmup": args.warmup,
            "no_pending": args.no_pending,
            "server_flags": args.server_arg,
            "node_grace_s": NODE_GRACE_S,
            "agents_connected": 0,
            "client": "http.client, one keep-alive connection, sequential, round-robin over the views",
        },
        "store": {**store, "db_mib": round(store["db_bytes"] / 2**20, 1)},
        "server": server,
        "rows": rows,
        "goals": goals,
        "notes": notes,
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f} ms" if x >= 10 else f"{x:.1f} ms"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} B"


def _word(v: bool | None) -> str:
    return "not measured" if v is None else "met" if v else "NOT met"


def table_rows(r: dict[str, Any]) -> list[str]:
    rows = [
        "| view | path | p50 | p95 | max | size | goal | statuses |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for row in r["rows"]:
        goal = f"≤ {_ms(row['goal_ms'])}: {_word(row['met'])}" if row["goal_ms"] else ""
        label = f"**{row['label']}**" if row["headline"] else row["label"]
        statuses = ", ".join(f"{k} × {v}" for k, v in row["statuses"].items())
        rows.append(
            f"| {label} | `{row['path']}` | {_ms(row['p50_ms'])} | {_ms(row['p95_ms'])} "
            f"| {_ms(row['max_ms'])} | {_size(row['bytes'])} | {goal} | {statuses} |"
        )
    return rows


def verdicts(r: dict[str, Any]) -> str:
    g = r["goals"]
    page = f"{g['page_goal_ms']:g} ms"
    return (
        f"Landing page p95 ≤ {page}: {_word(g['landing_met'])} ({_ms(g['landing_p95_ms'])}). "
        f"Failure feed p95 ≤ {page}: {_word(g['failures_met'])} ({_ms(g['failures_p95_ms'])}). "
        f"/metrics scrape p95 ≤ {g['scrape_goal_ms']:g} ms: {_word(g['metrics_met'])} "
        f"({_ms(g['metrics_p95_ms'])}). Pages within {page} at p95: "
        f"{g['pages_within_page_goal']} of {g['pages']}."
    )


def store_line(r: dict[str, Any]) -> str:
    s, rows = r["store"], r["store"]["rows"]
    return (
        f"Store: {rows['nodes']:,} nodes × 8 devices ({rows['devices']:,}), {rows['jobs']:,} jobs, "
        f"{rows['attempts']:,} attempts, {rows['placements']:,} placements, "
        f"{rows['checkpoints']:,} checkpoints, {rows['failures']:,} failures, {rows['health']:,} health "
        f"records, {rows['events']:,} events over {s['spec']['days']:g} days; "
        f"SQLite file {s['db_mib']:,.0f} MiB "
        + ("(reused from the cache)." if s["reused"] else f"(seeded in {s['seed_s']:.0f} s).")
    )


def server_line(r: dict[str, Any]) -> str:
    sv = r["server"]
    passes = sv.get("scheduling_passes") or {}
    busy = (
        f" Scheduling passes during the timed rounds: {passes['count']:.0f}, {passes['seconds']:.1f} s "
        f"in all ({passes['busy_share']:.0%} of the wall time, on the loop that serves the pages)."
        if passes.get("count")
        else ""
    )
    return (
        f"Server: spawn → dashboard listening in {sv['ready_s']:.1f} s (imports, store, loading every node "
        f"and job, gRPC and HTTP up); {sv['rss_mib']:,.0f} MiB resident after the run; "
        f"{sv['cpu_share']:.0%} of one core busy during the timed rounds.{busy}"
    )


def markdown(r: dict[str, Any]) -> str:
    m, st = r["machine"], r["settings"]
    lines = [
        "# Dashboard render and /metrics scrape times (fleet-sized store)",
        "",
        f"Run {r['finished_at']} with `{r['command']}` on {m['nproc']} × {m['cpu_model']}, "
        f"Python {m['python']} (load average {m['loadavg_1m_at_end']:g} at the end: other processes share "
        "these cores).",
        "",
        store_line(r),
        "",
        f"{st['requests']} timed rounds after {st['warmup']} warm-up rounds; each round GETs every view once "
        f"({st['client']}); a request's time runs from sending it to the last byte of the body. No agent is "
        "connected: every node shows disconnected, the worst case for the node tables and grids.",
        "",
        *table_rows(r),
        "",
        verdicts(r),
        "",
        server_line(r),
    ]
    if r["notes"]:
        lines += ["", "Notes: " + "; ".join(r["notes"]) + "."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_spec_arguments(p)
    p.add_argument("--requests", type=int, default=50, help="timed rounds over every view (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default 5)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"where the seeded store is kept and reused (default {DEFAULT_DATA_DIR})",
    )
    p.add_argument(
        "--json", default=str(HERE / "results" / "dashboard.json"), help="report path (.md beside)"
    )
    p.add_argument("--no-pending", action="store_true", help="cancel pending jobs in the copy: no scheduling")
    p.add_argument("--server-arg", action="append", default=[], help="extra `corral server` argument")
    args = p.parse_args(argv)
    if args.requests < 1 or args.warmup < 0:
        p.error(f"--requests must be ≥ 1 and --warmup ≥ 0 (got {args.requests} and {args.warmup})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.dashboard", *(sys.argv[1:] if argv is None else argv)])
    spec: SeedSpec = spec_from(args)
    print(f"seeding (or reusing) {args.data_dir} …", flush=True)
    try:
        seed = ensure_seeded(args.data_dir, spec)
    except SeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        store_line({"store": {**seed.describe(), "db_mib": seed.db_path.stat().st_size / 2**20}}), flush=True
    )
    run_dir, notes = prepare_run_dir(seed, no_pending=args.no_pending)
    notes = [*seed.notes, *notes]
    plan = targets(run_dir / "corral.db")
    try:
        server = start_server(run_dir, args.server_arg)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"server ready in {server.ready_s:.1f} s at {server.url}; {args.requests} rounds × {len(plan)} views",
        flush=True,
    )
    client = Client(server.url)
    try:
        ps = psutil.Process(server.proc.pid)
        before_passes = scheduling_passes(client)
        cpu_before, wall_before = ps.cpu_times(), time.monotonic()
        timings = measure(client, plan, args.requests, args.warmup)
        cpu_after, wall = ps.cpu_times(), time.monotonic() - wall_before
        after_passes = scheduling_passes(client)
        rss_mib = ps.memory_info().rss / 2**20
    finally:
        client.close()
        server.proc.stop(grace_s=10)
        shutil.rmtree(run_dir, ignore_errors=True)  # a copy of the whole store: hundreds of MiB
    passes: dict[str, float] = {}
    if after_passes:
        passes = {k: after_passes.get(k, 0.0) - before_passes.get(k, 0.0) for k in ("count", "seconds")}
        passes["busy_share"] = passes["seconds"] / wall if wall else 0.0
    busy = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    server_info = {
        "ready_s": round(server.ready_s, 2),
        "rss_mib": round(rss_mib, 1),
        "cpu_share": round(busy / wall, 3) if wall else 0.0,
        "measure_wall_s": round(wall, 1),
        "scheduling_passes": {k: round(v, 3) for k, v in passes.items()},
    }
    result = summary(args, command, seed, server_info, timings, notes)
    json_path = Path(args.json)
    write_reports(result, json_path, json_path.with_suffix(".md"), markdown)
    print()
    print("\n".join(table_rows(result)))
    print()
    print(verdicts(result))
    print(server_line(result))
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"wrote {json_path} and {json_path.with_suffix('.md')}")
    bad = [r["path"] for r in result["rows"] if set(r["statuses"]) != {"200"}]
    if bad:
        print(f"error: non-200 answers from {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
