"""Pure conversions from raw NVML values to Corral's wire types.

Split from the I/O so every unit conversion and table lookup is tested with recorded values
on machines without a GPU. Nothing here imports pynvml; the few NVML constants needed are
copied from nvml.h with their names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from corral.v1 import common_pb2

from agents.backends.xid import xid_kind, xid_message, xid_severity
from agents.health_watch import Thresholds
from agents.timeutil import timestamp

VISIBILITY_ENV = "CUDA_VISIBLE_DEVICES"

# nvmlEventType* bits (nvml.h).
EVENT_SINGLE_BIT_ECC = 0x1
EVENT_DOUBLE_BIT_ECC = 0x2
EVENT_XID_CRITICAL = 0x8
HEALTH_EVENT_MASK = EVENT_SINGLE_BIT_ECC | EVENT_DOUBLE_BIT_ECC | EVENT_XID_CRITICAL

# nvmlNvLinkDeviceType_t (nvml.h).
NVLINK_REMOTE_GPU = 0x00
NVLINK_REMOTE_SWITCH = 0x02

# nvmlClocksEventReason* bits (nvml.h; formerly nvmlClocksThrottleReason*), in bit order.
THROTTLE_BITS: tuple[tuple[int, common_pb2.ThrottleReason.ValueType], ...] = (
    (0x001, common_pb2.THROTTLE_REASON_GPU_IDLE),
    (0x002, common_pb2.THROTTLE_REASON_APPLICATIONS_CLOCKS),
    (0x004, common_pb2.THROTTLE_REASON_SW_POWER_CAP),
    (0x008, common_pb2.THROTTLE_REASON_HW_SLOWDOWN),
    (0x010, common_pb2.THROTTLE_REASON_SYNC_BOOST),
    (0x020, common_pb2.THROTTLE_REASON_SW_THERMAL),
    (0x040, common_pb2.THROTTLE_REASON_HW_THERMAL),
    (0x080, common_pb2.THROTTLE_REASON_HW_POWER_BRAKE),
    (0x100, common_pb2.THROTTLE_REASON_DISPLAY_CLOCKS),
)

# NVML marketing names → the catalog names the scheduler keys throughput on. Names not
# listed fall back to the NVML name without the "NVIDIA " prefix, spaces turned to dashes.
MODEL_NAMES: Mapping[str, str] = {
    "NVIDIA H100 80GB HBM3": "H100-SXM5-80GB",
    "NVIDIA H100 PCIe": "H100-PCIE-80GB",
    "NVIDIA H100 NVL": "H100-NVL-94GB",
    "NVIDIA H200": "H200-SXM5-141GB",
    "NVIDIA H200 NVL": "H200-NVL-141GB",
    "NVIDIA A100-SXM4-80GB": "A100-SXM4-80GB",
    "NVIDIA A100-SXM4-40GB": "A100-SXM4-40GB",
    "NVIDIA A100 80GB PCIe": "A100-PCIE-80GB",
    "NVIDIA A100-PCIE-40GB": "A100-PCIE-40GB",
}


@dataclass(frozen=True)
class NvmlRawSample:
    """One device's readings in NVML's own units; None where NVML said NotSupported."""

    index: int
    power_mw: int
    temperature_c: int
    gpu_util_pct: int
    memory_used_bytes: int
    enforced_limit_mw: int
    throttle_mask: int | None = None
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    energy_mj: int | None = None
    # nvmlDeviceGetRemappedRows: (corrRows, uncRows, isPending, failureOccurred); None on GPUs
    # without row remapping (before Ampere).
    remapped_rows: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class NvmlRawDevice:
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    bus_id: str
    limit_min_mw: int | None = None
    limit_max_mw: int | None = None
    limit_default_mw: int | None = None
    # (nvmlNvLinkDeviceType_t, remote PCI bus id) for each active NVLink.
    nvlinks: Sequence[tuple[int, str]] = field(default_factory=tuple)
    # nvmlDeviceGetTemperatureThreshold SLOWDOWN and SHUTDOWN, °C.
    slowdown_c: int | None = None
    shutdown_c: int | None = None


def throttle_reasons_from_mask(mask: int) -> list[common_pb2.ThrottleReason.ValueType]:
    return [reason for bit, reason in THROTTLE_BITS if mask & bit]


def telemetry_from_raw(raw: NvmlRawSample) -> common_pb2.DeviceTelemetry:
    # NVML says only whether remaps are pending, not how many rows: 1 stands for "some".
    _, _, pending, failed = raw.remapped_rows or (0, 0, 0, 0)
    return common_pb2.DeviceTelemetry(
        index=raw.index,
        power_w=raw.power_mw / 1000.0,
        temperature_c=float(raw.temperature_c),
        utilization_pct=float(raw.gpu_util_pct),
        memory_used_bytes=raw.memory_used_bytes,
        power_limit_w=raw.enforced_limit_mw / 1000.0,
        throttle_reasons=throttle_reasons_from_mask(raw.throttle_mask or 0),
        ecc_corrected_total=raw.ecc_corrected or 0,
        ecc_uncorrected_total=raw.ecc_uncorrected or 0,
        energy_j=(raw.energy_mj or 0) / 1000.0,
        remapped_rows_pending=1 if pending else 0,
        row_remap_failed=bool(failed),
    )


def thresholds_from_raw(raw: NvmlRawDevice) -> Thresholds:
    """The device's own temperature limits for the telemetry watch; 0 (some boards) is unknown."""
    return Thresholds(
        slowdown_c=float(raw.slowdown_c) if raw.slowdown_c else None,
        shutdown_c=float(raw.shutdown_c) if raw.shutdown_c else None,
    )


