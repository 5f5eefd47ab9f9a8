"""Fault-tolerance data on the wire: convert.py's Node/Job/ClusterEvent fields, the
ListEvents and ClearHealth handlers, and node_ops.clear_health's checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from corral.v1 import cluster_pb2, node_pb2

from scheduler.jobstate import JobState
from scheduler.model import AttemptRecord, CheckpointRecord, DeviceRecord, JobRecord, NodeRecord
from scheduler.reliability.health_state import Health, HealthBook, HealthRecord, HistoryEntry
from scheduler.reliability.lemon import FailureRecord, LemonVerdict
from scheduler.reliability.signals import Blame
from scheduler.server import node_ops
from scheduler.server.api_services import ClusterServicer, NodeServicer
from scheduler.server.controlplane import ControlPlane, NotFound
from scheduler.server.convert import (
    CHECKPOINTS_LIMIT,
    HEALTH_HISTORY_LIMIT,
    cluster_event,
    job_to_proto,
    node_to_proto,
)
from scheduler.server.nodes import NodeRuntime
from scheduler.store import Store

H = Health


def runtime(name: str = "n0", devices: int = 4) -> NodeRuntime:
    record = NodeRecord(
        name, 1.0, 2.0, devices=[DeviceRecord(name, i, "nvidia", "H100") for i in range(devices)]
    )
    rt = NodeRuntime(record)
    rt.reindex()
    return rt


def test_node_without_health_record_is_healthy_with_no_history() -> None:
    node = node_to_proto(runtime(), 4, [], health=HealthBook())
    assert node.health == "HEALTHY" and not node.health_history and not node.lemon_evidence
    assert not node.hot_spare
    # Callers that pass no book (older call sites) get the same answer.
    assert node_to_proto(runtime(), 4, []).health == "HEALTHY"


def test_node_health_history_merges_node_and_devices_oldest_first() -> None:
    book = HealthBook()
    book.nodes["n0"] = HealthRecord(
        H.QUARANTINED, (HistoryEntry(30.0, H.HEALTHY, H.QUARANTINED, "lemon: 3 failures"),)
    )
    book.devices[("n0", 3)] = HealthRecord(
        H.UNHEALTHY,
        (
            HistoryEntry(10.0, H.HEALTHY, H.SUSPECT, "ecc warning"),
            HistoryEntry(20.0, H.SUSPECT, H.UNHEALTHY, "xid 79"),
        ),
    )
    book.devices[("other", 0)] = HealthRecord(H.UNHEALTHY, (HistoryEntry(15.0, H.HEALTHY, H.UNHEALTHY, "x"),))
    verdict = LemonVerdict(
        "n0",
        (
            FailureRecord(5.0, "j1", 1, frozenset({"n0"}), Blame.HARDWARE, ("xid 79 on gpu 3", "ecc dbe")),
            FailureRecord(2.0, "j2", 2, frozenset({"n0"}), Blame.HARDWARE, ()),
        ),
    )
    node = node_to_proto(runtime(), 3, ["w1"], health=book, lemon=verdict, hot_spare=True)
    assert node.health == "QUARANTINED" and node.hot_spare
    assert [(c.device_index, c.from_state, c.to_state, c.reason) for c in node.health_history] == [
        (3, "HEALTHY", "SUSPECT", "ecc warning"),
        (3, "SUSPECT", "UNHEALTHY", "xid 79"),
        (-1, "HEALTHY", "QUARANTINED", "lemon: 3 failures"),
    ]
    assert node.health_history[0].at.seconds == 10
    assert [(e.job_id, e.attempt, e.signals) for e in node.lemon_evidence] == [
        ("j2", 2, ""),
        ("j1", 1, "xid 79 on gpu 3; ecc dbe"),
    ]


def test_node_health_history_is_bounded_to_the_newest() -> None:
    book = HealthBook()
    entries = tuple(
        HistoryEntry(float(i), H.HEALTHY, H.SUSPECT, f"e{i}") for i in range(HEALTH_HISTORY_LIMIT + 7)
    )
    book.devices[("n0", 0)] = HealthRecord(H.SUSPECT, entries)
    history = node_to_proto(runtime(), 4, [], health=book).health_history
    assert len(history) == HEALTH_HISTORY_LIMIT
    assert history[0].reason == "e7" and history[-1].reason == f"e{HEALTH_HISTORY_LIMIT + 6}"


def _job() -> JobRecord:
    job = JobRecord("j1", "train", {"name": "train", "workers": 2}, JobState.RECOVERING, 1.0, 2.0)
    job.lost_device_s = 7200.0
    job.attempts.append(
        AttemptRecord(
            "j1", 1, 10.0, ended_at=50.0, outcome="failed", cause="xid 79 on n0 gpu 3", blame="hardware",
            failed_at=49.0, lost_s=120.0, detect_s=0.4, restart_s=3.5,
        )
    )  # fmt: skip
    job.attempts.append(AttemptRecord("j1", 2, 60.0, resumed_from_step=1200, resume_path="/ckpt/step-1200"))
    return job


def test_job_attempts_carry_failure_and_resume_fields() -> None:
    checkpoints = [
        CheckpointRecord("j1", 1, r % 2, 100 * r, f"/ckpt/{r}", 10.0 + r, 2**30, 1.5, True, "periodic")
        for r in range(CHECKPOINTS_LIMIT + 3)
    ]
    job = job_to_proto(_job(), checkpoints=checkpoints, checkpoint_interval="every 10m (fixed in the spec)")
    first, second = job.attempts
    assert (first.cause, first.blame, first.lost_s, first.detect_s, first.restart_s) == (
        "xid 79 on n0 gpu 3", "hardware", 120.0, 0.4, 3.5,
    )  # fmt: skip
    assert first.failed_at.seconds == 49 and not second.HasField("failed_at")
    assert (second.resumed_from_step, second.resume_path) == (1200, "/ckpt/step-1200")
    assert job.state == JobState.RECOVERING.to_proto()
    assert job.lost_device_s == 7200.0 and job.checkpoint_interval == "every 10m (fixed in the spec)"
    assert len(job.checkpoints) == CHECKPOINTS_LIMIT
    newest = job.checkpoints[-1]
    assert newest.step == 100 * (CHECKPOINTS_LIMIT + 2) and newest.complete and newest.trigger == "periodic"
    assert newest.size_bytes == 2**30 and newest.duration_s == 1.5


def test_cluster_event_lifts_cause_and_blame_out_of_data() -> None:
    row = {
        "id": 7, "at": 12.5, "kind": "failure", "job_id": "j1", "node_name": None, "state": None,
        "message": "attempt 1 failed", "data": {"cause": "xid:79", "blame": "hardware", "nodes": ["n0"]},
    }  # fmt: skip
    event = cluster_event(row)
    assert (event.id, event.kind, event.job_id, event.node_name) == (7, "failure", "j1", "")
    assert (event.cause, event.blame) == ("xid:79", "hardware")
    assert json.loads(event.data_json)["nodes"] == ["n0"]
    assert event.at.ToNanoseconds() == 12_500_000_000


class _Aborted(Exception):
    pass


class _Context:
    """The part of grpc.aio.ServicerContext the handlers use."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise _Aborted(details)


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    store = Store.open(tmp_path / "db")
    yield ControlPlane(store, tmp_path, clock=lambda: 1000.0)
    store.close()


