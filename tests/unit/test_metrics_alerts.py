"""The shipped alert rules and Grafana dashboards (helm/corral/files): the rules pass
`promtool test rules`, and the dashboards are well-formed Grafana JSON whose every query names
the datasource variable. That every metric they name is exported is checked against a real
control plane and agent in tests/integration/test_prometheus.py (with `exported_names`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

FILES = Path(__file__).resolve().parents[2] / "helm" / "corral" / "files"
ALERTS = FILES / "prometheus" / "alerts.yaml"
ALERT_TESTS = FILES / "prometheus" / "alerts_test.yaml"
DASHBOARDS = sorted((FILES / "grafana").glob("*.json"))
_OUR_NAMES = re.compile(r"\b(?:corral|grpc_server)_[a-zA-Z0-9_]*\b")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
# Grafana's variables, as a real query would see them (tests/integration runs them on Prometheus).
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$window": "1h",
    "$node": ".*",
    "$vendor": ".*",
    "$model": ".*",
    "$queue": ".*",
}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every query in the dashboards, variables included."""
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in panels(board):
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                yield f"{path.name}: ${variable['name']}", variable["query"]["query"]


def rule_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alerts.yaml: {rule.get('alert') or rule.get('record')}", rule["expr"]


def metric_names(expr: str) -> set[str]:
    """Corral's and the gRPC series names a PromQL expression reads (label values left out)."""
    return set(_OUR_NAMES.findall(_STRINGS.sub('""', expr)))


def with_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition can carry, from its TYPE lines (so a family with no
    series yet still counts): a histogram's _bucket/_sum/_count, a counter's _total."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split(" ", 3)
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    return names


def test_promtool_unit_tests_pass() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    check = subprocess.run(
        [promtool, "check", "rules", ALERTS.name], cwd=ALERTS.parent, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name], cwd=ALERTS.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_severity_and_words_for_the_operator() -> None:
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
            if rule["labels"]["severity"] == "page" and rule["alert"] != "CorralDeviceGone":
                assert rule["alert"] in tested, f"{rule['alert']} pages but has no promtool test"


def test_issue_alerts_are_shipped() -> None:
    exprs = dict(rule_queries())
    joined = "\n".join(exprs.values())
    assert '{xid=~"48|79|94|95"}' in joined
    assert 'type="uncorrectable"' in joined
    assert "corral_device_row_remap_failure" in joined
    assert "corral_agent_heartbeat_age_seconds" in joined
    assert "corral_gpu_seconds_total" in exprs["alerts.yaml: CorralEttrLow"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_are_grafana_json_on_a_datasource_variable(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] == path.stem and board["title"]
    assert 39 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert metric_names(target["expr"]), f"{panel['title']}: names no Corral metric"
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]


def test_dashboards_cover_the_issue_panels() -> None:
    names = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    for wanted in (
        "corral_device_xid_errors_total",
        "corral_device_ecc_errors_total",
        "corral_device_row_remap_failure",
        "corral_device_health",
        "corral_device_throttle_seconds_total",
        "corral_device_power_watts",
        "corral_device_temperature_celsius",
        "corral_job_interruptions_total",
        "corral_gpu_seconds_total",
        "corral_job_recovery_duration_seconds_bucket",
        "corral_power_budget_watts",
        "corral_scheduler_pending_gangs",
    ):
        assert wanted in names, wanted


def test_name_extraction_ignores_label_values() -> None:
    expr = 'sum(rate(corral_x_total{state="corral_not_a_metric"}[5m])) / grpc_server_handled_total'
    assert metric_names(expr) == {"corral_x_total", "grpc_server_handled_total"}
    exposition = "# TYPE corral_a counter\n# TYPE corral_b histogram\n# TYPE corral_c gauge\ncorral_c 1\n"
    assert exported_names(exposition) == {
        "corral_a",
        "corral_a_total",
        "corral_b",
        "corral_b_bucket",
        "corral_b_sum",
        "corral_b_count",
        "corral_c",
    }
