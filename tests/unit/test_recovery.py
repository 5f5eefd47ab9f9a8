"""Recovery policy: tenacity backoff, and restart-or-fail decisions by blame and budget."""

from __future__ import annotations

import random

import pytest

from scheduler.reliability.blame import AttemptFailure
from scheduler.reliability.recovery import RecoveryDecision, RecoveryPolicy, backoff_s, decide_recovery
from scheduler.reliability.signals import Blame, Observation, Signal, classify, from_worker_exit

SEGV = classify(from_worker_exit(0, signal=11))
SIGKILL = classify(from_worker_exit(0, signal=9))
XID79 = classify(Observation("xid", 79))

POLICY = RecoveryPolicy()


def fail(attempt: int, nodes: str, *signals: Signal, healthy: bool = True) -> AttemptFailure:
    return AttemptFailure(attempt, signals, frozenset(nodes.split(",")), healthy, at=float(attempt))


def test_backoff_doubles_from_initial_and_is_capped() -> None:
    assert [backoff_s(n, POLICY) for n in range(9)] == [0.0, 1, 2, 4, 8, 16, 32, 60, 60]
    p = RecoveryPolicy(backoff_initial_s=0.5, backoff_multiplier=3.0, backoff_max_s=10.0)
    assert [backoff_s(n, p) for n in (1, 2, 3, 4, 50)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_backoff_jitter_within_bounds_and_seeded() -> None:
    p = RecoveryPolicy(backoff_jitter_s=3.0)
    rng = random.Random(7)
    draws = [backoff_s(2, p, rng) for _ in range(200)]
    assert all(2.0 <= d <= 5.0 for d in draws)
    assert max(draws) - min(draws) > 1.0  # it does vary
    again = random.Random(7)
    assert draws == [backoff_s(2, p, again) for _ in range(200)]
    # tenacity's own wait_random (module-level generator) when no rng is given
    assert 60.0 <= backoff_s(30, p) <= 63.0


def test_policy_problems_name_fields() -> None:
    assert RecoveryPolicy().problems() == []
    bad = RecoveryPolicy(
        backoff_initial_s=-1,
        backoff_max_s=-2,
        backoff_multiplier=0.5,
        backoff_jitter_s=-1,
        same_failure_limit=0,
        hardware_restart_limit=-1,
    )
    text = "\n".join(bad.problems())
    for name in (
        "backoff_initial_s",
        "backoff_max_s",
        "backoff_multiplier",
        "backoff_jitter_s",
        "same_failure_limit",
        "hardware_restart_limit",
    ):
        assert name in text


def test_hardware_failure_excludes_node_and_spends_no_restart() -> None:
    d = decide_recovery(
        [fail(1, "a", XID79)],
        restarts_used=5,
        hardware_restarts_used=0,
        max_restarts=5,
        consecutive_failures=3,
        policy=POLICY,
        implicated_nodes=frozenset({"a"}),
    )
    assert d.restart and not d.counts_as_restart and d.blame is Blame.HARDWARE
    assert d.exclude_nodes == {"a"} and d.avoid_nodes == frozenset()
    assert d.delay_s == 4.0 and d.failure_class == "xid:bus"
    assert "without a" in d.reason and "not counted against max_restarts" in d.reason


def test_hardware_restarts_are_bounded() -> None:
    p = RecoveryPolicy(hardware_restart_limit=2)
    d = decide_recovery(
        [fail(1, "a", XID79)],
        restarts_used=0,
        hardware_restarts_used=2,
        max_restarts=5,
        consecutive_failures=1,
        policy=p,
        implicated_nodes=frozenset({"a"}),
    )
    assert not d.restart and d.blame is Blame.HARDWARE and "hardware_restart_limit 2" in d.reason


@pytest.mark.parametrize(("signal", "blame"), [(SEGV, Blame.JOB), (SIGKILL, Blame.UNKNOWN)])
def test_job_and_unknown_failures_spend_max_restarts_and_avoid_nodes(signal: Signal, blame: Blame) -> None:
    d = decide_recovery(
        [fail(1, "a,b", signal)],
        restarts_used=1,
        hardware_restarts_used=0,
        max_restarts=5,
        consecutive_failures=1,
        policy=POLICY,
        implicated_nodes=frozenset(),
    )
    assert d.restart and d.counts_as_restart and d.blame is blame
    assert d.avoid_nodes == {"a", "b"} and d.exclude_nodes == frozenset()
    assert d.delay_s == 1.0 and "restarting (2/5)" in d.reason


def test_max_restarts_exhausted_fails_the_job() -> None:
    d = decide_recovery(
        [fail(1, "a", SEGV)],
        restarts_used=3,
        hardware_restarts_used=0,
        max_restarts=3,
        consecutive_failures=1,
        policy=POLICY,
        implicated_nodes=frozenset(),
    )
    assert not d.restart and not d.counts_as_restart and d.blame is Blame.JOB
    assert d.reason.endswith("(max_restarts 3 used)")


def after(history: list[AttemptFailure], policy: RecoveryPolicy) -> RecoveryDecision:
    return decide_recovery(
        history,
        restarts_used=len(history) - 1,
        hardware_restarts_used=0,
        max_restarts=100,
        consecutive_failures=len(history),
        policy=policy,
        implicated_nodes=frozenset(),
    )


def test_gives_up_after_same_failure_on_disjoint_healthy_sets() -> None:
    history = [fail(1, "a", SEGV), fail(2, "b", SEGV), fail(3, "c", SEGV)]
    assert after(history[:2], POLICY).restart
    d = after(history, POLICY)
    assert not d.restart and d.blame is Blame.JOB and d.failure_class == "signal:SIGSEGV"
    assert "failed the same way" in d.reason and "the job, not the hardware" in d.reason
    # a higher limit keeps it going; the same node three times is no evidence either
    assert after(history, RecoveryPolicy(same_failure_limit=4)).restart
    assert after([fail(i, "a", SEGV) for i in (1, 2, 3)], POLICY).restart


def test_hardware_failures_never_give_up_on_the_job() -> None:
    history = [fail(i, n, XID79) for i, n in enumerate("abcde", 1)]
    d = decide_recovery(
        history,
        restarts_used=0,
        hardware_restarts_used=4,
        max_restarts=0,
        consecutive_failures=5,
        policy=POLICY,
        implicated_nodes=frozenset({"e"}),
    )
    assert d.restart and not d.counts_as_restart and d.delay_s == 16.0


def test_unhealthy_hardware_without_a_named_node_is_avoided() -> None:
    d = decide_recovery(
        [fail(1, "a,b", SIGKILL, healthy=False)],
        restarts_used=0,
        hardware_restarts_used=0,
        max_restarts=0,
        consecutive_failures=1,
        policy=POLICY,
        implicated_nodes=frozenset(),
    )
    assert d.restart and d.blame is Blame.HARDWARE and d.avoid_nodes == {"a", "b"}
    assert d.exclude_nodes == frozenset()
