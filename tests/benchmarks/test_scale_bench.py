"""benchmarks/scale.py on a tiny fleet: the report's structure and sanity, never its timings."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import scale


def test_scale_smoke(tmp_path: Path, capsys: object) -> None:
    out = tmp_path / "scale.json"
    assert scale.main(["--nodes", "300", "--fill", "0.3", "--repeats", "4", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    md = (tmp_path / "scale.md").read_text()
    assert r["benchmark"] == "scale" and r["fleet"]["nodes"] == 300 and r["fleet"]["devices"] == 2400
    s = r["single"]
    assert s["placed"] >= 0.3 * 2400 - 1 and abs(s["reached_fill"] - 0.3) < 0.01
    assert s["decisions_per_s"] > 0 and 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert len(s["per_tenth_decisions_per_s"]) == 10
    assert [g["devices"] for g in r["gangs"]] == [8, 64, 512, 4096]
    assert [g["topology"] for g in r["gangs"]] == [
        "node (required)", "rack (required)", "block (required)", "block (required)",
    ]  # fmt: skip
    small = r["gangs"][0]
    assert small["placed"] == small["repeats"] == 4  # an 8-device node is free on a 30 % fleet
    for g in r["gangs"]:
        assert 0 <= g["p50_ms"] <= g["p99_ms"] and g["placed"] + sum(g["unplaced_reasons"].values()) == 4
    assert r["peak_rss_mib"] > 0 and r["fleet"]["state_bytes"] > 0
    assert set(r["goals"]) >= {"single_met", "gang_met"} and "issue's figure" in r["anchor"]
    assert "decisions/s" in md and "| 512 |" in md and "Goals" in md
