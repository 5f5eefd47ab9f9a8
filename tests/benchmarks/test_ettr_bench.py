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
