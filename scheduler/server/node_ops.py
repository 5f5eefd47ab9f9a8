"""Operator actions on nodes: cordon, uncordon, drain, and fault injection (simulated only)."""

from __future__ import annotations

from corral.v1 import agent_pb2

from scheduler.server.controlplane import ControlPlane, FailedPrecondition, NotFound
from scheduler.server.nodes import NodeRuntime


def cordon(cp: ControlPlane, name: str, reason: str) -> NodeRuntime:
    rt = cp.node(name)
    cp.nodes.set_marks(name, cordoned=True, draining=rt.record.draining, reason=reason or "cordoned")
    cp.record_event("node", f"node {name} cordoned: {reason or 'no reason given'}", node_name=name)
    return rt


def uncordon(cp: ControlPlane, name: str) -> NodeRuntime:
    rt = cp.node(name)
    if rt.record.draining and rt.session is not None:
        rt.session.send(drain=agent_pb2.Drain(lift=True))
    cp.nodes.set_marks(name, cordoned=False, draining=False, reason="")
    cp.record_event("node", f"node {name} uncordoned", node_name=name)
    cp.kick()
    return rt


def drain(cp: ControlPlane, name: str, reason: str) -> NodeRuntime:
    """Cordon, then move every gang with a worker here: a fresh checkpoint first (the job is
    CHECKPOINTING until it arrives or the timeout passes), then stop and requeue.

    A drained job is requeued without spending one of its restarts: the move is the
    operator's doing, not the job's fault.
    """
    rt = cp.node(name)
    why = reason or "drained by operator"
    cp.nodes.set_marks(name, cordoned=True, draining=True, reason=why)
    cp.record_event("node", f"node {name} draining: {why}", node_name=name)
    if rt.session is not None:
        rt.session.send(drain=agent_pb2.Drain(reason=why))
    for job, attempt in cp.attempts_on(name, None):
        cp.ft.move(job, attempt, f"node {name} is draining ({why})")
    return rt


def inject_fault(cp: ControlPlane, name: str, device_index: int, fault: str) -> str:
    rt = cp.node(name)
    device = rt.devices_by_index.get(device_index)
    if device is None:
        raise NotFound(f"node {name} has no device {device_index} (it has {sorted(rt.devices_by_index)})")
    if not device.simulated:
        raise FailedPrecondition(
            f"device {device_index} on {name} is a real device; "
            "faults are injected only into simulated devices"
        )
    if rt.session is None:
        raise FailedPrecondition(f"node {name} is not connected")
    seq = rt.session.send(inject_fault=agent_pb2.InjectFault(device_index=device_index, fault=fault))
    cp.record_event("node", f"fault {fault} injected into device {device_index} on {name}", node_name=name)
    return f"fault {fault} sent to {name} device {device_index} (command {seq})"


def clear_health(cp: ControlPlane, name: str, device_index: int | None, reason: str) -> NodeRuntime:
    """An operator's word that a node (device_index None: and all its devices) or one device
    is fine. Checked here so that a typo is refused by name rather than clearing nothing."""
    rt = cp.node(name)
    if device_index is not None and device_index not in rt.devices_by_index:
        raise NotFound(f"node {name} has no device {device_index} (it has {sorted(rt.devices_by_index)})")
    cp.clear_health(name, device_index, reason)
    return rt
