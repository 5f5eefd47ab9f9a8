"""The signal table: what each observation means, and the loader's complaints."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from corral.v1 import common_pb2

from scheduler.reliability.signals import (
    TABLE_PATH,
    Blame,
    Component,
    Kind,
    Observation,
    Severity,
    SignalTable,
    TableError,
    classify,
    from_health_event,
    from_worker_exit,
)

C, W, INFO = Severity.CRITICAL, Severity.WARNING, Severity.INFO
HW, JOB, UNK = Blame.HARDWARE, Blame.JOB, Blame.UNKNOWN
DEV, NODE, NET, J = Component.DEVICE, Component.NODE, Component.NETWORK, Component.JOB


@pytest.mark.parametrize(
    ("observation", "severity", "component", "blame", "early"),
    [
        # Application-level XIDs: the job's, not the device's.
        (Observation("xid", 13), W, J, JOB, False),
        (Observation("xid", 31), W, J, JOB, False),
        (Observation("xid", 43), W, J, JOB, False),
        # 45 is the driver's cleanup after something else: the job's component, nobody's blame.
        (Observation("xid", 45), INFO, J, UNK, False),
        # 32 is PCIe quality per NVIDIA, not the application; repetition settles blame.
        (Observation("xid", 32), W, DEV, UNK, False),
        # Memory.
        (Observation("xid", 48), C, DEV, HW, False),
        (Observation("xid", 63), W, DEV, HW, True),
        (Observation("xid", 64), C, DEV, HW, False),
        (Observation("xid", 92), W, DEV, HW, True),
        (Observation("xid", 94), W, DEV, HW, True),
        (Observation("xid", 95), C, DEV, HW, False),
        (Observation("xid", 61), C, DEV, HW, False),  # unused on Ampere+: unexpected, reset
        # Interconnect, bus, firmware.
        (Observation("xid", 74), C, NET, HW, False),
        (Observation("xid", 79), C, NODE, HW, False),
        (Observation("xid", 119), C, DEV, HW, False),
        (Observation("xid", 120), C, DEV, HW, False),
        # Not in the table: a warning nobody is blamed for yet.
        (Observation("xid", 4242), W, DEV, UNK, False),
        # Other hardware observations.
        (Observation("device_lost"), C, NODE, HW, False),
        (Observation("ecc_uncorrected", value=1), C, DEV, HW, False),
        (Observation("ecc_correctable_rate", value=500), W, DEV, HW, True),
        (Observation("ecc_correctable_rate", value=5), INFO, DEV, HW, False),
        (Observation("row_remap_pending"), W, DEV, HW, True),
        (Observation("row_remap_failed"), C, DEV, HW, False),
        (Observation("thermal_slowdown"), W, DEV, HW, True),
        (Observation("thermal_shutdown"), C, DEV, HW, False),
        (Observation("heartbeat_lost"), C, NODE, HW, False),
        (Observation("hang", value=900), C, NET, UNK, False),
        (Observation("hang", value=60), INFO, NET, UNK, False),
        # How workers end.
        (from_worker_exit(1), C, J, JOB, False),
        (from_worker_exit(0), INFO, J, UNK, False),
        (from_worker_exit(137, oom=True), C, J, JOB, False),
        (from_worker_exit(0, signal=9, oom=True), C, J, JOB, False),
        (from_worker_exit(0, signal=9), C, J, UNK, False),
        (from_worker_exit(137), C, J, UNK, False),  # 128 + SIGKILL, no OOM flag
        (from_worker_exit(0, signal=11), C, J, JOB, False),
        (from_worker_exit(139), C, J, JOB, False),  # 128 + SIGSEGV from a shell
        (from_worker_exit(0, signal=7), C, NODE, UNK, False),  # SIGBUS
        (from_worker_exit(0, signal=6), C, J, UNK, False),  # SIGABRT: NCCL watchdog too
        (from_worker_exit(0, signal=15), INFO, J, UNK, False),
    ],
)
def test_classify(
    observation: Observation, severity: Severity, component: Component, blame: Blame, early: bool
) -> None:
    s = classify(observation)
    assert (s.severity, s.component, s.blame, s.early_warning) == (severity, component, blame, early)
    assert s.source and s.reason


@pytest.mark.parametrize(
    ("observation", "failure_class"),
    [
        (Observation("xid", 13), "xid:app_fault"),
        (Observation("xid", 31), "xid:app_fault"),  # one kernel bug shows as either
        (Observation("xid", 48), "xid:memory"),
        (Observation("xid", 4242), "xid:4242"),
        (from_worker_exit(3), "exit:3"),
        (from_worker_exit(0, signal=11), "signal:SIGSEGV"),
        (from_worker_exit(139), "signal:SIGSEGV"),
        (from_worker_exit(0, signal=9, oom=True), "oom"),
    ],
)
def test_failure_class(observation: Observation, failure_class: str) -> None:
    assert classify(observation).failure_class == failure_class


def test_exit_above_128_that_is_no_signal_stays_an_exit_code() -> None:
    assert classify(from_worker_exit(255)).failure_class == "exit:255"


def _event(
    kind: common_pb2.HealthEventKind.ValueType,
    code: int = 0,
    severity: common_pb2.Severity.ValueType = common_pb2.SEVERITY_UNSPECIFIED,
    index: int = 2,
) -> common_pb2.HealthEvent:
    return common_pb2.HealthEvent(kind=kind, code=code, severity=severity, device_index=index, message="m")


@pytest.mark.parametrize(
    ("event", "kind", "code"),
    [
        (_event(common_pb2.HEALTH_EVENT_KIND_XID, 92), Kind.XID, 92),
        (_event(common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST, 79), Kind.DEVICE_LOST, 79),
        (_event(common_pb2.HEALTH_EVENT_KIND_ECC_DBE), Kind.ECC_UNCORRECTED, None),
        (
            _event(common_pb2.HEALTH_EVENT_KIND_ECC_SBE, severity=common_pb2.SEVERITY_INFO),
            Kind.ECC_CORRECTABLE,
            None,
        ),
        (
            _event(common_pb2.HEALTH_EVENT_KIND_ECC_SBE, severity=common_pb2.SEVERITY_WARNING),
            Kind.ECC_CORRECTABLE_RATE,
            None,
        ),
        (
            _event(common_pb2.HEALTH_EVENT_KIND_THERMAL, severity=common_pb2.SEVERITY_WARNING),
            Kind.THERMAL_SLOWDOWN,
            None,
        ),
        (
            _event(common_pb2.HEALTH_EVENT_KIND_THERMAL, severity=common_pb2.SEVERITY_CRITICAL),
            Kind.THERMAL_SHUTDOWN,
            None,
        ),
        (_event(common_pb2.HEALTH_EVENT_KIND_HANG), Kind.HANG, None),
        (_event(common_pb2.HEALTH_EVENT_KIND_RECOVERED), Kind.RECOVERED, None),
    ],
)
def test_from_health_event(event: common_pb2.HealthEvent, kind: Kind, code: int | None) -> None:
    o = from_health_event(event)
    assert (o.kind, o.code, o.device_index, o.message) == (kind, code, 2, "m")
    assert classify(o).device_index == 2


def test_unspecified_health_event_is_refused() -> None:
    with pytest.raises(ValueError, match="no meaning"):
        from_health_event(common_pb2.HealthEvent())


def test_unknown_observation_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown observation kind"):
        classify(Observation("cosmic_ray"))


def _raw() -> dict[str, Any]:
    with TABLE_PATH.open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data


def test_packaged_table_is_sourced_everywhere() -> None:
    table = SignalTable.load()
    required = {13, 31, 43, 45, 48, 63, 64, 74, 79, 92, 94, 95, 119, 120}
    assert required <= set(table.xids)
    assert all(x.source.strip() for x in table.xids.values())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["xids"][1].update(severity="fatal"), "xids[1] (code 13).severity"),
        (lambda d: d["xids"][2].pop("source"), "xids[2] (code 31).source"),
        (lambda d: d["xids"][0].update(colour="red"), "xids[0] (code 8).colour"),
        (lambda d: d["xids"].append(dict(d["xids"][0])), "(code 8).code: listed twice"),
        (lambda d: d["observations"][0].update(blame="cosmic"), "observations[0] (device_lost).blame"),
        (lambda d: d["posix_signals"][0].update(signal="SIGNOPE"), "posix_signals[0] (SIGNOPE).signal"),
        (lambda d: d["unknown_xid"].update(early_warning="maybe"), "unknown_xid.early_warning"),
        (lambda d: d.update(version=2), "version: must be 1"),
    ],
)
def test_bad_table_names_entry_and_field(mutate: Any, expected: str) -> None:
    data = copy.deepcopy(_raw())
    mutate(data)
    with pytest.raises(TableError) as err:
        SignalTable.parse(data)
    assert any(expected in p for p in err.value.problems), err.value.problems


def vendor_event(vendor: str, code: int) -> common_pb2.HealthEvent:
    return common_pb2.HealthEvent(
        device_index=3,
        kind=common_pb2.HEALTH_EVENT_KIND_VENDOR,
        code=code,
        vendor=vendor,
        message="from the tool",
    )


@pytest.mark.parametrize(
    ("code", "severity", "blame", "early", "cls"),
    [
        (0x80E01801, C, HW, False, "RestartNPU"),  # HBM uncorrectable: reset the NPU
        (0x80E18402, C, HW, False, "SeparateNPU"),  # isolate the NPU
        (0x81078603, W, UNK, True, "PreSeparateNPUNetwork"),  # RoCE link down: warn, then isolate
    ],
)  # fmt: skip
def test_ascend_codes_are_classified_through_the_vendor_table(
    code: int, severity: Severity, blame: Blame, early: bool, cls: str
) -> None:
    signal = classify(from_health_event(vendor_event("ascend", code)))
    assert (signal.severity, signal.early_warning, signal.failure_class) == (severity, early, f"ascend:{cls}")
    assert signal.blame is blame or severity is not C
    assert f"ascend {code:08X}" in signal.reason and signal.device_index == 3
    assert "faultCode.json" in signal.source or "mind-cluster" in signal.source


def test_unlisted_vendor_codes_and_tableless_vendors_fall_back() -> None:
    unlisted = classify(from_health_event(vendor_event("ascend", 0x12345678)))
    assert "not in the ascend table" in unlisted.reason and unlisted.severity is W
    generic = classify(from_health_event(vendor_event("moorethreads-without-table", 9)))
    assert generic.failure_class == "vendor 9" and generic.severity is W


def test_a_vendor_tool_that_hangs_is_a_node_warning_that_stops_nothing() -> None:
    event = common_pb2.HealthEvent(kind=common_pb2.HEALTH_EVENT_KIND_TOOL_ERROR, message="npu-smi timed out")
    signal = classify(from_health_event(event))
    assert (signal.severity, signal.component, signal.early_warning) == (W, NODE, False)
