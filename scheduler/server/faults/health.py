"""Device and node health in the live control plane.

An agent's HealthEvent is classified by the signal table (`signals.classify`), moved through
the `HealthBook` state machine, persisted, mirrored into the node registry (what placement
reads) and logged; a node that turns UNHEALTHY or QUARANTINED is cordoned. What that means for
the gangs on the device (fail them, or checkpoint them) is the caller's to act on: this module
only reports it as a `HealthOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from corral.v1 import common_pb2

from scheduler.model import AttemptRecord
from scheduler.reliability.health_state import Health, HealthRecord, HistoryEntry
from scheduler.reliability.signals import Blame, Signal, classify, from_health_event
from scheduler.server.nodes import NodeRuntime

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane

NODE_INDEX = -1  # the health table's index for a node's own record
# Signals seen on a device this long before a worker's failure are evidence about it.
SIGNAL_WINDOW_S = 120.0


@dataclass(frozen=True)
class HealthOutcome:
    """What one health event did to one device, for the caller to act on."""

    node: str
    index: int
    signal: Signal
    cause: str  # short and filterable: "xid:79", "ecc_dbe", "thermal"
    observed_at: float
    state: Health  # the device's health now
    changed: bool

    @property
    def fails_gangs(self) -> bool:
        return self.signal.blame is Blame.HARDWARE and self.state in (Health.UNHEALTHY, Health.QUARANTINED)

    @property
    def warns_gangs(self) -> bool:
        return self.changed and self.state is Health.SUSPECT


def seconds_of(ts: Any) -> float:
    return float(ts.seconds + ts.nanos * 1e-9)


def describe_health_event(node_name: str, event: common_pb2.HealthEvent) -> str:
    kind = common_pb2.HealthEventKind.Name(event.kind).removeprefix("HEALTH_EVENT_KIND_")
    severity = common_pb2.Severity.Name(event.severity).removeprefix("SEVERITY_")
    code = f" {event.code}" if event.code else ""
    if event.kind == common_pb2.HEALTH_EVENT_KIND_VENDOR and event.vendor:
        code = f" {event.vendor} {vendor_code_text(event.vendor, event.code)}"
    injected = " (injected)" if event.injected else ""
    return f"device {event.device_index} on {node_name}: {kind}{code} {severity}{injected}: {event.message}"


def cause_of(event: common_pb2.HealthEvent) -> str:
    kind = common_pb2.HealthEventKind.Name(event.kind).removeprefix("HEALTH_EVENT_KIND_").lower()
    if event.kind in (common_pb2.HEALTH_EVENT_KIND_XID, common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST):
        return f"xid:{event.code}" if event.code else kind
    if event.kind == common_pb2.HEALTH_EVENT_KIND_VENDOR and event.vendor:
        return f"vendor:{event.vendor}:{vendor_code_text(event.vendor, event.code)}"
    return f"{kind}:{event.code}" if event.code else kind


def vendor_code_text(vendor: str, code: int) -> str:
    """A vendor code as the vendor prints it (Ascend's in hex, 80E01801)."""
    from agents.backends.vendors.faults import fault_table

    table = fault_table(vendor)
    return table.format_code(code) if table else str(code)


class HealthTracker:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._recent: dict[tuple[str, int], list[tuple[float, Signal]]] = {}

    def load(self) -> None:
        book = self.cp.health
        for row in self.cp.store.load_health():
            record = HealthRecord.from_dict(row["record"])
            if row["idx"] == NODE_INDEX:
                book.nodes[row["node_name"]] = record
            else:
                book.devices[(row["node_name"], int(row["idx"]))] = record
        for rt in self.cp.nodes:
            self.node_registered(rt)

    def node_registered(self, rt: NodeRuntime) -> None:
        for d in rt.record.devices:
            self._sync_device(rt.record.name, d.index)

    def _sync_device(self, node: str, index: int) -> None:
        """The registry's per-device health (what placement reads) follows the book."""
        state = self.cp.health.device_health(node, index)
        shown = "UNHEALTHY" if state is Health.QUARANTINED else state.value
        self.cp.nodes.set_device_health(node, index, shown)

    def _persist(self, node: str, index: int) -> None:
        book = self.cp.health
        record = book.node(node) if index == NODE_INDEX else book.device(node, index)
        self.cp.store.save_health(node, index, record.state.value, record.to_dict())

    # --- inputs ----------------------------------------------------------------------------

    def observe(self, rt: NodeRuntime, event: common_pb2.HealthEvent) -> HealthOutcome | None:
        """Classify and apply one agent health event; None when it carries no meaning."""
        cp, name, now = self.cp, rt.record.name, self.cp.clock()
        index = int(event.device_index)
        try:
            signal = classify(from_health_event(event))
        except ValueError as exc:
            cp.record_event(
                "health",
                f"health event from {name} ignored: {exc}",
                node_name=name,
                data={"device": index, "problem": str(exc)},
            )
            return None
        cause = cause_of(event)
        cp.record_event(
            "health",
            describe_health_event(name, event),
            node_name=name,
            data={
                "device": index,
                "cause": cause,
                "blame": signal.blame.value,
                "severity": signal.severity.value,
                "component": signal.component.value,
                "early_warning": signal.early_warning,
                "action": signal.action,
            },
        )
        if event.kind == common_pb2.HEALTH_EVENT_KIND_RECOVERED:  # the agent's passing check
            entries = cp.health.check_passed(name, index, now, event.message)
        else:
            self._recent.setdefault((name, index), []).append((now, signal))
            entries = cp.health.observe(name, signal, now)
        self.apply(name, entries, [index], cause)
        observed = seconds_of(event.observed_at) if event.HasField("observed_at") else now
        state = cp.health.device_health(name, index)
        return HealthOutcome(name, index, signal, cause, observed, state, bool(entries))

    def clear(self, name: str, index: int | None, reason: str) -> None:
        """An operator's clear of one device, or (index None) of the node and all its devices."""
        cp, now = self.cp, self.cp.clock()
        rt = cp.node(name)
        who = f"operator ({reason})" if reason else "operator"
        indices = [index] if index is not None else [d.index for d in rt.record.devices]
        entries: list[HistoryEntry] = []
        if index is None:
            entries += cp.health.clear(name, None, now, who)
        for i in indices:
            entries += cp.health.clear(name, i, now, who)
            self._recent.pop((name, i), None)
        self.apply(name, entries, indices, "operator")
        if not entries:
            cp.record_event("health", f"{name}: already HEALTHY; nothing to clear", node_name=name)

    def quarantine(self, node: str, reason: str, evidence: str, cause: str = "lemon") -> None:
        """Lemon detection's quarantine (cause "lemon") or an operator's ("operator")."""
        entries = self.cp.health.quarantine_node(node, self.cp.clock(), reason)
        self.cp.record_event(
            "health",
            f"node {node} quarantined: {reason}",
            node_name=node,
            data={"cause": cause, "evidence": evidence},
        )
        rt = self.cp.nodes.get(node)
        self.apply(node, entries, [d.index for d in rt.record.devices] if rt else [], cause)

    def apply(self, node: str, entries: list[HistoryEntry], indices: list[int], cause: str) -> None:
        """Persist, mirror and log the health changes one input made; cordon a node gone bad."""
        if not entries:
            return
        cp = self.cp
        self._persist(node, NODE_INDEX)
        for index in indices:
            self._persist(node, index)
        rt = cp.nodes.get(node)
        for d in rt.record.devices if rt else []:
            self._sync_device(node, d.index)
        for entry in entries:
            subject = self._subject(node, entry, indices)
            where = f"{node}" if subject == NODE_INDEX else f"device {subject} on {node}"
            cp.record_event(
                "health",
                f"{where}: {entry.from_state} → {entry.to_state}: {entry.reason}",
                node_name=node,
                data={
                    "device": subject,
                    "from": entry.from_state,
                    "to": entry.to_state,
                    "reason": entry.reason,
                    "cause": cause,
                },
            )
        node_state = cp.health.node(node).state
        if node_state in (Health.UNHEALTHY, Health.QUARANTINED) and rt is not None and not rt.record.cordoned:
            why = f"auto-cordoned: node {node_state}: {entries[-1].reason}"
            cp.nodes.set_marks(node, cordoned=True, draining=rt.record.draining, reason=why)
            cp.record_event("node", f"node {node} {why}", node_name=node, data={"cause": cause})
        cp.kick()

    def _subject(self, node: str, entry: HistoryEntry, indices: list[int]) -> int:
        """Whose record a history entry was appended to: the node's or one device's."""
        book = self.cp.health

        def appended(history: tuple[HistoryEntry, ...]) -> bool:
            return bool(history) and history[-1] is entry  # identity: equal entries are common

        if appended(book.node(node).history):
            return NODE_INDEX
        return next((i for i in indices if appended(book.device(node, i).history)), NODE_INDEX)

    # --- queries ---------------------------------------------------------------------------

    def recent_signals(self, attempt: AttemptRecord, now: float) -> list[Signal]:
        """What the gang's devices reported shortly before now: evidence for blame."""
        return [
            s
            for w in attempt.workers
            for index in w.device_indices
            for at, s in self._recent.get((w.node_name, index), [])
            if now - at <= SIGNAL_WINDOW_S
        ]

    def gang_healthy(self, attempt: AttemptRecord) -> bool:
        return all(
            self.cp.health.device_health(w.node_name, i) is Health.HEALTHY
            for w in attempt.workers
            for i in w.device_indices
        )

    def node_healthy(self, rt: NodeRuntime) -> bool:
        name = rt.record.name
        return self.cp.health.node(name).state is Health.HEALTHY and all(
            self.cp.health.device_health(name, d.index) is Health.HEALTHY for d in rt.record.devices
        )

    def expire(self, now: float) -> None:
        for key in [
            k for k, seen in self._recent.items() if all(now - at > SIGNAL_WINDOW_S for at, _ in seen)
        ]:
            del self._recent[key]
