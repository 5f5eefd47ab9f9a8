"""Pure rule for how one health event changes a device's health.

The fault-tolerance work replaces this with a full state machine (flapping, history, lemon
nodes); the rule here is the part it keeps: events only make a device worse, and only an
explicit recovery makes it healthy again.
"""

from __future__ import annotations

from corral.v1 import common_pb2

HEALTH_ORDER = ("HEALTHY", "SUSPECT", "UNHEALTHY")
_SEVERITY_TO_HEALTH = {
    common_pb2.SEVERITY_CRITICAL: "UNHEALTHY",
    common_pb2.SEVERITY_WARNING: "SUSPECT",
}


def device_health_after(current: str, event: common_pb2.HealthEvent) -> str | None:
    """The device's new health, or None when the event does not change it."""
    if event.kind == common_pb2.HEALTH_EVENT_KIND_RECOVERED:
        return "HEALTHY" if current != "HEALTHY" else None
    new = _SEVERITY_TO_HEALTH.get(event.severity)
    if new is None or HEALTH_ORDER.index(new) <= HEALTH_ORDER.index(current):
        return None
    return new


def describe_health_event(node_name: str, event: common_pb2.HealthEvent) -> str:
    kind = common_pb2.HealthEventKind.Name(event.kind).removeprefix("HEALTH_EVENT_KIND_")
    severity = common_pb2.Severity.Name(event.severity).removeprefix("SEVERITY_")
    code = f" {event.code}" if event.code else ""
    injected = " (injected)" if event.injected else ""
    return f"device {event.device_index} on {node_name}: {kind}{code} {severity}{injected}: {event.message}"
