"""Interruptions: what stopped a gang, in a component class and a readable root cause.

Pure; the live control plane (scheduler/server/reliability.py), the metrics exporter and
`corral report` classify the same way from here.

`classify_interruption(cause, signals)` puts one failed attempt in a
component class and a readable root-cause category, the cluster's own version of Table 5 of
the Llama 3 paper ("The Llama 3 Herd of Models", 2024: 466 interruptions in 54 days, by
component and category). Component and detector come from small fixed sets because the
metrics exporter uses them as Prometheus labels:

- component: gpu, gpu_memory (HBM: ECC, row remap), gpu_interconnect (NVLink), host (the node:
  heartbeat lost, SIGBUS), network, software (driver and runtime faults that are not the job's),
  job (the user's program), planned (drains, preemptions, agent shutdowns), unknown (hangs:
  Llama 3 files NCCL watchdog timeouts under "unknown" too).
- detected_by: xid, ecc, row_remap, thermal, heartbeat, exit_code, hang, operator, other.

The XID knowledge stays in xid.yaml: a signal's `failure_class` carries its XID *group*
("xid:bus", "xid:memory"), and this module maps groups — not codes — to categories.
"""

from __future__ import annotations

import re
import signal as posix
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.reliability.signals import Kind, Observation, classify

COMPONENTS = (
    "gpu",
    "gpu_memory",
    "gpu_interconnect",
    "host",
    "network",
    "software",
    "job",
    "planned",
    "unknown",
)
DETECTORS = ("xid", "ecc", "row_remap", "thermal", "heartbeat", "exit_code", "hang", "operator", "other")
HARDWARE_COMPONENTS = frozenset({"gpu", "gpu_memory", "gpu_interconnect", "host", "network"})


# --- interruptions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InterruptionClass:
    component: str  # one of COMPONENTS
    category: str  # readable root cause, Llama 3 Table 5 style
    detected_by: str  # one of DETECTORS
    unexpected: bool  # False for planned moves: drains, preemptions, cancels


# xid.yaml's XID groups (not codes: the table owns those) -> (component, category).
_XID_GROUPS: dict[str, tuple[str, str]] = {
    "bus": ("gpu", "Faulty GPU (fell off the bus)"),
    "memory": ("gpu_memory", "GPU HBM memory"),
    "memory_rate": ("gpu_memory", "GPU HBM memory"),
    "nvlink": ("gpu_interconnect", "NVLink"),
    "firmware": ("gpu", "GPU firmware (micro-controller)"),
    "gsp": ("gpu", "GPU System Processor (GSP)"),
    "stopped": ("gpu", "GPU stopped processing"),
    "push_buffer": ("gpu", "GPU PCIe link (push buffer)"),
    "recovery_action": ("gpu", "GPU recovery action"),
    "app_fault": ("job", "User program error (GPU fault)"),
}
# The table's own component, for XID groups above does not name and codes it does not list.
_TABLE_COMPONENT: dict[str, tuple[str, str]] = {
    "device": ("gpu", "GPU error (other XID)"),
    "node": ("host", "Host error (XID)"),
    "network": ("gpu_interconnect", "GPU interconnect error (XID)"),
    "job": ("software", "GPU driver or runtime fault"),
}
# Observation kinds (signals.Kind) -> (component, category, detected_by).
_KINDS: dict[str, tuple[str, str, str]] = {
    Kind.DEVICE_LOST: ("gpu", "Faulty GPU (lost)", "other"),
    Kind.ECC_UNCORRECTED: ("gpu_memory", "GPU HBM memory", "ecc"),
    Kind.ECC_CORRECTABLE: ("gpu_memory", "GPU HBM memory", "ecc"),
    Kind.ECC_CORRECTABLE_RATE: ("gpu_memory", "GPU HBM memory", "ecc"),
    Kind.ROW_REMAP_PENDING: ("gpu_memory", "GPU HBM memory", "row_remap"),
    Kind.ROW_REMAP_FAILED: ("gpu_memory", "GPU HBM memory", "row_remap"),
    Kind.THERMAL_SLOWDOWN: ("gpu", "GPU thermal", "thermal"),
    Kind.THERMAL_SHUTDOWN: ("gpu", "GPU thermal", "thermal"),
    Kind.HANG: ("unknown", "Hang (no progress, NCCL watchdog)", "hang"),
    Kind.HEARTBEAT_LOST: ("host", "Host lost (heartbeat)", "heartbeat"),
    Kind.EXIT_NONZERO: ("job", "User program error", "exit_code"),
    Kind.OOM_KILLED: ("job", "Out of memory (OOM killer)", "exit_code"),
    Kind.VENDOR: ("gpu", "Accelerator vendor error", "other"),
    Kind.TOOL_ERROR: ("host", "Vendor tool or library unresponsive", "other"),
    Kind.RECOVERED: ("unknown", "Unclassified", "other"),
}
# Cause strings the control plane writes (faults/health.py `cause_of`) -> observation kinds.
_CAUSE_KINDS: tuple[tuple[str, Kind], ...] = (
    ("heartbeat lost", Kind.HEARTBEAT_LOST),
    ("hang", Kind.HANG),
    ("ecc_dbe", Kind.ECC_UNCORRECTED),
    ("ecc_uncorrected", Kind.ECC_UNCORRECTED),
    ("ecc_sbe", Kind.ECC_CORRECTABLE_RATE),
    ("row_remap_failed", Kind.ROW_REMAP_FAILED),
    ("row_remap_pending", Kind.ROW_REMAP_PENDING),
    ("thermal", Kind.THERMAL_SHUTDOWN),
    ("device_lost", Kind.DEVICE_LOST),
    ("vendor", Kind.VENDOR),
)
_EXIT_CAUSE = re.compile(r"exited with (?:code|status) (-?\d+)")
_SIGNAL_CAUSE = re.compile(r"killed by (sig[a-z0-9]+)")
_UNCLASSIFIED = InterruptionClass("unknown", "Unclassified", "other", True)


