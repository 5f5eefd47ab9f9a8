"""benchmarks/power.py in its quick mode: the mapping's shape and the strategies' order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import power
from benchmarks.update_readme import power_section
from scheduler.power.controller import ControllerConfig


def test_quick_mapping_shape_and_order(tmp_path: Path) -> None:
    out, report = tmp_path / "m.json", tmp_path / "full.json"
    assert power.main(["--quick", "--json", str(out), "--report", str(report)]) == 0
    mapping = json.loads(out.read_text())
    assert set(mapping) == {"80", "70"}
    for level, rows in mapping.items():
        assert set(rows) == {"none", "uniform", "corral", "optimal"}, level
        for name, row in rows.items():
            assert set(row) == {
                "throughput_kept",
                "weighted_throughput_kept",
                "seconds_over_budget",
                "energy_kwh",
            }
            assert 0 < row["throughput_kept"] <= 1 + 1e-9, (level, name)
            assert row["energy_kwh"] > 0
        assert rows["none"]["throughput_kept"] == 1.0
        assert rows["none"]["seconds_over_budget"] > 0
        assert rows["optimal"]["seconds_over_budget"] == 0
        # nothing beats the optimum on the objective it maximises
        for name in ("uniform", "corral"):
            assert (
                rows[name]["weighted_throughput_kept"] <= rows["optimal"]["weighted_throughput_kept"] + 1e-9
            )
        assert rows["corral"]["weighted_throughput_kept"] > rows["uniform"]["weighted_throughput_kept"]
        assert rows["corral"]["energy_kwh"] < rows["none"]["energy_kwh"]
    assert mapping["70"]["corral"]["energy_kwh"] < mapping["80"]["corral"]["energy_kwh"]
    full = json.loads(report.read_text())
    assert full["mapping"] == mapping
    assert full["settings"]["control_period_s"] == ControllerConfig().period_s
    assert set(full["goals"]) >= {
        "within_1pct_of_optimal",
        "at_most_2s_over_after_any_change",
        "above_uniform",
    }
    assert full["levels"]["70"]["corral"]["longest_over_budget_s"] <= 2.0
    assert "| 70% | corral |" in report.with_suffix(".md").read_text()
    assert "| 70% | **corral** |" in power_section(full)


def test_json_may_not_overwrite_the_full_report(tmp_path: Path) -> None:
    report = tmp_path / "full.json"
    with pytest.raises(SystemExit):
        power.main(["--quick", "--json", str(report), "--report", str(report)])


def test_period_must_divide_a_second(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        power.main(["--quick", "--period", "0.3", "--report", str(tmp_path / "full.json")])


def test_the_step_size_changes_only_the_controller() -> None:
    # uniform caps change only with a budget and the optimum once a second with no lag, so
    # both are charged the same at any step size: the sub-steps add no cost of their own
    args = power.parse_args(["--quick"])
    site = power.build_site(args)
    for strategy in ("uniform", "optimal"):
        whole = power.simulate(site, "70", strategy, power.parse_args(["--quick", "--period", "1"]))
        half = power.simulate(site, "70", strategy, args)
        assert half["weighted"] == pytest.approx(whole["weighted"], rel=1e-9), strategy
        assert half["seconds_over_budget"] == pytest.approx(whole["seconds_over_budget"]), strategy
