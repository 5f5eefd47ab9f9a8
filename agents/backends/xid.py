"""NVIDIA XID codes as data, shared by the NVML backend and the simulator.

This is only the agent's local view: the severity it logs and sends with a HealthEvent as a
hint. The control plane re-classifies every XID through its table,
scheduler/reliability/xid.yaml, which is authoritative (severity, component, blame, early
warning, action, and the NVIDIA source for each). CRITICAL_XIDS below is exactly that table's
`severity: critical` XIDs under the same names; tests/agents/test_agent_nvml_convert.py holds
the two together. Every other XID is reported as a warning.
"""

from __future__ import annotations

from collections.abc import Mapping

from corral.v1 import common_pb2

# The XIDs xid.yaml calls critical: the GPU must be reset (or the node rebooted) before it runs
# work again. Source: NVIDIA, "Analyzing Xid Errors with the Xid Catalog",
# https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html, as cited per entry there.
CRITICAL_XIDS: Mapping[int, str] = {
    46: "GPU stopped processing",
    48: "Double-bit ECC error",
    61: "Internal micro-controller breakpoint/warning",
    62: "Internal micro-controller halt",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    95: "Uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    154: "GPU recovery action changed",
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
