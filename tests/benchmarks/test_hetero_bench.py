"""benchmarks/hetero.py on a tiny fleet: structure, determinism and sanity of the report."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import hetero


def test_hetero_smoke(tmp_path: Path) -> None:
    args = ["--nodes", "12", "--jobs", "150", "--seed", "5", "--loads", "0.8,1.5"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert hetero.main([*args, "--json", str(a)]) == 0
    assert hetero.main([*args, "--json", str(b)]) == 0
    report = json.loads(a.read_text())
    assert [run["load"] for run in report["runs"]] == [0.8, 1.5]
    r, again = report["runs"][1], json.loads(b.read_text())["runs"][1]
    assert set(r["variants"]) == {"agnostic", "fastest-first", "throughput-aware"}
    for name, v in r["variants"].items():
        assert v["jobs_finished"] == 150 and v["jobs_unplaced"] == 0, name
        assert 0 < v["jct_p50_s"] <= v["jct_p95_s"] and v["makespan_s"] > 0
        assert 0 < v["mean_allocation"] <= 1
        # seeded and the simulator is deterministic: the same figures every run
        assert v["jct_mean_s"] == again["variants"][name]["jct_mean_s"]
        assert v["makespan_s"] == again["variants"][name]["makespan_s"]
        for cls in v["per_class"].values():
            assert abs(sum(cls["device_time_share"].values()) - 1) < 1e-3
    fastest = r["variants"]["fastest-first"]["per_class"]
    aware = r["variants"]["throughput-aware"]["per_class"]
    # ranked raw, transformers (2× on H100) go mostly to H100; agnostic does not know to
    assert fastest["transformer"]["device_time_share"].get("H100 80GB", 0) > 0.5
    # ranked by comparative advantage, CNNs (1.2×) leave more of the H100s to others
    share = "device_time_share"
    assert aware["cnn"][share].get("H100 80GB", 0) < fastest["cnn"][share].get("H100 80GB", 0)
    assert r["jct_vs_agnostic"]["agnostic"] == 1.0
    assert r["p95_vs_agnostic"]["agnostic"] == r["makespan_vs_agnostic"]["agnostic"] == 1.0
    md = (tmp_path / "a.md").read_text()
    assert "Offered load 80%" in md and "Offered load 150%" in md
    assert "| throughput-aware |" in md and "| fastest-first |" in md and "mean JCT" in md
    assert "comparative" not in md.split("Job classes")[1]  # the oracle variant is gone
