"""Error codes as operators read them: what a cause string is (XID, ECC, heartbeat, exit code,
hang, ...) and what it means, from the signal table (scheduler/reliability/xid.yaml)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from scheduler.reliability.signals import packaged_table

# Observation kinds as health events name them (faults/health.py `cause_of`), in words.
_KIND_MEANINGS = {
    "ecc_dbe": "uncorrectable (double-bit) ECC error",
    "ecc_sbe": "correctable (single-bit) ECC errors",
    "device_lost": "device lost: fell off the bus",
    "thermal": "thermal slowdown or shutdown threshold",
    "hang": "device stuck: no progress",
    "vendor": "vendor-specific device error",
    "row_remap_pending": "memory rows wait for a GPU reset to be remapped",
    "row_remap_failed": "memory row remapping failed: the device needs replacing",
    "recovered": "the condition cleared (passing health check)",
    "heartbeat": "agent heartbeat lost: node silent past its timeout",
    "node_lost": "node lost: disconnected past its grace period, its gangs moved",
    "lemon": "lemon node: repeated hardware failures",
    "operator": "an operator's action",
}

_EXIT = re.compile(r"exited with code (-?\d+)")
_KILLED = re.compile(r"killed by (SIG[A-Z0-9]+|signal \d+)")
_XID = re.compile(r"^xid:(\d+)")


@dataclass(frozen=True)
class Code:
    code: str  # grouping key: "xid:79", "ecc_dbe", "heartbeat", "exit:1", "signal:SIGKILL", "hang"
    signal: str  # the signal column's word: "XID 79", "ECC", "heartbeat", "exit code 1", "hang"
    meaning: str


def xid_name(number: int) -> str:
    entry = packaged_table().xids.get(number)
    return entry.name if entry is not None else "not in Corral's XID table"


def classify_cause(cause: str) -> Code:
    """A failure's or health event's cause string, as a code with its meaning."""
    text = cause.strip()
    lowered = text.lower()
    if m := _XID.match(lowered):
        number = int(m.group(1))
        return Code(f"xid:{number}", f"XID {number}", xid_name(number))
    kind = lowered.split(":", 1)[0].strip()
    if kind in ("ecc_dbe", "ecc_sbe"):
        return Code(kind, "ECC", _KIND_MEANINGS[kind])
    if kind.startswith("row_remap"):
        return Code(kind, "row remap", _KIND_MEANINGS.get(kind, "row remapping"))
    if kind == "thermal":
        return Code(kind, "thermal", _KIND_MEANINGS[kind])
    if kind == "node_lost":
        return Code(kind, "heartbeat", _KIND_MEANINGS[kind])
    if lowered.startswith("heartbeat") or " lost: no contact" in lowered:
        return Code("heartbeat", "heartbeat", _KIND_MEANINGS["heartbeat"])
    if lowered.startswith("hang"):
        return Code("hang", "hang", "job hang: no progress reported within its hang timeout")
    if m := _EXIT.search(text):
        status = m.group(1)
        return Code(f"exit:{status}", f"exit code {status}", f"a worker exited with code {status}")
    if m := _KILLED.search(text):
        name = m.group(1)
        return Code(f"signal:{name}", name, f"a worker was killed by {name}")
    if "failed to start" in lowered:
        return Code("start", "start", "a worker failed to start")
    if kind in _KIND_MEANINGS:
        return Code(kind, kind.replace("_", " "), _KIND_MEANINGS[kind])
    return Code(kind or "unknown", kind or "unknown", text or "no cause recorded")