async def test_list_events_handler_filters_and_converts(cp: ControlPlane) -> None:
    cp.store.append_event("node", "node n0 connected", node_name="n0", at=900.0)
    cp.store.append_event(
        "failure", "attempt 1 failed", job_id="j1", node_name="n0", at=950.0,
        data={"cause": "XID:79", "blame": "hardware"},
    )  # fmt: skip
    cp.store.append_event("state", "submitted", job_id="j1", at=960.0)
    servicer = ClusterServicer(cp, agents=None)
    everything = await servicer.ListEvents(cluster_pb2.ListEventsRequest(), _Context())
    assert [e.kind for e in everything.events] == ["node", "failure"]
    request = cluster_pb2.ListEventsRequest(cause="xid:79", node_name="n0")
    request.since.FromSeconds(920)
    (failure,) = (await servicer.ListEvents(request, _Context())).events
    assert (failure.cause, failure.blame, failure.job_id) == ("XID:79", "hardware", "j1")
    old = cluster_pb2.ListEventsRequest(kinds=["node"])
    old.since.FromSeconds(920)
    assert not (await servicer.ListEvents(old, _Context())).events


def test_clear_health_checks_node_and_device_then_clears(
    cp: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int | None, str]] = []
    monkeypatch.setattr(cp, "node", lambda name: _node_or_raise(name))
    monkeypatch.setattr(cp, "clear_health", lambda name, index, reason: calls.append((name, index, reason)))
    assert node_ops.clear_health(cp, "n0", None, "reseated").record.name == "n0"
    node_ops.clear_health(cp, "n0", 3, "")
    with pytest.raises(NotFound, match=r"no device 9 \(it has \[0, 1, 2, 3\]\)"):
        node_ops.clear_health(cp, "n0", 9, "")
    with pytest.raises(NotFound, match="ghost"):
        node_ops.clear_health(cp, "ghost", None, "")
    assert calls == [("n0", None, "reseated"), ("n0", 3, "")]


def _node_or_raise(name: str) -> NodeRuntime:
    if name != "n0":
        raise NotFound(f"no node {name!r}")
    return runtime(name)


async def test_clear_health_handler_maps_minus_one_and_not_found(
    cp: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    rt = runtime()
    monkeypatch.setattr(cp, "node", lambda name: _node_or_raise(name))
    monkeypatch.setattr(cp, "clear_health", lambda *args: calls.append(args))
    monkeypatch.setattr(cp, "active_workers_by_node", lambda: {})
    monkeypatch.setattr(cp, "free_device_count", lambda rt, active: len(rt.record.devices))
    servicer = NodeServicer(cp)
    node = await servicer.ClearHealth(node_pb2.ClearHealthRequest(name="n0", device_index=-1), _Context())
    assert node.name == rt.record.name and node.health == "HEALTHY"
    await servicer.ClearHealth(node_pb2.ClearHealthRequest(name="n0", device_index=2, reason="r"), _Context())
    assert calls == [("n0", None, ""), ("n0", 2, "r")]
    context = _Context()
    with pytest.raises(_Aborted):
        await servicer.ClearHealth(node_pb2.ClearHealthRequest(name="n0", device_index=8), context)
    assert context.code is grpc.StatusCode.NOT_FOUND and "no device 8" in context.details
