"""Device and node health: HEALTHY → SUSPECT → UNHEALTHY, plus QUARANTINED for lemon nodes.

Transitions are pure functions of (record, input, now) returning the new record and the history
entry they made; `HealthBook` only holds the records. The rules:

- Only hardware-blamed signals touch hardware health. A job's fault never does, and an
  `unknown` one waits for blame.py to settle it, so a job crashing in a loop cannot cordon the
  fleet one node at a time.
- A warning or an early warning makes a HEALTHY record SUSPECT; a critical signal makes it
  UNHEALTHY (the caller cordons). Signals never make a record better.
- Back to HEALTHY only by an explicit input: a passing health check or an operator's clear.
- Flapping: when a record degrades for the `flap_limit`-th time within `flap_window_s` of as
  many recoveries, it goes UNHEALTHY and is pinned; a passing health check no longer clears
  it, only an operator does. Defaults: 3 recoveries within 24 h, so a device that a reset
  "fixes" three times a day is taken out for a person to look at.
- QUARANTINED (lemon nodes, lemon.py) is only entered and left by explicit inputs.
- History is bounded (`history_limit`, oldest dropped) so a flapping device cannot grow its
  record without end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from scheduler.reliability.signals import Blame, Component, Severity, Signal


class Health(StrEnum):
    HEALTHY = "HEALTHY"
    SUSPECT = "SUSPECT"
    UNHEALTHY = "UNHEALTHY"
    QUARANTINED = "QUARANTINED"


_RANK = {Health.HEALTHY: 0, Health.SUSPECT: 1, Health.UNHEALTHY: 2, Health.QUARANTINED: 3}


@dataclass(frozen=True)
class FlapPolicy:
    flap_limit: int = 3
    flap_window_s: float = 24 * 3600.0
    history_limit: int = 50


DEFAULT_POLICY = FlapPolicy()


@dataclass(frozen=True)
class HistoryEntry:
    at: float
    from_state: Health
    to_state: Health
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "from": self.from_state, "to": self.to_state, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HistoryEntry:
        return cls(float(d["at"]), Health(d["from"]), Health(d["to"]), str(d["reason"]))


@dataclass(frozen=True)
class HealthRecord:
    state: Health = Health.HEALTHY
    history: tuple[HistoryEntry, ...] = ()
    # When the record last returned to HEALTHY by a health check: flapping counts these.
    recoveries: tuple[float, ...] = ()
    # Set by flapping: only an operator may clear it.
    pinned: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "history": [h.to_dict() for h in self.history],
            "recoveries": list(self.recoveries),
            "pinned": self.pinned,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HealthRecord:
        return cls(
            Health(d["state"]),
            tuple(HistoryEntry.from_dict(h) for h in d.get("history", [])),
            tuple(float(t) for t in d.get("recoveries", [])),
            bool(d.get("pinned", False)),
        )


Step = tuple[HealthRecord, HistoryEntry | None]


def target_state(signal: Signal) -> Health | None:
    """The state a hardware signal pushes toward, or None when it must not touch health."""
    if signal.blame is not Blame.HARDWARE or signal.component is Component.JOB:
        return None
    if signal.severity is Severity.CRITICAL:
        return Health.UNHEALTHY
    if signal.early_warning or signal.severity is Severity.WARNING:
        return Health.SUSPECT
    return None


def apply_signal(
    record: HealthRecord, signal: Signal, now: float, policy: FlapPolicy = DEFAULT_POLICY
) -> Step:
    target = target_state(signal)
    if target is None or _RANK[target] <= _RANK[record.state]:
        return record, None
    if record.state is Health.HEALTHY:
        recent = [t for t in record.recoveries if now - t <= policy.flap_window_s]
        if len(recent) >= policy.flap_limit:
            why = (
                f"{signal.reason}; flapping: {len(recent)} recoveries within"
                f" {policy.flap_window_s:g} s, held until an operator clears it"
            )
            return _move(replace(record, pinned=True), Health.UNHEALTHY, why, now, policy)
    return _move(record, target, signal.reason, now, policy)


def health_check_passed(
    record: HealthRecord, now: float, detail: str = "", policy: FlapPolicy = DEFAULT_POLICY
) -> Step:
    """A passing check clears SUSPECT/UNHEALTHY, but not a pinned (flapping) or quarantined record."""
    if record.state is Health.HEALTHY or record.pinned or record.state is Health.QUARANTINED:
        return record, None
    kept = tuple(t for t in record.recoveries if now - t <= policy.flap_window_s)
    reason = f"health check passed{': ' + detail if detail else ''}"
    return _move(replace(record, recoveries=(*kept, now)), Health.HEALTHY, reason, now, policy)


def operator_clear(
    record: HealthRecord, now: float, who: str = "operator", policy: FlapPolicy = DEFAULT_POLICY
) -> Step:
    """An operator's word resets everything, the flap count included: they have looked."""
    if record.state is Health.HEALTHY and not record.pinned:
        return record, None
    cleared = replace(record, pinned=False, recoveries=())
    return _move(cleared, Health.HEALTHY, f"cleared by {who}", now, policy)


