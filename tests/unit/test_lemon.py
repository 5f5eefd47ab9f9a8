"""Lemon nodes: repeated hardware failures on one node, across jobs, within a window."""

from __future__ import annotations

from scheduler.reliability.lemon import DAY_S, FailureRecord, LemonPolicy, find_lemons
from scheduler.reliability.signals import Blame

HW, JOB = Blame.HARDWARE, Blame.JOB
NOW = 30 * DAY_S


def rec(days_ago: float, job: str, node: str = "n7", blame: Blame = HW, attempt: int = 1) -> FailureRecord:
    return FailureRecord(
        NOW - days_ago * DAY_S, job, attempt, frozenset({node}), blame, (f"XID 48 on {node}",)
    )


def test_three_hardware_failures_across_jobs_make_a_lemon_with_evidence() -> None:
    failures = [rec(6, "j1"), rec(3, "j2"), rec(1, "j3"), rec(2, "j1", node="n8")]
    [lemon] = find_lemons(failures, NOW)
    assert lemon.node == "n7"
    assert [(f.job_id, f.at) for f in lemon.evidence] == [
        ("j1", NOW - 6 * DAY_S),
        ("j2", NOW - 3 * DAY_S),
        ("j3", NOW - 1 * DAY_S),
    ]
    assert lemon.jobs == ("j1", "j2", "j3")
    text = lemon.describe()
    assert text.startswith("n7: 3 hardware failures across 3 jobs")
    assert "job j2 attempt 1: XID 48 on n7" in text


def test_not_a_lemon() -> None:
    cases = {
        "two failures": [rec(1, "j1"), rec(2, "j2")],
        "one outside the window": [rec(8, "j1"), rec(2, "j2"), rec(1, "j3")],
        "job-blamed": [rec(1, "j1"), rec(2, "j2"), rec(3, "j3", blame=JOB)],
        "unknown": [rec(1, "j1"), rec(2, "j2"), rec(3, "j3", blame=Blame.UNKNOWN)],
        "one job only": [rec(1, "j1", attempt=1), rec(2, "j1", attempt=2), rec(3, "j1", attempt=3)],
        "one attempt counted once": [rec(1, "j1"), rec(1.5, "j1"), rec(2, "j2")],
        "in the future": [rec(1, "j1"), rec(2, "j2"), rec(-1, "j3")],
    }
    for name, failures in cases.items():
        assert find_lemons(failures, NOW) == [], name


def test_single_job_cluster_can_lower_the_distinct_jobs_guard() -> None:
    failures = [rec(1, "j1", attempt=1), rec(2, "j1", attempt=2), rec(3, "j1", attempt=3)]
    assert [v.node for v in find_lemons(failures, NOW, LemonPolicy(min_distinct_jobs=1))] == ["n7"]


def test_a_failure_pinned_to_two_nodes_counts_for_both() -> None:
    both = FailureRecord(NOW - DAY_S, "j3", 1, frozenset({"n7", "n8"}), HW, ("XID 74",))
    failures = [rec(2, "j1"), rec(3, "j2"), rec(2, "j1", node="n8"), rec(3, "j2", node="n8"), both]
    assert [v.node for v in find_lemons(failures, NOW)] == ["n7", "n8"]
