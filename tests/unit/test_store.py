from __future__ import annotations

import sqlite3
from pathlib import Path

from scheduler.jobstate import JobState
from scheduler.model import AttemptRecord, DeviceRecord, JobRecord, NodeRecord, WorkerPhase, WorkerRecord
from scheduler.server.ingest import LagTracker
from scheduler.server.logstore import LogStore
from scheduler.store import Store


def test_migrations_create_a_wal_sqlite_file_and_are_idempotent(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    assert store.schema_version() == "0005"
    store.migrate()
    assert store.schema_version() == "0005"
    store.close()
    conn = sqlite3.connect(tmp_path / "corral.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"nodes", "devices", "jobs", "attempts", "placements", "events", "alembic_version"} <= tables


def test_state_survives_reopening(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    node = NodeRecord(
        "n0",
        1.0,
        2.0,
        address="127.0.0.1",
        backend="simulated",
        simulated=True,
        cordoned=True,
        devices=[DeviceRecord("n0", i, "nvidia", "H100", peer_indices=[1 - i]) for i in range(2)],
    )
    store.upsert_node(node)
    job = JobRecord("j-1", "train", {"name": "train", "workers": 1}, JobState.PENDING, 1.0, 1.0, owner="ana")
    store.insert_job(job)
    job.state = JobState.PLACED
    attempt = AttemptRecord(
        "j-1",
        1,
        3.0,
        master_addr="127.0.0.1",
        master_port=29500,
        workers=[WorkerRecord("j-1.1.0", "j-1", 1, 0, "n0", [0, 1])],
    )
    job.attempts.append(attempt)
    store.insert_attempt(job, attempt)
    attempt.workers[0].phase = WorkerPhase.EXITED
    attempt.workers[0].exit_code = 0
    store.update_worker(attempt.workers[0])
    store.append_event("state", "placed", job_id="j-1", state="PLACED")
    store.close()

    again = Store.open(tmp_path)
    [n] = again.load_nodes()
    assert n.cordoned and [d.peer_indices for d in n.devices] == [[1], [0]]
    [j] = again.load_jobs()
    assert j.state is JobState.PLACED and j.owner == "ana"
    [a] = j.attempts
    assert (
        a.master_port == 29500
        and a.workers[0].phase is WorkerPhase.EXITED
        and a.workers[0].device_indices == [0, 1]
    )
    [e] = again.events(job_id="j-1")
    assert e["message"] == "placed" and e["state"] == "PLACED"


def test_log_store_is_idempotent_by_offset(tmp_path: Path) -> None:
    logs = LogStore(tmp_path)
    assert logs.append("j", 1, 0, 0, b"hello ") == 6
    assert logs.append("j", 1, 0, 0, b"hello ") == 6  # resent chunk: nothing new
    assert logs.append("j", 1, 0, 3, b"lo world") == 11  # overlapping chunk: only the tail
    assert logs.append("j", 1, 0, 20, b"gap") == 11  # gap: refused, agent resumes from 11
    assert logs.read("j", 1, 0, 0) == b"hello world"
    assert logs.read("j", 1, 0, 6) == b"world"


def test_lag_percentiles_over_window() -> None:
    lag = LagTracker(window_s=10)
    for i in range(100):
        lag.record(received_at=100.0 + i * 0.01, sampled_at=100.0 + i * 0.01 - (0.5 if i == 99 else 0.01))
    s = lag.summary(now=101.0)
    assert s.messages == 100 and abs(s.p50_s - 0.01) < 1e-9 and abs(s.max_s - 0.5) < 1e-9
    assert lag.summary(now=200.0).messages == 0 and lag.total == 100


def test_unchanged_inventory_keeps_device_rows_and_changed_one_replaces_them(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    devs = [DeviceRecord("n0", i, "nvidia", "H100") for i in range(2)]
    store.upsert_node(NodeRecord("n0", 1.0, 1.0, devices=devs))
    store.upsert_node(NodeRecord("n0", 1.0, 5.0, instance_id="second", devices=devs), devices_changed=False)
    [n] = store.load_nodes()
    assert n.last_seen == 5.0 and n.instance_id == "second" and len(n.devices) == 2
    store.upsert_node(NodeRecord("n0", 1.0, 6.0, devices=devs[:1]))
    [n] = store.load_nodes()
    assert len(n.devices) == 1


def test_power_profiles_and_fault_tolerance_records_survive_reopening(tmp_path: Path) -> None:
    from scheduler.model import CheckpointRecord

    store = Store.open(tmp_path)
    store.migrate()
    store.save_power_profile("alice", "train", 612.5, 40, 1.0)
    store.save_power_profile("alice", "train", 600.0, 100, 2.0)  # replaces, never duplicates
    store.save_health("n0", -1, "QUARANTINED", {"state": "QUARANTINED", "history": []})
    job = JobRecord("j-1", "train", {}, JobState.RUNNING, 0.0, 0.0)
    store.insert_job(job)
    store.insert_checkpoint(CheckpointRecord("j-1", 1, 0, 60, "/c/60", 5.0, 1024, 0.5, True, "periodic"))
    store.close()
    again = Store.open(tmp_path)
    assert [
        (r["owner"], r["name"], r["per_device_w"], r["samples"]) for r in again.load_power_profiles()
    ] == [("alice", "train", 600.0, 100)]
    assert [(r["node_name"], r["idx"], r["state"]) for r in again.load_health()] == [
        ("n0", -1, "QUARANTINED")
    ]
    [checkpoint] = again.load_checkpoints()["j-1"]
    assert (checkpoint.step, checkpoint.complete, checkpoint.trigger) == (60, True, "periodic")


def test_load_checkpoints_keeps_each_jobs_newest_oldest_first(tmp_path: Path) -> None:
    from scheduler.model import CheckpointRecord

    store = Store.open(tmp_path)
    for job_id, count in (("j-a", 7), ("j-b", 2)):
        store.insert_job(JobRecord(job_id, "train", {}, JobState.RUNNING, 0.0, 0.0))
        for step in range(count):
            store.insert_checkpoint(CheckpointRecord(job_id, 1, 0, step, f"/c/{step}", float(step)))
    loaded = store.load_checkpoints(per_job=3)
    assert [c.step for c in loaded["j-a"]] == [4, 5, 6]
    assert [c.step for c in loaded["j-b"]] == [0, 1]
