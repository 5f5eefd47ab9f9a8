"""The telemetry watch's rules on hand-built samples: one event per change, never one per sample."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from corral.v1 import common_pb2

from agents.health_watch import NodeWatch, TelemetryWatch, Thresholds
from scheduler.reliability.signals import Kind, Severity, classify, from_health_event

T = common_pb2
H100 = Thresholds(slowdown_c=87, shutdown_c=92)
HOT = (T.THROTTLE_REASON_SW_THERMAL, T.THROTTLE_REASON_HW_THERMAL)


def sample(
    *,
    sbe: int = 0,
    dbe: int = 0,
    pending: int = 0,
    failed: bool = False,
    temp: float = 40.0,
    reasons: Sequence[common_pb2.ThrottleReason.ValueType] = (),
    index: int = 0,
) -> common_pb2.DeviceTelemetry:
    return T.DeviceTelemetry(
        index=index,
        temperature_c=temp,
        ecc_corrected_total=sbe,
        ecc_uncorrected_total=dbe,
        remapped_rows_pending=pending,
        row_remap_failed=failed,
        throttle_reasons=list(reasons),
    )


def kinds(events: list[common_pb2.HealthEvent]) -> list[tuple[int, int]]:
    return [(e.kind, e.severity) for e in events]


class Run:
    """One watch fed samples at given times."""

    def __init__(self, thresholds: Thresholds = H100) -> None:
        self.watch = TelemetryWatch(0, "nvidia")
        self.thresholds = thresholds

    def at(self, now: float, **fields: object) -> list[common_pb2.HealthEvent]:
        return self.watch.observe(sample(**fields), now, self.thresholds)  # type: ignore[arg-type]


def test_first_sample_is_only_the_baseline() -> None:
    run = Run()
    assert run.at(0, sbe=500, dbe=7) == []
    assert run.at(1, sbe=500, dbe=7) == [] and run.at(2, sbe=500, dbe=7) == []


def test_uncorrected_rise_is_reported_once_with_the_numbers() -> None:
    run = Run()
    run.at(0, dbe=2)
    assert run.at(1, dbe=5) == []  # held one sample: the backend's own event may cover it
    (event,) = run.at(2, dbe=5)
    assert kinds([event]) == [(T.HEALTH_EVENT_KIND_ECC_DBE, T.SEVERITY_CRITICAL)]
    assert event.code == 3 and event.message == "3 uncorrectable ECC errors since the last report (total 5)"
    assert (event.device_index, event.vendor, event.injected) == (0, "nvidia", False)
    assert event.observed_at.seconds > 0
    assert run.at(3, dbe=5) == [] and run.at(4, dbe=5) == []


def test_uncorrected_rises_in_consecutive_samples_are_added_up() -> None:
    run = Run()
    run.at(0)
    run.at(1, dbe=1)
    (event,) = run.at(2, dbe=3)  # the held error and this sample's two, in one report
    assert event.code == 3 and "total 3" in event.message
    assert run.at(3, dbe=3) == [] and run.at(4, dbe=3) == []


def _backend_dbe() -> common_pb2.HealthEvent:
    return T.HealthEvent(device_index=0, kind=T.HEALTH_EVENT_KIND_ECC_DBE, severity=T.SEVERITY_CRITICAL)


@pytest.mark.parametrize("noted_before_the_rise", [True, False])
def test_a_backend_dbe_event_stands_for_the_counter(noted_before_the_rise: bool) -> None:
    run = Run()
    run.at(0)
    if noted_before_the_rise:
        run.watch.note(_backend_dbe())
    assert run.at(1, dbe=1) == []
    if not noted_before_the_rise:
        run.watch.note(_backend_dbe())
    assert run.at(2, dbe=1) == [] and run.at(3, dbe=1) == []


def test_a_stale_backend_event_does_not_swallow_a_later_rise() -> None:
    run = Run()
    run.at(0, dbe=1)
    run.watch.note(_backend_dbe())  # its error was counted before the baseline
    for t in range(1, 4):
        assert run.at(t, dbe=1) == []
    run.at(4, dbe=2)
    assert kinds(run.at(5, dbe=2)) == [(T.HEALTH_EVENT_KIND_ECC_DBE, T.SEVERITY_CRITICAL)]


def test_a_counter_reset_is_not_an_error() -> None:
    run = Run()
    run.at(0, dbe=4, sbe=40)
    assert run.at(1) == [] and run.at(2) == []  # driver reload: volatile counters back to 0


def test_correctable_rate_warns_once_per_window() -> None:
    run = Run()
    run.at(0)
    assert run.at(10, sbe=5) == []
    (event,) = run.at(1800, sbe=10)
    assert kinds([event]) == [(T.HEALTH_EVENT_KIND_ECC_SBE, T.SEVERITY_WARNING)]
    assert event.message == "10 correctable ECC errors within 1 h (threshold 10, total 10)"
    assert run.at(1801, sbe=30) == [] and run.at(2000, sbe=31) == []  # same window: no repeat
    (again,) = run.at(1800 + 3600, sbe=45)  # a window on, still high: once more
    assert again.kind == T.HEALTH_EVENT_KIND_ECC_SBE and again.message.startswith("35 correctable")


def test_correctable_errors_spread_thinner_than_the_rate_do_not_warn() -> None:
    run = Run()
    run.at(0)
    for hour in range(1, 6):
        assert run.at(hour * 3600.0, sbe=9 * hour) == []


def test_correctable_rate_clears_after_a_quiet_window() -> None:
    run = Run()
    run.at(0)
    assert kinds(run.at(1, sbe=20)) == [(T.HEALTH_EVENT_KIND_ECC_SBE, T.SEVERITY_WARNING)]
    assert run.at(3000, sbe=20) == []
    (recovered,) = run.at(3601, sbe=20)
    assert kinds([recovered]) == [(T.HEALTH_EVENT_KIND_RECOVERED, T.SEVERITY_INFO)]
    assert recovered.message == "cleared: correctable ECC rate"


def test_rows_pending_remap_warn_on_the_edge_and_recover_after_the_reset() -> None:
    run = Run()
    run.at(0)
    (event,) = run.at(1, pending=1)
    assert kinds([event]) == [(T.HEALTH_EVENT_KIND_ROW_REMAP_PENDING, T.SEVERITY_WARNING)]
    assert event.message == "a memory row pending remap; the remap takes effect at the next GPU reset"
    assert run.at(2, pending=1) == [] and run.at(3, pending=2) == []
    (recovered,) = run.at(4, pending=0)
    assert recovered.kind == T.HEALTH_EVENT_KIND_RECOVERED and "rows pending remap" in recovered.message
    assert run.at(5) == []


def test_a_device_that_starts_with_rows_pending_is_reported() -> None:
    run = Run()
    (event,) = run.at(0, pending=3)  # a state, not a count: nobody may have reported it
    assert event.kind == T.HEALTH_EVENT_KIND_ROW_REMAP_PENDING and event.message.startswith("3 memory rows")


def test_row_remap_failure_is_critical_and_never_recovered() -> None:
    run = Run()
    run.at(0)
    run.at(1, pending=1)
    (failed,) = run.at(2, pending=1, failed=True)
    assert kinds([failed]) == [(T.HEALTH_EVENT_KIND_ROW_REMAP_FAILED, T.SEVERITY_CRITICAL)]
    assert run.at(3, pending=1, failed=True) == []
    assert run.at(4, pending=0, failed=True) == []  # the pending warning cleared, the failure did not


def test_thermal_throttling_must_last() -> None:
    run = Run()
    assert run.at(0, temp=88, reasons=HOT) == []
    assert run.at(9, temp=88, reasons=HOT) == []
    assert run.at(9.5, temp=86) == []  # a break restarts the count
    assert run.at(10, temp=88, reasons=HOT) == [] and run.at(19, temp=88, reasons=HOT) == []
    (event,) = run.at(20, temp=89, reasons=(T.THROTTLE_REASON_HW_THERMAL,))
    assert kinds([event]) == [(T.HEALTH_EVENT_KIND_THERMAL, T.SEVERITY_WARNING)]
    assert event.message == "thermal throttling for 10 s at 89 °C (slowdown threshold 87 °C)"
    assert run.at(60, temp=89, reasons=HOT) == []


def test_other_throttle_reasons_are_not_thermal() -> None:
    run = Run()
    power = (T.THROTTLE_REASON_SW_POWER_CAP, T.THROTTLE_REASON_HW_POWER_BRAKE, T.THROTTLE_REASON_GPU_IDLE)
    assert run.at(0, reasons=power) == [] and run.at(100, reasons=power) == []


def test_thermal_recovers_only_once_cool_for_a_while() -> None:
    run = Run()
    run.at(0, temp=90, reasons=HOT)
    assert run.at(10, temp=90, reasons=HOT)
    assert run.at(11, temp=88) == []  # no throttle reason, but still above slowdown
    assert run.at(100, temp=88) == []
    assert run.at(101, temp=80) == [] and run.at(130, temp=70) == []
    (recovered,) = run.at(131, temp=70)
    assert kinds([recovered]) == [(T.HEALTH_EVENT_KIND_RECOVERED, T.SEVERITY_INFO)]
    assert recovered.message == "cleared: thermal throttling"


def test_shutdown_temperature_is_critical_and_blocks_recovery() -> None:
    run = Run()
    run.at(0, temp=90, reasons=HOT)
    run.at(10, temp=91, reasons=HOT)
    (event,) = run.at(11, temp=92.5, reasons=HOT)
    assert kinds([event]) == [(T.HEALTH_EVENT_KIND_THERMAL, T.SEVERITY_CRITICAL)]
    assert event.message == "temperature 92.5 °C at or above the shutdown threshold 92 °C"
    assert run.at(12, temp=93, reasons=HOT) == []
    assert run.at(13, temp=60) == [] and run.at(100, temp=60) == []  # no RECOVERED after a critical
    assert kinds(run.at(101, temp=95)) == [(T.HEALTH_EVENT_KIND_THERMAL, T.SEVERITY_CRITICAL)]  # re-armed


def test_no_temperature_rules_without_thresholds() -> None:
    run = Run(Thresholds())
    assert run.at(0, temp=120) == [] and run.at(1, temp=120) == []


def test_recovered_waits_for_every_warning() -> None:
    run = Run()
    run.at(0, temp=90, reasons=HOT)
    run.at(5, temp=90, reasons=HOT, pending=1)
    run.at(10, temp=90, reasons=HOT, pending=1)
    assert run.watch.standing() == ["thermal throttling", "rows pending remap"]
    assert run.at(11, temp=70, pending=1) == [] and run.at(50, temp=70, pending=1) == []
    (recovered,) = run.at(51, temp=70)
    assert recovered.message == "cleared: rows pending remap"


@pytest.mark.parametrize(
    ("kind", "code", "severity", "held"),
    [
        (T.HEALTH_EVENT_KIND_XID, 48, T.SEVERITY_CRITICAL, True),  # DBE: the device is UNHEALTHY
        (T.HEALTH_EVENT_KIND_XID, 94, T.SEVERITY_WARNING, True),  # an early warning of its own
        (T.HEALTH_EVENT_KIND_HANG, 0, T.SEVERITY_WARNING, True),
        (T.HEALTH_EVENT_KIND_XID, 13, T.SEVERITY_WARNING, False),  # the job's fault
        (T.HEALTH_EVENT_KIND_ECC_SBE, 0, T.SEVERITY_INFO, False),  # one corrected error
    ],
)
def test_backend_events_that_hold_back_recovery(kind: int, code: int, severity: int, held: bool) -> None:
    run = Run()
    run.at(0)
    run.at(1, pending=1)
    run.watch.note(T.HealthEvent(device_index=0, kind=kind, code=code, severity=severity))  # type: ignore[arg-type]
    recovered = [e for e in run.at(2) if e.kind == T.HEALTH_EVENT_KIND_RECOVERED]
    assert len(recovered) == (0 if held else 1)


def test_a_backend_recovered_starts_afresh_without_a_second_recovered() -> None:
    run = Run()
    run.at(0, temp=90, reasons=HOT)
    run.at(10, temp=90, reasons=HOT, pending=1)
    run.watch.note(T.HealthEvent(device_index=0, kind=T.HEALTH_EVENT_KIND_XID, code=48, severity=3))
    run.watch.note(T.HealthEvent(device_index=0, kind=T.HEALTH_EVENT_KIND_RECOVERED, severity=1))
    assert run.watch.standing() == []
    assert run.at(11, temp=70) == [] and run.at(100, temp=70) == []
    # still hot after the clear: raised again by its own rule, from the start
    run.at(200, temp=90, reasons=HOT)
    assert kinds(run.at(210, temp=90, reasons=HOT)) == [(T.HEALTH_EVENT_KIND_THERMAL, T.SEVERITY_WARNING)]


def test_node_watch_keeps_devices_apart() -> None:
    node = NodeWatch({1: H100}, vendor="nvidia")  # device 0's temperatures are unknown
    assert node.observe([sample(index=0), sample(index=1)], 0) == []
    hot = node.observe([sample(index=0, temp=95), sample(index=1, temp=95)], 1)
    assert [(e.device_index, e.kind, e.severity) for e in hot] == [
        (1, T.HEALTH_EVENT_KIND_THERMAL, T.SEVERITY_CRITICAL)
    ]
    events = node.observe([sample(index=0, pending=1), sample(index=1, temp=95)], 2)
    assert [(e.device_index, e.kind) for e in events] == [(0, T.HEALTH_EVENT_KIND_ROW_REMAP_PENDING)]
    assert all(e.vendor == "nvidia" for e in hot + events)


def test_the_control_plane_reads_each_event_as_meant() -> None:
    run = Run()
    run.at(0, temp=90, reasons=HOT)
    events = run.at(10, temp=90, reasons=HOT, pending=1, sbe=10)
    events += run.at(11, temp=93, failed=True, dbe=1)
    events += run.at(12, temp=93, failed=True, dbe=1)
    meanings = {
        (o.kind, classify(o).severity, classify(o).early_warning) for o in map(from_health_event, events)
    }
    assert meanings == {
        (Kind.ECC_CORRECTABLE_RATE, Severity.WARNING, True),
        (Kind.ROW_REMAP_PENDING, Severity.WARNING, True),
        (Kind.THERMAL_SLOWDOWN, Severity.WARNING, True),
        (Kind.ROW_REMAP_FAILED, Severity.CRITICAL, False),
        (Kind.THERMAL_SHUTDOWN, Severity.CRITICAL, False),
        (Kind.ECC_UNCORRECTED, Severity.CRITICAL, False),
    }


def test_the_rate_warning_uses_the_signal_tables_threshold() -> None:
    """One number for "too many corrected errors per hour": the watch that raises the warning
    and the table that says what it means must agree."""
    from agents import health_watch
    from scheduler.reliability.signals import packaged_table

    entry = packaged_table().observations[Kind.ECC_CORRECTABLE_RATE]
    per_hour = health_watch.DEFAULT_ECC_RATE_COUNT * 3600.0 / health_watch.DEFAULT_ECC_RATE_WINDOW_S
    assert entry.threshold == per_hour
