"""benchmarks/dashboard.py at a small size: the seeder writes a store the control plane loads,
the cache is reused (and brought forward in time), and the benchmark times every view of a real
server and writes a report the README reads. No timing is asserted."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path

from benchmarks import dashboard, update_readme
from benchmarks.dashboard_seed import SeedSpec, ensure_seeded
from scheduler.reliability.liveness import LivenessConfig
from scheduler.server.controlplane import ControlPlane
from scheduler.server.faults.recovery import signal_from_dict
from scheduler.store import Store

SMALL = SeedSpec(nodes=48, events=6_000, jobs=40)


def test_seeded_store_loads_in_the_control_plane_and_is_reused(tmp_path: Path) -> None:
    hour_ago = 1_900_000_000.0 - 3600
    first = ensure_seeded(tmp_path, SMALL, now=hour_ago)
    assert not first.reused
    assert first.rows["nodes"] == 48 and first.rows["devices"] == 48 * 8 and first.rows["jobs"] == 40
    assert first.rows["events"] == 6_000

    with closing(sqlite3.connect(tmp_path / "corral.db")) as conn:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
        newest = conn.execute("SELECT max(at) FROM events").fetchone()[0]
        ids_follow_time = conn.execute(
            "SELECT count(*) FROM events a JOIN events b ON b.id = a.id + 1 WHERE b.at < a.at"
        ).fetchone()[0]
        signals = [json.loads(r[0]) for r in conn.execute("SELECT signals FROM failures")]
    assert {"state", "worker", "health", "node"} <= set(kinds)
    assert ids_follow_time == 0
    assert newest <= hour_ago
    for row in signals:  # as recovery.py writes them, so the control plane reads them back
        assert row and all(signal_from_dict(s).reason for s in row)

    second = ensure_seeded(tmp_path, SMALL, now=hour_ago + 3600)
    assert second.reused and second.rows == first.rows
    assert second.shifted_s == 3600
    with closing(sqlite3.connect(tmp_path / "corral.db")) as conn:
        assert conn.execute("SELECT max(at) FROM events").fetchone()[0] == newest + 3600

    async def load() -> ControlPlane:
        cp = ControlPlane(Store.open(tmp_path), tmp_path, liveness=LivenessConfig(grace_s=86_400))
        cp.load()
        return cp

    cp = asyncio.run(load())
    assert len(cp.nodes) == 48 and len(cp.jobs) == 40
    assert cp.lemons  # the quarantined nodes' records came back
    cp.store.close()


def test_dashboard_benchmark_small_run(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    args = ["--nodes", "32", "--events", "3000", "--jobs", "20", "--requests", "2", "--warmup", "1"]
    code = dashboard.main([*args, "--data-dir", str(tmp_path / "seed"), "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0, report["notes"]

    rows = {r["path"]: r for r in report["rows"]}
    assert {"/", "/failures", "/metrics", "/reliability", "/nodes", "/queues", "/power", "/jobs"} <= set(rows)
    for row in report["rows"]:
        assert row["statuses"] == {"200": 2}, row
        assert row["requests"] == 2 and row["bytes"] > 0
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"], row
    assert [r["path"] for r in report["rows"] if r["headline"]] == ["/", "/failures", "/metrics"]
    assert set(report["goals"]) >= {"landing_met", "failures_met", "metrics_met"}
    assert report["store"]["rows"]["events"] == 3000 and report["store"]["db_bytes"] > 0
    assert report["server"]["ready_s"] > 0
    assert report["command"].startswith("python -m benchmarks.dashboard")

    md = out.with_suffix(".md").read_text()
    assert "| **fleet health** | `/` |" in md and "3,000 events" in md
    section = update_readme.dashboard_section(report)
    assert "**failure feed** (`/failures`)" in section and report["command"] in section

    again = tmp_path / "again.json"
    code = dashboard.main([*args, "--no-pending", "--data-dir", str(tmp_path / "seed"), "--json", str(again)])
    assert code == 0
    assert json.loads(again.read_text())["store"]["reused"]
