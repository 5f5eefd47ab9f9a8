"""`query_events`, the query behind `corral events`, against a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.store import Store
from scheduler.store.events_query import DEFAULT_LIMIT, query_events


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path)
    # A small cluster's history, at t = 100, 101, ...: two failures, a recovery, health
    # changes, node events and the routine job events `corral events` leaves out by default.
    rows: list[tuple[str, str, str | None, str | None, dict[str, object]]] = [
        ("node", "node n0 connected", None, "n0", {}),
        ("node", "node n1 connected", None, "n1", {}),
        ("state", "submitted", "j1", None, {}),
        ("worker", "rank 0 running on n0", "j1", "n0", {}),
        ("health", "n0 gpu 3 HEALTHY -> UNHEALTHY", None, "n0",
         {"device": 3, "from": "HEALTHY", "to": "UNHEALTHY", "cause": "xid:79 fell off the bus"}),
        ("failure", "attempt 1 failed: xid 79", "j1", None,
         {"cause": "XID:79 fell off the bus", "blame": "hardware", "attempt": 1, "nodes": ["n0", "n1"]}),
        ("recovery", "attempt 2 placed on spare n2", "j1", None,
         {"attempt": 2, "spares": ["n2"], "resumed_from_step": 1200}),
        ("checkpoint", "rank 0 step 1300", "j1", "n2", {"step": 1300, "complete": True}),
        ("failure", "attempt 2 failed: exit 3", "j1", "n2",
         {"cause": "exit 3", "blame": "job", "attempt": 2, "nodes": ["n2"]}),
        ("node", "node n1 disconnected", None, "n1", {}),
    ]  # fmt: skip
    for i, (kind, message, job_id, node, data) in enumerate(rows):
        s.append_event(kind, message, job_id=job_id, node_name=node, data=data, at=100.0 + i)
    yield s
    s.close()


def messages(rows: list[dict[str, object]]) -> list[object]:
    return [r["message"] for r in rows]


def test_default_kinds_leave_out_routine_job_events_oldest_first(store: Store) -> None:
    rows = query_events(store)
    assert {r["kind"] for r in rows} == {"node", "health", "failure", "recovery"}
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    assert messages(rows)[0] == "node n0 connected" and messages(rows)[-1] == "node n1 disconnected"
    assert rows[3]["data"] == {
        "cause": "XID:79 fell off the bus", "blame": "hardware", "attempt": 1, "nodes": ["n0", "n1"],
    }  # fmt: skip


def test_kinds_filter(store: Store) -> None:
    assert messages(query_events(store, kinds=["checkpoint", "state"])) == ["submitted", "rank 0 step 1300"]
    assert messages(query_events(store, kinds=["node"])) == [
        "node n0 connected",
        "node n1 connected",
        "node n1 disconnected",
    ]


def test_node_filter_includes_failures_that_name_the_node(store: Store) -> None:
    rows = query_events(store, node_name="n1")
    assert messages(rows) == ["node n1 connected", "attempt 1 failed: xid 79", "node n1 disconnected"]
    # A recovery names the spares it used.
    assert messages(query_events(store, node_name="n2")) == [
        "attempt 2 placed on spare n2",
        "attempt 2 failed: exit 3",
    ]


def test_cause_is_a_case_insensitive_substring(store: Store) -> None:
    assert messages(query_events(store, cause="xid:79")) == [
        "n0 gpu 3 HEALTHY -> UNHEALTHY",
        "attempt 1 failed: xid 79",
    ]
    assert messages(query_events(store, cause="EXIT")) == ["attempt 2 failed: exit 3"]
    assert query_events(store, cause="heartbeat") == []


def test_since_and_job(store: Store) -> None:
    assert messages(query_events(store, since=107.0)) == ["attempt 2 failed: exit 3", "node n1 disconnected"]
    assert messages(query_events(store, job_id="j1", kinds=["failure"])) == [
        "attempt 1 failed: xid 79",
        "attempt 2 failed: exit 3",
    ]


def test_limit_keeps_the_newest(store: Store) -> None:
    assert messages(query_events(store, limit=2)) == ["attempt 2 failed: exit 3", "node n1 disconnected"]
    # With a Python-side filter as well, the newest matches are kept, still oldest first.
    assert messages(query_events(store, node_name="n1", limit=2)) == [
        "attempt 1 failed: xid 79",
        "node n1 disconnected",
    ]
    assert messages(query_events(store, cause="xid", limit=1)) == ["attempt 1 failed: xid 79"]


def test_zero_limit_means_the_default(store: Store) -> None:
    for i in range(DEFAULT_LIMIT + 5):
        store.append_event("node", f"flap {i}", node_name="n9", at=1000.0 + i)
    rows = query_events(store, node_name="n9")
    assert len(rows) == DEFAULT_LIMIT
    assert rows[-1]["message"] == f"flap {DEFAULT_LIMIT + 4}" and rows[0]["message"] == "flap 5"
