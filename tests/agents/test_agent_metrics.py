"""The agent's exporter: counters kept from telemetry and health events, served over real HTTP
on loopback, and a real `corral agent` process that reports its exporter in Register."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from corral.v1 import common_pb2
from prometheus_client.parser import text_string_to_metric_families

from agents.backends.simulated import SimulatedBackend
from agents.metrics import (
    AgentCollector,
    DeviceMetrics,
    MetricsListenError,
    MetricsServer,
    metrics_url,
    parse_listen,
    xid_of,
)
from agents.profiles import load_profile, resolve_profile
from tests.harness import Agent, Server, wait_for

T = common_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def device(index: int, simulated: bool = True) -> common_pb2.Device:
    return common_pb2.Device(
        index=index, vendor="nvidia", model="H100-SXM5-80GB", uuid=f"GPU-{index}", memory_bytes=80 << 30,
        power_limit_min_w=200, power_limit_max_w=700, power_limit_default_w=700, simulated=simulated,
    )  # fmt: skip


def read(metrics: DeviceMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    text = "".join(_lines(metrics))
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _lines(metrics: DeviceMetrics) -> list[str]:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(metrics))
    return [generate_latest(registry).decode()]


def value(got: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    found = [v for have, v in got.get(name, []) if all(have.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {got.get(name)}"
    return found[0]


def test_energy_is_integrated_when_the_device_keeps_no_counter_and_taken_when_it_does() -> None:
    clock = Clock()
    m = DeviceMetrics("n0", [device(0), device(1)], clock=clock)
    m.observe_sample([T.DeviceTelemetry(index=0, power_w=100.0), T.DeviceTelemetry(index=1, energy_j=5000.0)])
    clock.now += 10.0
    m.observe_sample([T.DeviceTelemetry(index=0, power_w=300.0), T.DeviceTelemetry(index=1, energy_j=5600.0)])
    got = read(m)
    assert value(got, "corral_device_energy_joules_total", device="0") == pytest.approx(
        2000.0
    )  # (100+300)/2 × 10
    assert value(got, "corral_device_energy_joules_total", device="1") == 5600.0
    clock.now += 1.0
    m.observe_sample([T.DeviceTelemetry(index=1, energy_j=50.0)])  # the device's counter was reset
    assert value(read(m), "corral_device_energy_joules_total", device="1") == 5650.0


def test_throttle_seconds_gauges_and_a_device_that_stops_answering() -> None:
    clock = Clock()
    m = DeviceMetrics("n0", [device(0)], clock=clock, backend="simulated", version="1.2.3")
    thermal = [T.THROTTLE_REASON_HW_THERMAL, T.THROTTLE_REASON_SW_THERMAL, T.THROTTLE_REASON_GPU_IDLE]
    m.observe_sample([T.DeviceTelemetry(index=0, power_w=650.0, throttle_reasons=thermal)])
    clock.now += 2.0
    sample = T.DeviceTelemetry(
        index=0, power_w=640.0, temperature_c=88.0, utilization_pct=75.0, memory_used_bytes=1 << 30,
        power_limit_w=500.0, throttle_reasons=thermal, ecc_corrected_total=7, ecc_uncorrected_total=1,
        remapped_rows_pending=2, row_remap_failed=True,
    )  # fmt: skip
    m.observe_sample([sample])
    clock.now += 1000.0  # a long silence counts at most MAX_GAP_S
    m.observe_sample([sample])
    got = read(m)
    labels = {"node": "n0", "device": "0", "uuid": "GPU-0", "vendor": "nvidia", "simulated": "true"}
    assert value(got, "corral_device_throttle_seconds_total", reason="hw_thermal", **labels) == 62.0
    assert value(got, "corral_device_throttle_seconds_total", reason="sw_power_cap") == 0.0
    assert "gpu_idle" not in {lab["reason"] for lab, _ in got["corral_device_throttle_seconds_total"]}
    assert value(got, "corral_device_temperature_celsius") == 88.0
    assert value(got, "corral_device_utilization_ratio") == 0.75
    assert value(got, "corral_device_memory_used_bytes") == 1 << 30
    assert value(got, "corral_device_power_limit_watts", kind="enforced") == 500.0
    assert value(got, "corral_device_power_limit_watts", kind="default") == 700.0
    assert value(got, "corral_device_ecc_errors_total", type="uncorrectable") == 1
    assert value(got, "corral_device_row_remap_pending") == 2
    assert value(got, "corral_device_row_remap_failure") == 1
    assert value(got, "corral_device_up") == 1
    assert value(got, "corral_agent_info", version="1.2.3", backend="simulated") == 1
    assert value(got, "corral_agent_telemetry_samples_total") == 3
    m.observe_sample([])  # the device fell off the bus: gauges go, counters stay
    got = read(m)
    assert value(got, "corral_device_up") == 0
    assert "corral_device_power_watts" not in got
    assert value(got, "corral_device_throttle_seconds_total", reason="hw_thermal") == 62.0


def test_xids_and_health_events_are_counted() -> None:
    m = DeviceMetrics("n0", [device(0)])
    got = read(m)  # the paging XIDs exist from the start, so an alert sees their first increase
    assert {lab["xid"] for lab, v in got["corral_device_xid_errors_total"] if v == 0} == {
        "48",
        "79",
        "94",
        "95",
    }
    events = [
        T.HealthEvent(device_index=0, kind=T.HEALTH_EVENT_KIND_XID, code=13, severity=T.SEVERITY_WARNING),
        T.HealthEvent(
            device_index=0, kind=T.HEALTH_EVENT_KIND_DEVICE_LOST, code=79, severity=T.SEVERITY_CRITICAL
        ),
        T.HealthEvent(device_index=0, kind=T.HEALTH_EVENT_KIND_ECC_DBE, code=2, severity=T.SEVERITY_CRITICAL),
        T.HealthEvent(device_index=5, kind=T.HEALTH_EVENT_KIND_XID, code=48),  # not a device of this node
    ]
    for event in events:
        m.observe_health(event)
    got = read(m)
    assert value(got, "corral_device_xid_errors_total", xid="13") == 1
    assert value(got, "corral_device_xid_errors_total", xid="79") == 1
    assert value(got, "corral_device_xid_errors_total", xid="48") == 0
    assert value(got, "corral_device_health_events_total", kind="ecc_dbe", level="critical") == 1
    assert value(got, "corral_device_health_events_total", kind="device_lost", level="critical") == 1
    assert xid_of(events[2]) is None  # an ECC event's code is an error count, not an XID


def test_metrics_listen_parsing_and_urls() -> None:
    assert parse_listen("off") is None
    assert parse_listen("") is None
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9400") == ("::1", 9400)
    for bad in ("9400", "host:port", ":9400", "127.0.0.1:70000"):
        with pytest.raises(MetricsListenError, match="--metrics-listen"):
            parse_listen(bad)
    assert metrics_url("127.0.0.1", 9400, "10.0.0.5") == "http://127.0.0.1:9400/metrics"
    assert metrics_url("0.0.0.0", 9400, "10.0.0.5") == "http://10.0.0.5:9400/metrics"
    assert metrics_url("::", 9400, "fd00::5") == "http://[fd00::5]:9400/metrics"


def test_the_exporter_serves_http_and_samples_the_backend_when_stale() -> None:
    backend = SimulatedBackend(load_profile(resolve_profile("h100-sxm-8")), node_name="sim-x", seed=1)
    m = DeviceMetrics("sim-x", backend.inventory(), backend=backend.name)
    server = MetricsServer(AgentCollector(m, backend.sample), "127.0.0.1", 0, advertise="127.0.0.1")
    try:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(server.url, timeout=5) as response:
            body = response.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(body)}
        # No telemetry loop fed it: the scrape sampled the simulated devices itself.
        power = families["corral_device_power_watts"].samples
        assert len(power) == 8 and all(s.value > 0 for s in power)
        assert all(s.labels["simulated"] == "true" for s in power)
    finally:
        server.close()
        backend.close()


def test_a_real_agent_reports_its_exporter_to_the_control_plane(tmp_path: Path, server: Server) -> None:
    agent = Agent(server.address, "sim-m", "h100-sxm-8", tmp_path / "agent")
    try:
        http = wait_for(lambda: (server.data_dir / "http.addr").read_text().strip(), 30, what="http.addr")

        def targets() -> Any:
            with urllib.request.urlopen(f"{http}/prometheus/targets", timeout=5) as response:
                return json.loads(response.read())

        groups = wait_for(targets, 30, what="the agent in /prometheus/targets")
        assert [g["labels"]["node"] for g in groups] == ["sim-m"]
        url = f"http://{groups[0]['targets'][0]}{groups[0]['labels']['__metrics_path__']}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"corral_device_power_watts", "corral_device_xid_errors", "corral_agent_connected"} <= names
        assert "corral_agent_connected 1.0" in body
    finally:
        agent.stop()
