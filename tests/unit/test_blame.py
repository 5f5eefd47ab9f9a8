"""Blame: hardware or job, and when a job that keeps failing the same way is given up on."""

from __future__ import annotations

import pytest

from scheduler.reliability.blame import AttemptFailure, attribute, decide
from scheduler.reliability.health_state import Health, HealthBook
from scheduler.reliability.signals import Blame, Observation, Signal, classify, from_worker_exit

SEGV = classify(from_worker_exit(0, signal=11))
EXIT1 = classify(from_worker_exit(1))
EXIT2 = classify(from_worker_exit(2))
SIGKILL = classify(from_worker_exit(0, signal=9))
XID13 = classify(Observation("xid", 13))
XID31 = classify(Observation("xid", 31))
XID79 = classify(Observation("xid", 79))
XID94 = classify(Observation("xid", 94))


def fail(attempt: int, nodes: str, *signals: Signal, healthy: bool = True) -> AttemptFailure:
    return AttemptFailure(attempt, signals, frozenset(nodes.split(",")), healthy, at=float(attempt))


@pytest.mark.parametrize(
    ("failure", "blame"),
    [
        (fail(1, "a", SEGV), Blame.JOB),
        (fail(1, "a", XID13, EXIT1), Blame.JOB),
        (fail(1, "a", XID79, EXIT1), Blame.HARDWARE),  # hardware outranks the exit it caused
        (fail(1, "a", XID94, SEGV), Blame.HARDWARE),
        (fail(1, "a", SIGKILL), Blame.UNKNOWN),
        (fail(1, "a", SIGKILL, healthy=False), Blame.HARDWARE),
        (fail(1, "a", healthy=False), Blame.HARDWARE),
        (fail(1, "a"), Blame.UNKNOWN),
    ],
)
def test_attribute(failure: AttemptFailure, blame: Blame) -> None:
    assert attribute(failure)[0] is blame


def test_gives_up_after_three_same_failures_on_different_healthy_nodes() -> None:
    history = [fail(1, "a", SEGV), fail(2, "b", SEGV)]
    v = decide(history)
    assert (v.blame, v.give_up) == (Blame.JOB, False)
    assert "2/3" in v.reason
    v = decide([*history, fail(3, "c", SEGV)])
    assert (v.blame, v.give_up, v.failure_class) == (Blame.JOB, True, "signal:SIGSEGV")
    assert "3 different healthy hardware sets" in v.reason and "a; b; c" in v.reason


def test_xids_of_one_group_are_the_same_way() -> None:
    v = decide([fail(1, "a", XID13), fail(2, "b", XID31), fail(3, "c", XID13)])
    assert v.give_up and v.failure_class == "xid:app_fault"


def test_unknown_becomes_the_jobs_by_repetition() -> None:
    v = decide([fail(1, "a", SIGKILL), fail(2, "b", SIGKILL), fail(3, "c", SIGKILL)])
    assert (v.blame, v.give_up) == (Blame.JOB, True)


@pytest.mark.parametrize(
    "history",
    [
        # Unhealthy hardware never counts against the job.
        [fail(1, "a", SEGV), fail(2, "b", SEGV, healthy=False), fail(3, "c", SEGV)],
        # The same node three times is one hardware set.
        [fail(1, "a", SEGV), fail(2, "a", SEGV), fail(3, "a", SEGV)],
        # Overlapping sets share a possible culprit.
        [fail(1, "a,b", SEGV), fail(2, "b,c", SEGV), fail(3, "b,d", SEGV)],
        # Different ways of failing are not "the same way".
        [fail(1, "a", SEGV), fail(2, "b", EXIT1), fail(3, "c", EXIT2)],
        # Hardware failures never make the job give up.
        [fail(1, "a", XID79), fail(2, "b", XID79), fail(3, "c", XID79)],
    ],
)
def test_does_not_give_up(history: list[AttemptFailure]) -> None:
    assert not decide(history).give_up


def test_hardware_verdict() -> None:
    v = decide([fail(1, "a", XID79, EXIT1)])
    assert (v.blame, v.give_up) == (Blame.HARDWARE, False)
    assert "fallen off the bus" in v.reason


def test_hardware_of_job_blamed_failures_stays_healthy() -> None:
    book = HealthBook()
    history = [fail(i, n, XID13, SEGV) for i, n in enumerate("abc", 1)]
    for f in history:
        for s in f.signals:
            for node in f.hardware:
                book.observe(node, s, f.at)
    assert decide(history).give_up
    assert all(book.node(n).state is Health.HEALTHY for n in "abc")


def test_decide_needs_a_failure() -> None:
    with pytest.raises(ValueError):
        decide([])


def test_limit_is_a_parameter() -> None:
    assert decide([fail(1, "a", SEGV), fail(2, "b", SEGV)], same_failure_limit=2).give_up
