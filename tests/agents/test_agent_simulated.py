"""The simulated backend: power and thermal models, power caps, fault injection."""

from __future__ import annotations

import threading

import pytest
from corral.v1 import common_pb2

from agents.backends.base import (
    BackendError,
    DeviceBackend,
    FaultInjectionUnsupported,
    PowerLimitError,
)
from agents.backends.simulated import SimulatedBackend
from agents.profiles import builtin_profile, load_profile

T = common_pb2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def backend(
    name: str = "h100-sxm-8", clock: FakeClock | None = None, node: str | None = None
) -> SimulatedBackend:
    return SimulatedBackend(
        load_profile(builtin_profile(name)), node_name=node, clock=clock or FakeClock(), seed=7
    )


def by_index(b: SimulatedBackend) -> dict[int, common_pb2.DeviceTelemetry]:
    return {t.index: t for t in b.sample()}


def test_inventory_is_labelled_simulated() -> None:
    b = backend("ascend-910b-8", node="sim-a")
    devices = b.inventory()
    assert len(devices) == 8 and all(d.simulated for d in devices)
    assert {d.vendor for d in devices} == {"ascend"} and devices[0].model == "Ascend-910B"
    assert devices[0].visibility_env == "ASCEND_RT_VISIBLE_DEVICES" == b.visibility_env
    assert list(devices[4].peer_indices) == [5, 6, 7] and devices[4].interconnect == "hccs"
    assert not devices[0].power_limit_settable and devices[0].memory_bytes == 64 * 1024**3
    other = backend("ascend-910b-8", node="sim-b").inventory()
    assert len({d.uuid for d in devices + other}) == 16  # unique across simulated nodes
    assert b.node_info().default_name == "sim-a" and b.node_info().cpu_count == 192
    assert backend("ascend-910b-8").node_info().default_name == "sim-ascend"


def test_power_follows_busy_devices() -> None:
    b = backend()
    b.set_busy({0, 1})
    t = by_index(b)
    for i in (0, 1):
        assert 650 * 0.97 <= t[i].power_w <= 650 * 1.03
        assert t[i].utilization_pct >= 90
        assert t[i].memory_used_bytes == int(80 * 1024**3 * 0.85)
        assert T.THROTTLE_REASON_GPU_IDLE not in t[i].throttle_reasons
    for i in range(2, 8):
        assert 90 * 0.97 <= t[i].power_w <= 90 * 1.03
        assert t[i].utilization_pct == 0 and t[i].memory_used_bytes == 0
        assert list(t[i].throttle_reasons) == [T.THROTTLE_REASON_GPU_IDLE]
    b.set_busy(set())
    assert by_index(b)[0].power_w < 100


def test_power_cap_clamps_and_reads_back() -> None:
    b = backend()
    b.set_busy({0})
    b.set_power_limit(0, 300)
    assert b.get_power_limit(0) == 300
    t = by_index(b)[0]
    assert t.power_w <= 300 and t.power_limit_w == 300
    assert T.THROTTLE_REASON_SW_POWER_CAP in t.throttle_reasons
    b.set_power_limit(0, 700)
    assert by_index(b)[0].power_w > 600


def test_power_limits_refused_outside_range_or_when_fixed() -> None:
    b = backend()
    with pytest.raises(PowerLimitError, match=r"150 W for device 0 is outside its range 200-700 W"):
        b.set_power_limit(0, 150)
    with pytest.raises(BackendError, match="no device 9"):
        b.set_power_limit(9, 300)
    with pytest.raises(PowerLimitError, match="not settable"):
        backend("ascend-910b-8").set_power_limit(0, 300)
    mlu = backend("mlu370-x8-4")
    mlu.set_power_limit(3, 100)  # per chip: half of the X8 card's 250 W
    assert mlu.get_power_limit(3) == 100


def test_temperature_and_energy_follow_first_order_models() -> None:
    clock = FakeClock()
    b = backend(clock=clock)
    idle = by_index(b)[0].temperature_c
    assert idle == pytest.approx(30 + 0.07 * 90, abs=0.5)
    b.set_busy({0})
    clock.advance(20)  # one time constant: ~63 % of the way
    mid = by_index(b)[0].temperature_c
    loaded = 30 + 0.07 * 650
    assert mid == pytest.approx(idle + 0.632 * (loaded - idle), abs=1.5)
    clock.advance(200)
    t = by_index(b)[0]
    assert t.temperature_c == pytest.approx(loaded, abs=1.5)
    assert t.energy_j == pytest.approx(650 * 220, rel=0.03)


