"""NVIDIA XID codes as data, shared by the NVML backend and the simulator.

Kept as a table rather than an `if` chain so it can be extended (or replaced by a file)
without touching the code that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping

from corral.v1 import common_pb2

# XIDs that mean the GPU's state is lost or corrupted and the job on it cannot continue
# (NVIDIA's recommended action is a GPU reset or node reboot). Source: NVIDIA "XID Errors"
# catalog, https://docs.nvidia.com/deploy/xid-errors/ (GPU Deployment and Management
# Documentation). Every XID not listed is reported as a warning.
CRITICAL_XIDS: Mapping[int, str] = {
    48: "double-bit ECC error",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}

XID_FELL_OFF_BUS = 79


def xid_severity(code: int) -> common_pb2.Severity.ValueType:
    return common_pb2.SEVERITY_CRITICAL if code in CRITICAL_XIDS else common_pb2.SEVERITY_WARNING


def xid_kind(code: int) -> common_pb2.HealthEventKind.ValueType:
    """XID 79 is reported as the device being lost, which the control plane treats as such."""
    return (
        common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST
        if code == XID_FELL_OFF_BUS
        else (common_pb2.HEALTH_EVENT_KIND_XID)
    )


def xid_message(code: int) -> str:
    what = CRITICAL_XIDS.get(code)
    return f"XID {code}: {what}" if what else f"XID {code}"
