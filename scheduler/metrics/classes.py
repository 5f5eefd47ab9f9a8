"""Bounded label values for the control plane's metrics, from free-form state.

Prometheus labels must come from small fixed sets: a node's many marks fold into one state,
and a pending job's reason (a sentence naming sizes and quotas) into one reason class. Pure
functions, so the sets are tested once and the exporter only loops.
"""

from __future__ import annotations

# In precedence order: the first that applies is the node's state.
NODE_STATES = ("lost", "disconnected", "quarantined", "unhealthy", "draining", "cordoned", "suspect", "ready")

# Pending reasons, most specific first; the first whose marker is in the reason text wins.
# The markers are the words scheduler/queueing and scheduler/power write (see their tests).
_PENDING_MARKERS: tuple[tuple[str, str], ...] = (
    ("unknown queue", "unknown_queue"),
    ("waiting for power", "power"),
    ("after a failure", "recovering"),
    ("preempted for it to stop", "preempting"),
    ("to make room", "preempting"),
    (" at quota ", "quota"),
    ("no connected device matches", "no_matching_devices"),
    ("reserved ", "reserved"),
    ("largest free block", "capacity"),
    ("it would fit now", "quota"),
    ("requeued: ", "requeued"),
    ("waiting for placement", "not_yet_tried"),
)
PENDING_REASONS = (*dict.fromkeys(cls for _, cls in _PENDING_MARKERS), "other")


def node_state(
    *,
    connected: bool,
    lost: bool,
    health: str,
    draining: bool,
    cordoned: bool,
) -> str:
    """One of NODE_STATES. `health` is the node's HealthBook state (HEALTHY, SUSPECT, ...)."""
    if lost:
        return "lost"
    if not connected:
        return "disconnected"
    if health == "QUARANTINED":
        return "quarantined"
    if health == "UNHEALTHY":
        return "unhealthy"
    if draining:
        return "draining"
    if cordoned:
        return "cordoned"
    if health == "SUSPECT":
        return "suspect"
    return "ready"


def pending_reason(reason: str) -> str:
    """One of PENDING_REASONS for a pending job's `reason` text."""
    for marker, cls in _PENDING_MARKERS:
        if marker in reason:
            return cls
    return "other"