def test_xid_faults() -> None:
    b = backend()
    b.inject_fault(2, "xid:13")
    b.inject_fault(3, "xid:48")
    warn, crit = b.health_events()
    assert (warn.device_index, warn.kind, warn.code, warn.severity) == (
        2,
        T.HEALTH_EVENT_KIND_XID,
        13,
        T.SEVERITY_WARNING,
    )
    assert (crit.kind, crit.code, crit.severity) == (T.HEALTH_EVENT_KIND_XID, 48, T.SEVERITY_CRITICAL)
    assert warn.injected and crit.injected and warn.vendor == "nvidia"


@pytest.mark.parametrize("fault", ["fell-off-bus", "xid:79"])
def test_fell_off_bus(fault: str) -> None:
    b = backend()
    b.inject_fault(5, fault)
    (event,) = b.health_events()
    assert (event.kind, event.code) == (T.HEALTH_EVENT_KIND_DEVICE_LOST, 79)
    assert event.severity == T.SEVERITY_CRITICAL
    assert 5 not in by_index(b) and len(b.sample()) == 7
    with pytest.raises(BackendError, match="lost"):
        b.inject_fault(5, "hang")
    b.inject_fault(5, "clear")
    (recovered,) = b.health_events()
    assert recovered.kind == T.HEALTH_EVENT_KIND_RECOVERED and 5 in by_index(b)


def test_ecc_dbe() -> None:
    b = backend()
    b.inject_fault(1, "ecc-dbe")
    b.inject_fault(1, "ecc-dbe")
    events = b.health_events()
    assert [(e.kind, e.severity) for e in events] == [(T.HEALTH_EVENT_KIND_ECC_DBE, T.SEVERITY_CRITICAL)] * 2
    assert by_index(b)[1].ecc_uncorrected_total == 2 and by_index(b)[0].ecc_uncorrected_total == 0


def test_thermal_acts_through_telemetry() -> None:
    clock = FakeClock()
    b = backend(clock=clock)
    b.inject_fault(0, "thermal")
    assert b.health_events() == []  # the telemetry watch reports it, as on hardware
    clock.advance(60)  # it stays hot
    t = by_index(b)[0]
    assert t.temperature_c > 87
    assert {T.THROTTLE_REASON_HW_THERMAL, T.THROTTLE_REASON_SW_THERMAL} <= set(t.throttle_reasons)
    assert b.health_thresholds()[0].slowdown_c == 87


def test_ecc_sbe_and_row_remap_faults_change_telemetry_only() -> None:
    b = backend()
    b.inject_fault(2, "ecc-sbe")
    b.inject_fault(3, "remap-pending")
    b.inject_fault(4, "remap-failed")
    assert b.health_events() == []
    t = by_index(b)
    assert (t[2].ecc_corrected_total, t[1].ecc_corrected_total) == (20, 0)
    assert (t[3].remapped_rows_pending, t[4].row_remap_failed) == (1, True)
    assert (t[0].remapped_rows_pending, t[0].row_remap_failed) == (0, False)
    b.inject_fault(3, "clear")
    b.inject_fault(4, "clear")
    assert [e.kind for e in b.health_events()] == [T.HEALTH_EVENT_KIND_RECOVERED] * 2
    t = by_index(b)
    assert (t[3].remapped_rows_pending, t[4].row_remap_failed) == (0, False)
    assert t[2].ecc_corrected_total == 20  # counters count on; only a driver reload resets them


def test_hang() -> None:
    b = backend()
    b.set_busy({4})
    b.inject_fault(4, "hang")
    (event,) = b.health_events()
    assert (event.kind, event.severity) == (T.HEALTH_EVENT_KIND_HANG, T.SEVERITY_WARNING)
    t = by_index(b)[4]
    assert t.utilization_pct == 100 and t.power_w < 100


@pytest.mark.parametrize("fault", ["xid:", "xid:abc", "xid:-3", "meltdown", ""])
def test_bad_fault_strings(fault: str) -> None:
    with pytest.raises(ValueError, match=r"accepted forms: xid:<code>, ecc-dbe, fell-off-bus, thermal, hang"):
        backend().inject_fault(0, fault)


def test_health_listener_gets_events_from_any_thread() -> None:
    b = backend()
    b.inject_fault(0, "xid:31")  # before a listener: held
    got: list[common_pb2.HealthEvent] = []
    b.set_health_listener(got.append)
    assert [e.code for e in got] == [31]
    worker = threading.Thread(target=b.inject_fault, args=(1, "xid:43"))
    worker.start()
    worker.join()
    assert [e.code for e in got] == [31, 43] and b.health_events() == []


class _Fixed(DeviceBackend):
    name = "fixed"

    def inventory(self) -> list[common_pb2.Device]:
        return []

    def sample(self) -> list[common_pb2.DeviceTelemetry]:
        return []

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError("fixed")

    def get_power_limit(self, index: int) -> float:
        return 0.0


def test_real_backends_refuse_fault_injection() -> None:
    with pytest.raises(FaultInjectionUnsupported, match="only available on the simulated backend"):
        _Fixed().inject_fault(0, "xid:79")
