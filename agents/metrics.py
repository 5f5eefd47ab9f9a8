"""The agent's Prometheus exporter: per-device series from telemetry and health events.

The stream client hands every telemetry sample and every health event it sends to
`DeviceMetrics`; Prometheus scrapes them from a small HTTP server on `--metrics-listen`
(loopback and an ephemeral port by default; the agent tells the control plane the URL in
Register, and the control plane lists it for Prometheus' HTTP service discovery).

Counters the devices do not keep are kept here, in memory, from this agent's start:
- energy: the device's own counter where it reports one (`energy_j` > 0), otherwise power
  integrated over the samples (trapezoids);
- throttle seconds: the time between two samples is counted for each reason the later one
  shows (at most MAX_GAP_S, so a long silence is not counted as throttling);
- XIDs and health events: counted as the agent sends them. The paging XIDs start at 0 on every
  device, so an alert on their increase fires on the first one.
ECC totals are the device's own (volatile, since the driver loaded).

When no sample has arrived for STALE_AFTER_S (the control plane is unreachable, so the
telemetry loop is not running), a scrape samples the backend itself, so an agent cut off from
the control plane still reports its devices.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from corral.v1 import common_pb2
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

T = common_pb2

THROTTLE_REASONS: dict[int, str] = {
    T.THROTTLE_REASON_SW_POWER_CAP: "sw_power_cap",
    T.THROTTLE_REASON_HW_SLOWDOWN: "hw_slowdown",
    T.THROTTLE_REASON_SW_THERMAL: "sw_thermal",
    T.THROTTLE_REASON_HW_THERMAL: "hw_thermal",
    T.THROTTLE_REASON_HW_POWER_BRAKE: "hw_power_brake",
    T.THROTTLE_REASON_SYNC_BOOST: "sync_boost",
}
# Uncorrectable memory errors and a GPU off the bus: the XIDs an operator is paged for.
PAGING_XIDS = (48, 79, 94, 95)
MAX_GAP_S = 60.0
STALE_AFTER_S = 10.0
DEVICE_LABELS = ["node", "device", "uuid", "vendor", "model", "simulated"]
DISABLED = ("", "off")


class MetricsListenError(ValueError):
    pass


def parse_listen(text: str) -> tuple[str, int] | None:
    """`--metrics-listen`: HOST:PORT ([v6]:PORT for IPv6); "" or "off" disables (None)."""
    text = text.strip()
    if text.lower() in DISABLED:
        return None
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise MetricsListenError(
            f"--metrics-listen: {text!r} is not HOST:PORT (e.g. 127.0.0.1:0 for any free loopback port, "
            "0.0.0.0:9400 for every interface, or off)"
        )
    return host, int(port_text)


def metrics_url(bound_host: str, port: int, advertise: str) -> str:
    """Where Prometheus should scrape: the bound address, or `advertise` (the node's address)
    when bound to every interface."""
    host = advertise if bound_host in ("0.0.0.0", "::") else bound_host
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}/metrics"


@dataclass
class _Device:
    labels: list[str]
    inventory: common_pb2.Device
    sample: common_pb2.DeviceTelemetry | None = None
    sampled_at: float | None = None
    reporting: bool = False
    energy_j: float = 0.0
    device_energy: bool = False  # the device keeps its own energy counter
    energy_offset_j: float = 0.0
    last_device_energy_j: float = 0.0
    throttle_s: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(THROTTLE_REASONS.values(), 0.0)
    )
    xids: dict[int, int] = field(default_factory=lambda: dict.fromkeys(PAGING_XIDS, 0))
    health_events: dict[tuple[str, str], int] = field(default_factory=dict)


def _enum_label(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


class DeviceMetrics:
    """What the exporter shows, fed from the agent's loop and read from the HTTP thread."""

    def __init__(
        self,
        node_name: str,
        inventory: Iterable[common_pb2.Device],
        *,
        backend: str = "",
        version: str = "",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_name = node_name
        self.backend = backend
        self.version = version
        self.clock = clock
        self.wall_clock = wall_clock
        self.connected: Callable[[], bool] = lambda: False  # the agent installs its stream's
        self.samples = 0
        self.last_sample_wall: float | None = None
        self._lock = threading.Lock()
        self._devices: dict[int, _Device] = {}
        for d in inventory:
            labels = [node_name, str(d.index), d.uuid, d.vendor, d.model, "true" if d.simulated else "false"]
            self._devices[d.index] = _Device(labels, d)

    # --- fed by the stream client ---------------------------------------------------------

    def observe_sample(self, samples: Iterable[common_pb2.DeviceTelemetry]) -> None:
        now = self.clock()
        with self._lock:
            seen = set()
            for s in samples:
                dev = self._devices.get(s.index)
                if dev is None:
                    continue
                seen.add(s.index)
                self._advance(dev, s, now)
            for index, dev in self._devices.items():
                dev.reporting = index in seen
            self.samples += 1
            self.last_sample_wall = self.wall_clock()

    def _advance(self, dev: _Device, s: common_pb2.DeviceTelemetry, now: float) -> None:
        previous, previous_at = dev.sample, dev.sampled_at
        if s.energy_j > 0:
            if not dev.device_energy:
                dev.device_energy, dev.energy_offset_j = True, dev.energy_j
            elif s.energy_j < dev.last_device_energy_j:  # the device's counter was reset
                dev.energy_offset_j += dev.last_device_energy_j
            dev.last_device_energy_j = s.energy_j
            dev.energy_j = dev.energy_offset_j + s.energy_j
        if previous is not None and previous_at is not None:
            dt = max(0.0, now - previous_at)
            if not dev.device_energy:
                dev.energy_j += (previous.power_w + s.power_w) / 2.0 * dt
            counted = min(dt, MAX_GAP_S)
            for reason in {THROTTLE_REASONS[r] for r in s.throttle_reasons if r in THROTTLE_REASONS}:
                dev.throttle_s[reason] += counted
        dev.sample, dev.sampled_at = s, now

    def observe_health(self, event: common_pb2.HealthEvent) -> None:
        with self._lock:
            dev = self._devices.get(event.device_index)
            if dev is None:
                return
            kind = _enum_label(T.HealthEventKind.Name(event.kind), "HEALTH_EVENT_KIND_")
            level = _enum_label(T.Severity.Name(event.severity), "SEVERITY_")
            dev.health_events[(kind, level)] = dev.health_events.get((kind, level), 0) + 1
            xid = xid_of(event)
            if xid is not None:
                dev.xids[xid] = dev.xids.get(xid, 0) + 1

    def stale(self) -> bool:
        with self._lock:
            newest = max((d.sampled_at for d in self._devices.values() if d.sampled_at), default=None)
        return newest is None or self.clock() - newest > STALE_AFTER_S

    # --- read by the exporter -------------------------------------------------------------

    def collect(self) -> list[Metric]:
        with self._lock:
            return [*self._agent_families(), *self._device_families()]

    def _agent_families(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "corral_agent_info",
            "The node agent: version and device backend.",
            labels=["node", "version", "backend"],
        )
        info.add_metric([self.node_name, self.version, self.backend], 1)
        yield info
        connected = GaugeMetricFamily(
            "corral_agent_connected", "1 while the agent holds a registered stream to the control plane."
        )
        connected.add_metric([], 1 if self.connected() else 0)
        yield connected
        yield CounterMetricFamily(
            "corral_agent_telemetry_samples", "Telemetry samples the agent took.", value=self.samples
        )
        if self.last_sample_wall is not None:
            yield GaugeMetricFamily(
                "corral_agent_last_sample_timestamp_seconds",
                "When the agent last sampled its devices (Unix time).",
                value=self.last_sample_wall,
            )

    def _device_families(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=[*DEVICE_LABELS, *(extra or [])])

        def counter(name: str, doc: str, extra: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=[*DEVICE_LABELS, *(extra or [])])

        info = gauge("corral_device_info", "A device of this node (1).", ["bus_id", "interconnect"])
        up = gauge(
            "corral_device_up", "1 if the device answered the latest telemetry sample, 0 if it is gone."
        )
        power = gauge("corral_device_power_watts", "Power draw.")
        energy = counter("corral_device_energy_joules", "Energy used (the device's counter, or integrated).")
        temperature = gauge("corral_device_temperature_celsius", "Device (core) temperature.")
        utilization = gauge("corral_device_utilization_ratio", "Share of time the device was busy, 0-1.")
        memory_used = gauge("corral_device_memory_used_bytes", "Device memory in use.")
        memory_total = gauge("corral_device_memory_total_bytes", "Device memory.")
        limit = gauge(
            "corral_device_power_limit_watts",
            "Power limits: enforced now, the default, and the settable range.",
            ["kind"],
        )
        xids = counter("corral_device_xid_errors", "NVIDIA XID errors the device reported.", ["xid"])
        ecc = counter(
            "corral_device_ecc_errors", "ECC errors since the driver loaded (volatile), by type.", ["type"]
        )
        remap_pending = gauge(
            "corral_device_row_remap_pending", "Memory rows waiting for a GPU reset to be remapped."
        )
        remap_failure = gauge(
            "corral_device_row_remap_failure", "1 if a row remap failed (replace the device)."
        )
        throttle = counter(
            "corral_device_throttle_seconds",
            "Time the device's clocks were held down, by reason.",
            ["reason"],
        )
        events = counter(
            "corral_device_health_events",
            "Health events the agent sent, by kind and level (info, warning, critical).",
            ["kind", "level"],
        )
        for dev in self._devices.values():
            labels, inv, s = dev.labels, dev.inventory, dev.sample
            info.add_metric([*labels, inv.bus_id, inv.interconnect], 1)
            up.add_metric(labels, 1 if dev.reporting else 0)
            memory_total.add_metric(labels, inv.memory_bytes)
            for kind, watts in (
                ("default", inv.power_limit_default_w),
                ("min", inv.power_limit_min_w),
                ("max", inv.power_limit_max_w),
            ):
                if watts > 0:
                    limit.add_metric([*labels, kind], watts)
            if dev.sampled_at is not None:
                energy.add_metric(labels, dev.energy_j)
            if s is not None and dev.reporting:
                power.add_metric(labels, s.power_w)
                temperature.add_metric(labels, s.temperature_c)
                utilization.add_metric(labels, s.utilization_pct / 100.0)
                memory_used.add_metric(labels, s.memory_used_bytes)
                if s.power_limit_w > 0:
                    limit.add_metric([*labels, "enforced"], s.power_limit_w)
                remap_pending.add_metric(labels, s.remapped_rows_pending)
                remap_failure.add_metric(labels, 1 if s.row_remap_failed else 0)
            if s is not None:
                ecc.add_metric([*labels, "correctable"], s.ecc_corrected_total)
                ecc.add_metric([*labels, "uncorrectable"], s.ecc_uncorrected_total)
            for code, n in sorted(dev.xids.items()):
                xids.add_metric([*labels, str(code)], n)
            for reason, seconds in dev.throttle_s.items():
                throttle.add_metric([*labels, reason], seconds)
            for (kind, level), n in sorted(dev.health_events.items()):
                events.add_metric([*labels, kind, level], n)
        yield from (info, up, power, energy, temperature, utilization, memory_used, memory_total, limit)
        yield from (xids, ecc, remap_pending, remap_failure, throttle, events)


def xid_of(event: common_pb2.HealthEvent) -> int | None:
    """The XID a health event carries: XID events, and a lost device reported as XID 79."""
    if event.kind == T.HEALTH_EVENT_KIND_XID and event.code > 0:
        return int(event.code)
    if event.kind == T.HEALTH_EVENT_KIND_DEVICE_LOST and event.code == 79:
        return 79
    return None


class AgentCollector(Collector):
    """DeviceMetrics for Prometheus; samples the backend itself when the agent has not lately."""

    def __init__(
        self, metrics: DeviceMetrics, sample: Callable[[], list[common_pb2.DeviceTelemetry]] | None = None
    ) -> None:
        self.metrics = metrics
        self.sample = sample

    def collect(self) -> Iterator[Metric]:
        if self.sample is not None and self.metrics.stale():
            # A failing device must not fail the scrape: its gauges just go stale.
            with contextlib.suppress(Exception):
                self.metrics.observe_sample(self.sample())
        yield from self.metrics.collect()


class MetricsServer:
    """The /metrics HTTP server, on its own daemon thread."""

    def __init__(self, collector: Collector, host: str, port: int, advertise: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_port)
        self.url = metrics_url(host, self.port, advertise)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
