"""NVML conversions with values recorded from H100 SXM5 machines (no GPU needed)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from corral.v1 import common_pb2

from agents.backends.detect import NoDeviceBackend, detect_backend
from agents.backends.nvml import (
    NvmlRawDevice,
    NvmlRawSample,
    health_event_from_nvml,
    nvml_device_count,
    telemetry_from_raw,
    throttle_reasons_from_mask,
)
from agents.backends.nvml_convert import (
    EVENT_DOUBLE_BIT_ECC,
    EVENT_SINGLE_BIT_ECC,
    EVENT_XID_CRITICAL,
    NVLINK_REMOTE_GPU,
    NVLINK_REMOTE_SWITCH,
    device_from_raw,
    model_from_nvml_name,
    normalize_bus_id,
    nvlink_peers,
    thresholds_from_raw,
)
from agents.backends.xid import CRITICAL_XIDS, xid_message, xid_severity
from agents.health_watch import EARLY_WARNING_XIDS
from scheduler.reliability.signals import Severity, SignalTable

T = common_pb2


def test_telemetry_units_from_a_loaded_h100() -> None:
    raw = NvmlRawSample(
        index=3,
        power_mw=412345,
        temperature_c=61,
        gpu_util_pct=98,
        memory_used_bytes=79_456_894_976,
        enforced_limit_mw=700000,
        throttle_mask=0x4 | 0x20,
        ecc_corrected=2,
        ecc_uncorrected=0,
        energy_mj=98_765_432_101,
    )
    t = telemetry_from_raw(raw)
    assert t.index == 3
    assert t.power_w == pytest.approx(412.345)
    assert t.temperature_c == 61.0 and t.utilization_pct == 98.0
    assert t.memory_used_bytes == 79_456_894_976
    assert t.power_limit_w == pytest.approx(700.0)
    assert list(t.throttle_reasons) == [T.THROTTLE_REASON_SW_POWER_CAP, T.THROTTLE_REASON_SW_THERMAL]
    assert (t.ecc_corrected_total, t.ecc_uncorrected_total) == (2, 0)
    assert t.energy_j == pytest.approx(98_765_432.101)


def test_telemetry_tolerates_unsupported_fields() -> None:
    raw = NvmlRawSample(
        index=0,
        power_mw=69871,
        temperature_c=33,
        gpu_util_pct=0,
        memory_used_bytes=581_173_248,
        enforced_limit_mw=300000,
    )
    t = telemetry_from_raw(raw)
    assert t.power_w == pytest.approx(69.871) and t.power_limit_w == pytest.approx(300.0)
    assert list(t.throttle_reasons) == []
    assert (t.ecc_corrected_total, t.ecc_uncorrected_total, t.energy_j) == (0, 0, 0.0)


@pytest.mark.parametrize(
    ("mask", "reasons"),
    [
        (0x0, []),
        (0x1, [T.THROTTLE_REASON_GPU_IDLE]),
        (0x4 | 0x20, [T.THROTTLE_REASON_SW_POWER_CAP, T.THROTTLE_REASON_SW_THERMAL]),
        (
            0x8 | 0x40 | 0x80,
            [T.THROTTLE_REASON_HW_SLOWDOWN, T.THROTTLE_REASON_HW_THERMAL, T.THROTTLE_REASON_HW_POWER_BRAKE],
        ),
        (
            0x2 | 0x10 | 0x100,
            [
                T.THROTTLE_REASON_APPLICATIONS_CLOCKS,
                T.THROTTLE_REASON_SYNC_BOOST,
                T.THROTTLE_REASON_DISPLAY_CLOCKS,
            ],
        ),
        (0x200 | 0x400, []),  # board-limit / reliability bits have no Corral reason yet
    ],
)
def test_throttle_table(mask: int, reasons: list[int]) -> None:
    assert throttle_reasons_from_mask(mask) == reasons


def test_all_throttle_bits_map_to_distinct_reasons() -> None:
    reasons = throttle_reasons_from_mask(0x1FF)
    assert len(reasons) == len(set(reasons)) == 9
    assert T.THROTTLE_REASON_UNSPECIFIED not in reasons


def test_xid_79_is_device_lost() -> None:
    e = health_event_from_nvml(EVENT_XID_CRITICAL, 79, index=5)
    assert e is not None
    assert (e.device_index, e.kind, e.code, e.severity) == (
        5,
        T.HEALTH_EVENT_KIND_DEVICE_LOST,
        79,
        T.SEVERITY_CRITICAL,
    )
    assert "fallen off the bus" in e.message and e.vendor == "nvidia" and not e.injected
    assert e.observed_at.seconds > 0


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        (13, T.SEVERITY_WARNING),  # graphics engine exception: usually the application
        (31, T.SEVERITY_WARNING),  # MMU fault
        (48, T.SEVERITY_CRITICAL),  # DBE
        (92, T.SEVERITY_WARNING),  # high corrected-error rate: an early warning, nothing killed
        (94, T.SEVERITY_WARNING),  # contained ECC: one application restarts, the GPU runs on
        (95, T.SEVERITY_CRITICAL),  # uncontained ECC: reset before anything restarts
        (119, T.SEVERITY_CRITICAL),
    ],
)
def test_xid_severity(code: int, severity: int) -> None:
    e = health_event_from_nvml(EVENT_XID_CRITICAL, code, index=0)
    assert e is not None and (e.kind, e.code, e.severity) == (T.HEALTH_EVENT_KIND_XID, code, severity)
    assert xid_severity(code) == severity


def test_critical_xid_table_is_the_documented_set() -> None:
    assert set(CRITICAL_XIDS) == {46, 48, 61, 62, 64, 74, 79, 95, 119, 120, 154}


def test_critical_xids_match_the_control_planes_table() -> None:
    # The agent's severity is only a hint; xid.yaml decides. They must still agree, names too.
    table = SignalTable.load()
    critical = {code: x.name for code, x in table.xids.items() if x.severity is Severity.CRITICAL}
    assert dict(CRITICAL_XIDS) == critical
    assert xid_message(95) == "XID 95: Uncontained ECC error" and xid_message(94) == "XID 94"


def test_ecc_events() -> None:
    dbe = health_event_from_nvml(EVENT_DOUBLE_BIT_ECC, 0, index=1)
    sbe = health_event_from_nvml(EVENT_SINGLE_BIT_ECC, 0, index=1)
    assert dbe is not None and (dbe.kind, dbe.severity) == (T.HEALTH_EVENT_KIND_ECC_DBE, T.SEVERITY_CRITICAL)
    assert sbe is not None and (sbe.kind, sbe.severity) == (T.HEALTH_EVENT_KIND_ECC_SBE, T.SEVERITY_INFO)
    assert health_event_from_nvml(0x4, 0, index=1) is None  # P-state change: not a health event


def test_models_and_bus_ids() -> None:
    assert model_from_nvml_name("NVIDIA H100 80GB HBM3") == "H100-SXM5-80GB"
    assert model_from_nvml_name("NVIDIA A100-SXM4-40GB") == "A100-SXM4-40GB"
    assert model_from_nvml_name("NVIDIA L40S") == "L40S"
    assert normalize_bus_id("00000000:18:00.0") == "0000:18:00.0"
    assert normalize_bus_id(b"00000000:DB:00.0") == "0000:db:00.0"


H100_BUS = ["00000000:18:00.0", "00000000:2A:00.0", "00000000:3A:00.0", "00000000:5D:00.0"]


def test_nvswitch_links_make_one_island() -> None:
    devices = [
        NvmlRawDevice(
            index=i,
            name="NVIDIA H100 80GB HBM3",
            uuid=f"GPU-{i}",
            memory_total_bytes=85_520_809_984,
            bus_id=bus,
            nvlinks=[(NVLINK_REMOTE_SWITCH, "00000000:C5:00.0")] * 18,
        )
        for i, bus in enumerate(H100_BUS)
    ]
    assert nvlink_peers(devices) == {0: [1, 2, 3], 1: [0, 2, 3], 2: [0, 1, 3], 3: [0, 1, 2]}


def test_direct_links_pair_devices_and_pcie_only_has_none() -> None:
    devices = [
        NvmlRawDevice(
            0,
            "NVIDIA A100-PCIE-40GB",
            "GPU-0",
            42_949_672_960,
            H100_BUS[0],
            nvlinks=[(NVLINK_REMOTE_GPU, "0000:2a:00.0")] * 3,
        ),
        NvmlRawDevice(
            1,
            "NVIDIA A100-PCIE-40GB",
            "GPU-1",
            42_949_672_960,
            H100_BUS[1],
            nvlinks=[(NVLINK_REMOTE_GPU, "00000000:18:00.0")] * 3,
        ),
        NvmlRawDevice(2, "NVIDIA A100-PCIE-40GB", "GPU-2", 42_949_672_960, H100_BUS[2]),
    ]
    assert nvlink_peers(devices) == {0: [1], 1: [0], 2: []}


def test_device_from_raw_converts_limits() -> None:
    raw = NvmlRawDevice(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-0b3e6c2a-5d0e-4a57-8f3a-1d2e3f4a5b6c",
        memory_total_bytes=85_520_809_984,
        bus_id="00000000:18:00.0",
        limit_min_mw=200000,
        limit_max_mw=700000,
        limit_default_mw=700000,
    )
    d = device_from_raw(raw, [1, 2])
    assert (d.vendor, d.model, d.bus_id) == ("nvidia", "H100-SXM5-80GB", "0000:18:00.0")
    assert (d.power_limit_min_w, d.power_limit_max_w, d.power_limit_default_w) == (200.0, 700.0, 700.0)
    assert d.power_limit_settable and not d.simulated
    assert (list(d.peer_indices), d.interconnect) == ([1, 2], "nvlink")
    assert d.visibility_env == "CUDA_VISIBLE_DEVICES"
    fixed = device_from_raw(NvmlRawDevice(1, "NVIDIA L4", "GPU-1", 24_000_000_000, "0000:01:00.0"), [])
    assert not fixed.power_limit_settable and fixed.interconnect == "pcie"


@pytest.mark.skipif(nvml_device_count() > 0, reason="this machine has NVML devices")
def test_no_device_and_no_profile_is_a_clear_error() -> None:
    with pytest.raises(NoDeviceBackend) as err:
        detect_backend(None)
    text = str(err.value)
    assert "no NVML device" in text and "--simulate PROFILE" in text
    assert "h100-sxm-8" in text and "ascend-910b-8" in text and "mlu370-x8-4" in text


@pytest.mark.parametrize(
    ("remapped", "pending", "failed"),
    [
        (None, 0, False),  # before Ampere: NotSupported
        ((0, 0, 0, 0), 0, False),  # a healthy H100: no remaps at all
        ((3, 1, 0, 0), 0, False),  # rows remapped at an earlier reset: done, nothing waits
        ((0, 1, 1, 0), 1, False),  # an uncorrectable error's row waits for the next reset
        ((0, 0, 0, 1), 0, True),  # the remapper ran out of spare rows
    ],
)
def test_row_remap_fields(remapped: tuple[int, int, int, int] | None, pending: int, failed: bool) -> None:
    raw = NvmlRawSample(
        index=1,
        power_mw=120000,
        temperature_c=40,
        gpu_util_pct=0,
        memory_used_bytes=0,
        enforced_limit_mw=700000,
        remapped_rows=remapped,
    )
    t = telemetry_from_raw(raw)
    assert (t.remapped_rows_pending, t.row_remap_failed) == (pending, failed)


def test_temperature_thresholds() -> None:
    base = NvmlRawDevice(0, "NVIDIA H100 80GB HBM3", "GPU-1", 85_520_809_984, "00000000:18:00.0")
    limits = thresholds_from_raw(replace(base, slowdown_c=87, shutdown_c=92))
    assert (limits.slowdown_c, limits.shutdown_c) == (87.0, 92.0)
    unknown = thresholds_from_raw(replace(base, slowdown_c=0))  # some boards answer 0
    assert (unknown.slowdown_c, unknown.shutdown_c) == (None, None)


def test_early_warning_xids_match_the_signal_table() -> None:
    table = SignalTable.load()
    assert {x.code for x in table.xids.values() if x.early_warning} == EARLY_WARNING_XIDS
