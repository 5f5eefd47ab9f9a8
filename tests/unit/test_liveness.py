"""When a node counts as gone: the heartbeat timeout and the grace period, by hand."""

from __future__ import annotations

from scheduler.reliability.liveness import LivenessConfig, LivenessKind, NodeLiveness, liveness_actions

CONFIG = LivenessConfig(heartbeat_timeout_s=10, grace_s=30)


def kinds(nodes: list[NodeLiveness], now: float) -> list[tuple[str, LivenessKind]]:
    return [(a.node, a.kind) for a in liveness_actions(nodes, now, CONFIG)]


def test_a_silent_stream_is_closed_after_the_heartbeat_timeout() -> None:
    n = NodeLiveness("a", connected=True, last_heard=100.0, holds_work=True)
    assert kinds([n], 109.9) == []
    assert kinds([n], 110.1) == [("a", LivenessKind.CLOSE_STREAM)]


def test_a_disconnected_node_keeps_its_work_through_the_grace_period() -> None:
    n = NodeLiveness("a", connected=False, last_heard=100.0, holds_work=True)
    assert kinds([n], 129.0) == []  # a reconnect now keeps the workers
    (action,) = liveness_actions([n], 131.0, CONFIG)
    assert (
        action.kind is LivenessKind.NODE_LOST and "no contact for 31 s (grace period 30 s)" in action.reason
    )


def test_lost_once_and_only_when_there_is_work_to_move() -> None:
    idle = NodeLiveness("idle", connected=False, last_heard=0.0, holds_work=False)
    done = NodeLiveness("done", connected=False, last_heard=0.0, holds_work=True, lost_declared=True)
    assert kinds([idle, done], 1000.0) == []


def test_config_refuses_a_timeout_shorter_than_three_telemetry_intervals() -> None:
    assert LivenessConfig(heartbeat_timeout_s=2).problems(1.0)
    assert LivenessConfig(grace_s=-1).problems(1.0)
    assert CONFIG.problems(1.0) == []
