"""benchmarks/ettr.py on a small job for a few days: the mapping's shape and sanity."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import ettr

# 128 devices failing 100× as often as the fleet-wide rate (a job MTBF of 3.9 h), and a prior
# 10× too optimistic, so that auto has something to learn within the few simulated days
ARGS = [
    *("--days", "6", "--nodes", "16", "--rate", "2e-3", "--prior-device-hours", "5000"),
    *("--seeds", "3", "--costs", "1,5,60"),
]


def test_ettr_mapping(tmp_path: Path) -> None:
    out, report = tmp_path / "m.json", tmp_path / "full.json"
    assert ettr.main([*ARGS, "--json", str(out), "--report", str(report)]) == 0
    mapping = json.loads(out.read_text())
    assert set(mapping) == {"1", "5", "60"}
    for c, row in mapping.items():
        assert set(row) == {"fixed_30min", "bound", "auto", "auto_proactive"}, c
        for name, value in row.items():
            assert 0 < value <= 1, (c, name)
        assert row["auto"] >= row["fixed_30min"] - 0.01, c
        assert abs(row["auto"] - row["bound"]) < 0.03, c
    assert mapping["1"]["auto"] > mapping["60"]["auto"]
    full = json.loads(report.read_text())
    assert full["mapping"] == mapping
    assert len(full["seeds"]) == 3 and full["failures_per_seed"]
    for row in full["by_cost"].values():
        for d in row["detail"].values():
            assert abs(sum(d["share_of_wall"].values()) - 1) < 1e-9
    md = report.with_suffix(".md").read_text()
    assert "| 60 s |" in md and "auto: every" in md


def test_ettr_deterministic_and_warnings_flag(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{x}.json" for x in "abc")
    quick = [*ARGS, "--quick", "--report", str(tmp_path / "r.json")]
    assert ettr.main([*quick, "--json", str(a)]) == 0
    assert ettr.main([*quick, "--json", str(b)]) == 0
    assert ettr.main([*quick, "--warn-fraction", "0", "--json", str(c)]) == 0
    first, again, none = (json.loads(p.read_text()) for p in (a, b, c))
    assert first == again
    for cost in first:
        # with no warnings, auto + warnings is auto (same failures, nothing to act on)
        assert none[cost]["auto_proactive"] == none[cost]["auto"]
        assert none[cost]["auto"] == first[cost]["auto"]


TINY = [
    *("--days", "2", "--nodes", "8", "--devices-per-node", "4", "--rate", "5e-3"),
    *("--seeds", "2", "--quick", "--nodes-per-rack", "2", "--nodes-per-block", "4"),
]


def test_quick_mode_shape_and_shared_recovery_code(tmp_path: Path) -> None:
    out, report = tmp_path / "m.json", tmp_path / "r.json"
    missing = tmp_path / "no-recovery.json"
    argv = [
        *TINY,
        "--spares",
        "2",
        "--live-results",
        str(missing),
        "--json",
        str(out),
        "--report",
        str(report),
    ]
    assert ettr.main(argv) == 0
    mapping = json.loads(out.read_text())
    assert {c: set(row) for c, row in mapping.items()} == {
        c: {"fixed_30min", "bound", "auto", "auto_proactive"} for c in ("1", "5", "60")
    }
    full = json.loads(report.read_text())
    rec = full["recovery"]
    # every failure was judged by decide_recovery, and hardware ones swapped a node for a spare
    assert sum(rec["blame_mean"].values()) == rec["failures_mean"] > 0
    assert rec["swaps_mean"] == rec["blame_mean"].get("hardware", 0) == rec["hardware_restarts_mean"]
    assert sum(rec["replacement_distance_mean"].values()) == rec["swaps_mean"]
    assert (
        rec["health_transitions_mean"].get("HEALTHY->UNHEALTHY", 0)
        + rec["health_transitions_mean"].get("SUSPECT->UNHEALTHY", 0)
        >= rec["swaps_mean"]
    )
    assert rec["runs_ended_failed"] == 0
    assert (
        full["latency_source"]["detect_s"].startswith("default")
        and "not found" in full["latency_source"]["detect_s"]
    )
    assert full["settings"]["detect_s"] == ettr.DEFAULT_DETECT_S
    assert full["settings"]["hang_detect_s"] == 600


def test_latencies_from_the_live_benchmark(tmp_path: Path) -> None:
    live = tmp_path / "recovery.json"
    live.write_text(json.dumps({"detect_p50_s": 0.4, "detect_p99_s": 1.5, "control_plane_p99_s": 0.75}))
    report = tmp_path / "r.json"
    argv = [*TINY, "--live-results", str(live), "--restart-s", "30", "--report", str(report)]
    assert ettr.main(argv) == 0
    full = json.loads(report.read_text())
    assert (full["settings"]["detect_s"], full["settings"]["control_plane_s"]) == (1.5, 0.75)
    assert "detect_p99_s" in full["latency_source"]["detect_s"]
    # R in the bound: detection + first backoff (1 s) + re-placement + restart, plus hangs' longer window
    assert full["job"]["mean_downtime_per_failure_s"] > 1.5 + 1 + 0.75 + 30


def test_warnings_are_suspect_cues(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    argv = [*TINY, "--warn-fraction", "1", "--spares", "0", "--report", str(report)]
    assert ettr.main(argv) == 0
    full = json.loads(report.read_text())
    rec = full["recovery"]
    assert rec["suspect_cues_mean"] > 0
    assert rec["health_transitions_mean"]["HEALTHY->SUSPECT"] == rec["suspect_cues_mean"]
    # no spares at all: every swapped node waits for a repaired one
    detail = full["by_cost"]["1"]["detail"]["auto_proactive"]
    assert detail["proactive_checkpoints_mean"] > 0
    if rec["swaps_mean"]:
        assert detail["spare_wait_s_mean"] > 0
