"""Fault-tolerance output of the CLI from constructed messages: attempts' causes, checkpoints,
node health and quarantine evidence, the events table, and --since parsing. No server."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from cli_fakes import NOW, make_node, ts
from corral.v1 import cluster_pb2, job_pb2
from rich_text import text_of

from scheduler.cli import render, render_events, render_nodes
from scheduler.cli.events import parse_since
from scheduler.cli.jobs import _parse_states


def _recovered_job() -> Any:
    spec = job_pb2.JobSpec(name="train", command=["python", "train.py"], workers=1, devices_per_worker=4)
    job = job_pb2.Job(
        id="j7", spec=spec, state=job_pb2.JOB_STATE_RUNNING, restarts=1, created_at=ts(NOW - 3000),
        checkpoint_interval="every 7m30s (auto: Young/Daly from 3 failures)", lost_device_s=3 * 3600 + 1200,
    )  # fmt: skip
    first = job.attempts.add(
        number=1, started_at=ts(NOW - 2900), ended_at=ts(NOW - 600), outcome="failed",
        cause="xid 79 on sim-h100-0 gpu 3", blame="hardware", failed_at=ts(NOW - 601),
        lost_s=250, detect_s=0.42, restart_s=6.3,
    )  # fmt: skip
    first.workers.add(rank=0, node_name="sim-h100-0", device_indices=[0, 1, 2, 3], phase="exited", signal=9)
    second = job.attempts.add(
        number=2, started_at=ts(NOW - 590), resumed_from_step=1200, resume_path="/ckpt/step-1200"
    )
    second.workers.add(rank=0, node_name="sim-h100-1", device_indices=[4, 5, 6, 7], phase="running")
    for i in range(7):
        job.checkpoints.add(
            attempt=1 if i < 5 else 2, rank=0, step=200 * (i + 1), path=f"/ckpt/step-{200 * (i + 1)}",
            at=ts(NOW - 2800 + 400 * i), size_bytes=3 * 2**30, duration_s=11.8, complete=i != 6,
            trigger="periodic" if i != 6 else "requested",
        )  # fmt: skip
    return job


def test_job_detail_shows_causes_resume_and_lost_work() -> None:
    out = text_of(render.job_detail(_recovered_job(), NOW))
    assert "checkpoint interval  every 7m30s (auto: Young/Daly from 3 failures)" in out
    assert "lost                 3.33 device-hours to failures" in out
    assert "cause: xid 79 on sim-h100-0 gpu 3  blame: hardware" in out
    assert "lost 4m10s of work, detected in 0.4s, restarted in 6.3s" in out
    assert "resumed from step 1200 (/ckpt/step-1200)" in out
    # Still the existing per-attempt rendering underneath.
    assert "attempt 1: started 48m20s ago, ran 38m20s — failed" in out and "signal 9" in out


def test_job_detail_lists_the_newest_checkpoints() -> None:
    out = text_of(render.job_detail(_recovered_job(), NOW))
    section = out[out.index("checkpoints (newest 5; 2 older with -o json)") :].splitlines()
    assert section[1].split() == [
        "ATTEMPT/RANK",
        "STEP",
        "WRITTEN",
        "SIZE",
        "TOOK",
        "COMPLETE",
        "TRIGGER",
        "PATH",
    ]
    rows = [line.split() for line in section[2:] if line.strip()]
    assert [r[1] for r in rows] == ["600", "800", "1000", "1200", "1400"]  # oldest shown first
    assert rows[-1][:2] == ["2/0", "1400"] and "3 GiB" in section[-1] and "11.8s" in section[-1]
    assert rows[-1][-3:] == ["no", "requested", "/ckpt/step-1400"]


def test_job_detail_of_a_plain_job_has_no_fault_tolerance_lines() -> None:
    job = job_pb2.Job(
        id="j1", spec=job_pb2.JobSpec(name="x", command=["true"]), state=job_pb2.JOB_STATE_PENDING
    )
    job.attempts.add(number=1, started_at=ts(NOW - 5))
    out = text_of(render.job_detail(job, NOW))
    for absent in ("checkpoint interval", "device-hours", "cause:", "resumed", "checkpoints ("):
        assert absent not in out


def test_restart_without_checkpoint_says_it_started_over() -> None:
    job = _recovered_job()
    job.attempts[1].resumed_from_step = 0
    assert "started over from step 0 (no complete checkpoint)" in text_of(render.job_detail(job, NOW))


def test_format_device_hours() -> None:
    assert render.format_device_hours(10) == "< 0.01 device-hours"
    assert render.format_device_hours(5400) == "1.50 device-hours"
    assert render.format_device_hours(3600 * 12345) == "12,345 device-hours"


@pytest.mark.parametrize(
    ("state", "label", "style"),
    [
        (job_pb2.JOB_STATE_CHECKPOINTING, "CHECKPOINTING", "blue"),
        (job_pb2.JOB_STATE_RECOVERING, "RECOVERING", "yellow"),
    ],
)
def test_new_job_states_are_labelled_and_coloured(state: int, label: str, style: str) -> None:
    job = _recovered_job()
    job.state = state
    assert label in text_of(render.jobs_table([job], NOW)).splitlines()[1]
    assert render.styled(render.job_state_label(state)).style == style


def test_new_states_are_accepted_by_jobs_state_filter() -> None:
    assert _parse_states(["checkpointing", "RECOVERING"]) == [
        job_pb2.JOB_STATE_CHECKPOINTING,
        job_pb2.JOB_STATE_RECOVERING,
    ]


def _quarantined_node() -> Any:
    node = make_node("sim-h100-0", devices=2)
    node.health, node.cordoned, node.cordon_reason = "QUARANTINED", True, "lemon"
    node.health_history.add(
        at=ts(NOW - 900), device_index=3, from_state="HEALTHY", to_state="UNHEALTHY", reason="xid 79"
    )
    node.health_history.add(
        at=ts(NOW - 800),
        device_index=-1,
        from_state="HEALTHY",
        to_state="QUARANTINED",
        reason="lemon: 3 failures",
    )
    node.lemon_evidence.add(at=ts(NOW - 5000), job_id="j1", attempt=1, signals="xid 79 on gpu 3")
    node.lemon_evidence.add(at=ts(NOW - 900), job_id="j7", attempt=2, signals="xid 79 on gpu 3; ecc dbe")
    return node


def test_node_detail_shows_health_history_and_lemon_evidence() -> None:
    out = text_of(render_nodes.node_detail(_quarantined_node(), NOW))
    assert "health     QUARANTINED" in out and "hot spare  no" in out
    assert (
        "implicated in 2 hardware failures across 2 jobs" in out and "corral clear-health sim-h100-0" in out
    )
    evidence = next(line for line in out.splitlines() if " j7 " in line).split()
    assert evidence[2:] == ["j7", "2", "xid", "79", "on", "gpu", "3;", "ecc", "dbe"]
    history = out[out.index("health history") :].splitlines()
    assert history[1].split() == ["TIME", "DEVICE", "CHANGE", "REASON"]
    assert history[2].split()[2:] == ["3", "HEALTHY", "→", "UNHEALTHY", "xid", "79"]
    assert history[3].split()[2:6] == ["node", "HEALTHY", "→", "QUARANTINED"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(NOW - 900))
    assert history[2].startswith(when)


def test_node_detail_of_a_healthy_node() -> None:
    node = make_node("sim-h100-1", devices=1)
    node.health, node.hot_spare = "HEALTHY", True
    out = text_of(render_nodes.node_detail(node, NOW))
    assert "health     HEALTHY" in out and "hot spare  yes" in out
    assert "health history: no changes recorded" in out and "quarantined" not in out


def test_nodes_table_shows_health_and_spares() -> None:
    spare = make_node("sim-h100-1", devices=1)
    spare.health, spare.hot_spare = "HEALTHY", True
    lines = text_of(render_nodes.nodes_table([_quarantined_node(), spare], NOW)).splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATE", "HEALTH"]
    assert "QUARANTINED" in lines[1] and "cordoned" in lines[1]
    assert "HEALTHY" in lines[2] and "hot-spare" in lines[2]


def test_events_table_newest_last() -> None:
    reply = cluster_pb2.ListEventsResponse()
    reply.events.add(
        id=1, at=ts(NOW - 600), kind="failure", job_id="j7", node_name="sim-h100-0",
        message="attempt 1 failed", cause="xid:79", blame="hardware",
    )  # fmt: skip
    reply.events.add(id=2, at=ts(NOW - 500), kind="node", node_name="sim-h100-0", message="[node] connected")
    lines = text_of(render_events.events_table(reply.events)).splitlines()
    assert lines[0].split() == ["TIME", "KIND", "JOB", "NODE", "CAUSE", "BLAME", "MESSAGE"]
    assert lines[1].split()[2:] == [
        "failure",
        "j7",
        "sim-h100-0",
        "xid:79",
        "hardware",
        "attempt",
        "1",
        "failed",
    ]
    assert lines[2].split()[2:] == ["node", "-", "sim-h100-0", "-", "-", "[node]", "connected"]


@pytest.mark.parametrize(
    ("text", "back_s"), [("90s", 90), ("10m", 600), ("1h", 3600), ("2d", 172800), ("1.5h", 5400)]
)
def test_parse_since_durations(text: str, back_s: float) -> None:
    assert parse_since(text, NOW) == NOW - back_s


def test_parse_since_iso_times() -> None:
    assert parse_since("2026-11-23T04:00", NOW) == datetime(2026, 11, 23, 4, 0).timestamp()  # local time
    assert parse_since("2026-11-23T04:00:00+00:00", NOW) == 1795406400.0


@pytest.mark.parametrize("text", ["bogus", "10", "-5m", "10 minutes", "2026-13-01", ""])
def test_parse_since_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"cannot read .*90s, 10m, 1h, 2d.*2026-11-23T04:00"):
        parse_since(text, NOW)