def model_from_nvml_name(name: str) -> str:
    if name in MODEL_NAMES:
        return MODEL_NAMES[name]
    return name.removeprefix("NVIDIA ").strip().replace(" ", "-")


def normalize_bus_id(bus_id: str | bytes) -> str:
    """NVML pads the PCI domain to 8 digits in some calls and 4 in others; compare as sysfs does."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    text = text.strip().lower()
    try:
        domain, bus, rest = text.split(":")
        device, function = rest.split(".")
        return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{int(function, 16)}"
    except ValueError:
        return text


def nvlink_peers(devices: Sequence[NvmlRawDevice]) -> dict[int, list[int]]:
    """Which devices share NVLink, by index.

    Direct GPU-to-GPU links name the peer's bus id. On NVSwitch baseboards (HGX H100) every
    link ends at a switch, so all GPUs with a switch link form one island.
    """
    by_bus = {normalize_bus_id(d.bus_id): d.index for d in devices}
    switched = {d.index for d in devices if any(t == NVLINK_REMOTE_SWITCH for t, _ in d.nvlinks)}
    peers: dict[int, list[int]] = {}
    for d in devices:
        found: set[int] = set()
        for remote_type, remote_bus in d.nvlinks:
            if remote_type == NVLINK_REMOTE_GPU and normalize_bus_id(remote_bus) in by_bus:
                found.add(by_bus[normalize_bus_id(remote_bus)])
        if d.index in switched:
            found |= switched
        found.discard(d.index)
        peers[d.index] = sorted(found)
    return peers


def device_from_raw(raw: NvmlRawDevice, peers: Sequence[int]) -> common_pb2.Device:
    limits = (raw.limit_min_mw, raw.limit_max_mw, raw.limit_default_mw)
    settable = None not in limits and (raw.limit_min_mw or 0) < (raw.limit_max_mw or 0)
    return common_pb2.Device(
        index=raw.index,
        vendor="nvidia",
        model=model_from_nvml_name(raw.name),
        uuid=raw.uuid,
        memory_bytes=raw.memory_total_bytes,
        power_limit_min_w=(raw.limit_min_mw or 0) / 1000.0,
        power_limit_max_w=(raw.limit_max_mw or 0) / 1000.0,
        power_limit_default_w=(raw.limit_default_mw or 0) / 1000.0,
        power_limit_settable=settable,
        bus_id=normalize_bus_id(raw.bus_id),
        peer_indices=list(peers),
        interconnect="nvlink" if peers else "pcie",
        simulated=False,
        visibility_env=VISIBILITY_ENV,
    )


def health_event_from_nvml(
    event_type: int,
    event_data: int,
    index: int,
    observed_at: dt.datetime | None = None,
) -> common_pb2.HealthEvent | None:
    """Turn one nvmlEventData_t into a HealthEvent; None for event types Corral ignores."""
    if event_type & EVENT_XID_CRITICAL:
        code = int(event_data)
        kind, severity, message = xid_kind(code), xid_severity(code), xid_message(code)
    elif event_type & EVENT_DOUBLE_BIT_ECC:
        kind, severity, code = common_pb2.HEALTH_EVENT_KIND_ECC_DBE, common_pb2.SEVERITY_CRITICAL, 0
        message = "double-bit (uncorrectable) ECC error"
    elif event_type & EVENT_SINGLE_BIT_ECC:
        kind, severity, code = common_pb2.HEALTH_EVENT_KIND_ECC_SBE, common_pb2.SEVERITY_INFO, 0
        message = "single-bit (corrected) ECC error"
    else:
        return None
    return common_pb2.HealthEvent(
        device_index=index,
        kind=kind,
        code=code,
        severity=severity,
        message=message,
        observed_at=timestamp(observed_at),
        vendor="nvidia",
    )
