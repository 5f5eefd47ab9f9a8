"""benchmarks/recovery.py on a small live cluster: every injected fault is recovered, and the
report has the shape the README and the ETTR simulator read. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import recovery, update_readme

KINDS = ("xid:79", "crash", "agent-kill")


def test_recovery_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "recovery.json"
    code = recovery.main(["--quick", "--faults", "3", "--kinds", ",".join(KINDS), "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0, report["notes"]

    for key in (
        "inject_to_running_p50_s", "inject_to_running_p99_s", "detect_p50_s", "detect_p99_s",
        "control_plane_p50_s", "control_plane_p99_s", "start_p50_s", "start_p99_s",
    ):  # fmt: skip
        assert isinstance(report[key], float) and report[key] >= 0, key
    assert report["heartbeat_timeout_s"] > 0
    assert set(report["by_kind"]) == set(KINDS)
    assert set(report["goals"]) >= {"control_plane_p99_met", "agent_detect_met", "all_recovered"}
    assert report["command"].startswith("python -m benchmarks.recovery")

    faults = report["faults"]
    assert [f["kind"] for f in faults] == list(KINDS)
    assert report["goals"]["all_recovered"] and report["recovered"] == report["injected"] == 3
    for f in faults:
        assert f["recovered"], f
        assert f["attempt_after"] > f["attempt_before"], f
        # The control plane's events, in order: observed, decided, placed, running.
        assert f["t_inject"] <= f["t_observed"] <= f["t_decided"] <= f["t_placed"] <= f["t_running"], f
        assert f["decided_state"] != "RUNNING"
        assert f["job_id"] in report["jobs"]
    assert len(report["dead_agent_detect_s"]) == 1

    md = out.with_suffix(".md").read_text()
    assert "| xid:79 | 1/1 |" in md and "| **all** | 3/3 |" in md
    section = update_readme.recovery_section(report)
    assert "| agent-kill | 1/1 |" in section and report["command"] in section