def classify_interruption(cause: str, signals: Sequence[Mapping[str, Any]]) -> InterruptionClass:
    """The component class, root-cause category and detector of one interrupted attempt.

    `cause` is the attempt's cause as recorded ("xid:79", "heartbeat lost: …", "rank 0 on n1
    exited with code 1", "preempted: drain …"); `signals` the failure row's signals (Signal as
    a dict). The signal that best explains the failure decides: a critical hardware signal
    beats the worker's exit status it caused; without signals the cause string is read."""
    text = cause.strip().lower()
    if text.startswith("preempted") or text.startswith("cancel"):
        return _planned(text)
    primary = _primary(signals)
    if primary is not None:
        return _from_signal(primary, text)
    return _from_cause(text)


def _planned(text: str) -> InterruptionClass:
    if text.startswith("cancel"):
        return InterruptionClass("planned", "Cancelled", "operator", False)
    if "drain" in text:
        return InterruptionClass("planned", "Drain (maintenance)", "operator", False)
    if "shut down" in text:
        return InterruptionClass("planned", "Host maintenance (agent shutdown)", "operator", False)
    return InterruptionClass("planned", "Preemption", "other", False)


def _primary(signals: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Critical hardware-blamed first, then any critical, then the first reported."""
    if not signals:
        return None

    def rank(s: Mapping[str, Any]) -> int:
        critical = s.get("severity") == "critical"
        return 0 if critical and s.get("blame") == "hardware" else 1 if critical else 2

    return min(signals, key=rank)  # min is stable: the first of equal rank wins


def _from_signal(signal: Mapping[str, Any], cause: str) -> InterruptionClass:
    failure_class = str(signal.get("failure_class") or "")
    table_component = str(signal.get("component") or "")
    if failure_class.startswith("xid:"):
        group = failure_class.removeprefix("xid:")
        found = _XID_GROUPS.get(group)
        if found is not None:
            component, category = found
            if group == "stopped" and table_component == "job":
                # XIDs 8 and 109: a channel timed out, usually software, not the device.
                component, category = "software", "GPU stopped processing (software timeout)"
            return InterruptionClass(component, category, "xid", True)
        component, category = _TABLE_COMPONENT.get(table_component, ("unknown", "Unclassified"))
        if table_component == "job" and signal.get("blame") == "job":
            component, category = "job", "User program error (GPU fault)"
        return InterruptionClass(component, category, "xid", True)
    if failure_class.startswith("exit:"):
        return InterruptionClass("job", "User program error", "exit_code", True)
    if failure_class.startswith("signal:") or failure_class == "oom":
        return _from_posix(failure_class, table_component)
    kind, _, code = failure_class.partition(" ")
    if kind == Kind.DEVICE_LOST and code.isdigit():
        # A device lost with an XID (NVML reports 79 as "GPU is lost"): the XID's group says why.
        return _from_cause(f"xid:{code}")
    found_kind = _KINDS.get(kind or _kind_of_cause(cause) or "")
    if found_kind is None:
        return _from_cause(cause)
    return InterruptionClass(*found_kind, True)


def _from_posix(failure_class: str, table_component: str) -> InterruptionClass:
    if failure_class == "oom":
        return InterruptionClass(*_KINDS[Kind.OOM_KILLED], True)
    name = failure_class.removeprefix("signal:")
    if table_component == "node":
        return InterruptionClass("host", f"Host memory or bus error ({name})", "exit_code", True)
    return InterruptionClass("job", "User program crash (signal)", "exit_code", True)


def _kind_of_cause(text: str) -> Kind | None:
    return next((kind for prefix, kind in _CAUSE_KINDS if text.startswith(prefix)), None)


def _signal_number(name: str) -> int | None:
    number = getattr(posix.Signals, name.upper(), None)
    return int(number) if number is not None else None


def _from_cause(text: str) -> InterruptionClass:
    """No signals recorded: read the cause string through the same signal table."""
    if text.startswith("xid:"):
        code = text.removeprefix("xid:").split()[0]
        if code.isdigit():
            s = classify(Observation(Kind.XID, int(code)))
            return _from_signal({"failure_class": s.failure_class, "component": s.component}, text)
    kind = _kind_of_cause(text)
    if kind is not None:
        return _from_signal({"failure_class": kind.value}, text)
    if _EXIT_CAUSE.search(text) or "failed to start" in text:
        return InterruptionClass("job", "User program error", "exit_code", True)
    if (match := _SIGNAL_CAUSE.search(text)) and (number := _signal_number(match.group(1))):
        s = classify(Observation(Kind.SIGNAL, number))
        return _from_posix(s.failure_class, s.component)
    return _UNCLASSIFIED
