"""Is a node still there? Pure rules over when each node was last heard from.

Two clocks, because they answer different questions:
- **heartbeat timeout**: a connected stream that has carried nothing (not even the telemetry an
  agent sends every interval) for this long is dead even if TCP has not noticed — a hung agent,
  a half-open connection. The control plane closes it, so the node counts as disconnected.
- **grace period**: a node that stays disconnected this long has lost its workers as far as
  the gangs are concerned, and they are moved. Shorter than that, a blip (a network hiccup, a
  control-plane restart seen from the agent) costs nothing: the agent reconnects, reports its
  workers, and reconciliation keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LivenessKind(StrEnum):
    CLOSE_STREAM = "close_stream"  # silent past the heartbeat timeout
    NODE_LOST = "node_lost"  # disconnected past the grace period, with work on it


@dataclass(frozen=True)
class NodeLiveness:
    name: str
    connected: bool
    last_heard: float  # last message while connected; the moment it went away otherwise
    holds_work: bool  # workers of unfinished attempts are recorded on it
    lost_declared: bool = False  # already declared lost since it went away


@dataclass(frozen=True)
class LivenessAction:
    kind: LivenessKind
    node: str
    silent_s: float
    reason: str


@dataclass(frozen=True)
class LivenessConfig:
    heartbeat_timeout_s: float = 10.0
    grace_s: float = 30.0

    def problems(self, telemetry_interval_s: float) -> list[str]:
        out = []
        if self.heartbeat_timeout_s < 3 * telemetry_interval_s:
            out.append(
                f"heartbeat timeout {self.heartbeat_timeout_s:g} s: must be at least 3 telemetry intervals "
                f"({3 * telemetry_interval_s:g} s), or every slow sample would drop a healthy node"
            )
        if self.grace_s < 0:
            out.append(f"node grace period {self.grace_s:g} s: must be ≥ 0")
        return out


def liveness_actions(nodes: list[NodeLiveness], now: float, config: LivenessConfig) -> list[LivenessAction]:
    actions = []
    for n in nodes:
        silent = now - n.last_heard
        if n.connected and silent > config.heartbeat_timeout_s:
            actions.append(
                LivenessAction(
                    LivenessKind.CLOSE_STREAM,
                    n.name,
                    silent,
                    f"node {n.name} silent for {silent:.0f} s "
                    f"(heartbeat timeout {config.heartbeat_timeout_s:g} s)",
                )
            )
        elif not n.connected and n.holds_work and not n.lost_declared and silent > config.grace_s:
            actions.append(
                LivenessAction(
                    LivenessKind.NODE_LOST,
                    n.name,
                    silent,
                    f"node {n.name} lost: no contact for {silent:.0f} s (grace period {config.grace_s:g} s)",
                )
            )
    return actions