def quarantine(record: HealthRecord, now: float, reason: str, policy: FlapPolicy = DEFAULT_POLICY) -> Step:
    if record.state is Health.QUARANTINED:
        return record, None
    return _move(record, Health.QUARANTINED, reason, now, policy)


def _move(record: HealthRecord, to: Health, reason: str, now: float, policy: FlapPolicy) -> Step:
    entry = HistoryEntry(now, record.state, to, reason)
    history = (*record.history, entry)[-policy.history_limit :]
    return replace(record, state=to, history=history), entry


DeviceKey = tuple[str, int]


@dataclass
class HealthBook:
    """Per-device and per-node records. A device's effective health is the worse of its own and
    its node's, since a node that is down takes its devices with it."""

    policy: FlapPolicy = DEFAULT_POLICY
    devices: dict[DeviceKey, HealthRecord] = field(default_factory=dict)
    nodes: dict[str, HealthRecord] = field(default_factory=dict)

    def device(self, node: str, index: int) -> HealthRecord:
        return self.devices.get((node, index), HealthRecord())

    def node(self, node: str) -> HealthRecord:
        return self.nodes.get(node, HealthRecord())

    def device_health(self, node: str, index: int) -> Health:
        own, host = self.device(node, index).state, self.node(node).state
        return own if _RANK[own] >= _RANK[host] else host

    def observe(self, node: str, signal: Signal, now: float) -> list[HistoryEntry]:
        """Apply a signal where it belongs: a node-level one to the node (and the device that
        reported it, so that device stays out after the node returns); device and network ones
        to the reporting device, or to the node when no device is named."""
        entries: list[HistoryEntry] = []
        index = signal.device_index
        if signal.component is Component.NODE or index is None:
            entries += self._step_node(node, apply_signal(self.node(node), signal, now, self.policy))
        if index is not None:
            entries += self._step_device(
                node, index, apply_signal(self.device(node, index), signal, now, self.policy)
            )
        return entries

    def check_passed(self, node: str, index: int | None, now: float, detail: str = "") -> list[HistoryEntry]:
        if index is None:
            return self._step_node(node, health_check_passed(self.node(node), now, detail, self.policy))
        return self._step_device(
            node, index, health_check_passed(self.device(node, index), now, detail, self.policy)
        )

    def clear(self, node: str, index: int | None, now: float, who: str = "operator") -> list[HistoryEntry]:
        if index is None:
            return self._step_node(node, operator_clear(self.node(node), now, who, self.policy))
        return self._step_device(node, index, operator_clear(self.device(node, index), now, who, self.policy))

    def quarantine_node(self, node: str, now: float, reason: str) -> list[HistoryEntry]:
        return self._step_node(node, quarantine(self.node(node), now, reason, self.policy))

    def _step_node(self, node: str, step: Step) -> list[HistoryEntry]:
        record, entry = step
        if entry is None:
            return []
        self.nodes[node] = record
        return [entry]

    def _step_device(self, node: str, index: int, step: Step) -> list[HistoryEntry]:
        record, entry = step
        if entry is None:
            return []
        self.devices[(node, index)] = record
        return [entry]

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able data; `restore` reads it back."""
        return {
            "nodes": {name: r.to_dict() for name, r in sorted(self.nodes.items())},
            "devices": [{"node": n, "index": i, **r.to_dict()} for (n, i), r in sorted(self.devices.items())],
        }

    @classmethod
    def restore(cls, data: dict[str, Any], policy: FlapPolicy | None = None) -> HealthBook:
        book = cls(policy or FlapPolicy())
        book.nodes = {name: HealthRecord.from_dict(r) for name, r in data.get("nodes", {}).items()}
        book.devices = {
            (d["node"], int(d["index"])): HealthRecord.from_dict(d) for d in data.get("devices", [])
        }
        return book
