"""Rendering and parsing helpers of the CLI, from constructed messages; no server."""

from __future__ import annotations

import io
from typing import Any

import grpc
import pytest
from cli_fakes import NOW, make_node, ts
from corral.v1 import cluster_pb2, common_pb2, job_pb2
from rich_text import text_of

from agents.faults import parse_fault
from scheduler.cli import render, render_nodes
from scheduler.cli.client import error_from_rpc, exit_code_for
from scheduler.cli.errors import ExitCode
from scheduler.cli.jobs import LogWriter, _parse_states
from scheduler.cli.up import _plan_agents, dial_address, split_listen


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(-5, "0s"), (0, "0s"), (45.9, "45s"), (192, "3m12s"), (7500, "2h05m"), (3 * 86400 + 4 * 3600, "3d04h")],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert render.format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (80 * 2**30, "80 GiB"), (81559 * 2**20, "79.6 GiB"),
     (3 * 2**50, "3 PiB")],
)  # fmt: skip
def test_format_bytes(n: int, expected: str) -> None:
    assert render.format_bytes(n) == expected


def test_format_latency_and_indices() -> None:
    assert render.format_latency(0.0004) == "400 µs"
    assert render.format_latency(0.0042) == "4.2 ms"
    assert render.format_latency(0.25) == "250 ms"
    assert render.format_latency(1.5) == "1.50 s"
    assert render.format_indices([6, 0, 1, 2, 3]) == "0-3,6"
    assert render.format_indices([]) == "-"


def test_age_of_unset_timestamp_is_dash() -> None:
    assert render.format_age(ts(0), NOW) == "-"
    assert render.format_age(ts(NOW - 90), NOW) == "1m30s"


def _job() -> Any:
    spec = job_pb2.JobSpec(name="train-gpt", command=["python", "train.py"], workers=2, devices_per_worker=4)
    job = job_pb2.Job(
        id="j42", spec=spec, state=job_pb2.JOB_STATE_RUNNING, restarts=1,
        reason="[rank 1] restarted after xid 79", created_at=ts(NOW - 125),
    )  # fmt: skip
    old = job.attempts.add(number=1, outcome="failed: xid 79")
    old.workers.add(rank=0, node_name="sim-h100-0", device_indices=[0, 1, 2, 3], phase="exited", signal=9)
    new = job.attempts.add(number=2, started_at=ts(NOW - 30), master_addr="127.0.0.1", master_port=29500)
    new.workers.add(
        rank=1, node_name="sim-h100-1", device_indices=[4, 5, 6, 7], phase="running", progress_step=7
    )
    new.workers.add(rank=0, node_name="sim-h100-0", device_indices=[0, 1, 2, 3], phase="running")
    return job


def test_jobs_table() -> None:
    out = text_of(render.jobs_table([_job()], NOW))
    header = out.splitlines()[0].split()
    assert header == ["ID", "NAME", "STATE", "WORKERS×DEVICES", "NODES", "RESTARTS", "AGE", "REASON"]
    row = out.splitlines()[1]
    for cell in ("j42", "train-gpt", "RUNNING", "2×4", "sim-h100-0, sim-h100-1", "2m05s"):
        assert cell in row
    assert "[rank 1] restarted after xid 79" in row  # reasons are shown literally, not as markup


def test_job_detail_lists_attempts_and_workers() -> None:
    out = text_of(render.job_detail(_job(), NOW))
    assert "python train.py" in out
    assert "attempt 1" in out and "failed: xid 79" in out and "signal 9" in out
    assert "attempt 2" in out and "master 127.0.0.1:29500" in out
    assert "4-7" in out and "running" in out


def test_event_line() -> None:
    event = job_pb2.JobEvent(
        event_id=1, kind="state", state=job_pb2.JOB_STATE_FAILED, message="rank 0 exit 1"
    )
    assert "FAILED" in text_of(render.event_line(event))
    worker = job_pb2.JobEvent(event_id=2, kind="worker", message="rank 0 running")
    assert "worker: rank 0 running" in text_of(render.event_line(worker))


def test_nodes_table_marks_simulated_and_sums_power() -> None:
    sim = make_node("sim-h100-0")
    sim.cordoned = True
    real = make_node("gpu-1", simulated=False, devices=2, model="A100-SXM4-40GB")
    real.ClearField("telemetry")
    out = text_of(render_nodes.nodes_table([sim, real], NOW))
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATE",
        "HEALTH",
        "BACKEND",
        "DEVICES",
        "FREE",
        "POWER",
        "TEMP",
        "FLAGS",
        "LAST",
        "SEEN",
    ]
    assert "simulated" in lines[1] and "8× H100-SXM5-80GB" in lines[1] and "8/8" in lines[1]
    assert f"{sum(100 + i for i in range(8))} W" in lines[1] and "47°C" in lines[1] and "cordoned" in lines[1]
    assert "nvml" in lines[2] and "2× A100-SXM4-40GB" in lines[2] and "simulated" not in lines[2]


def test_node_detail_device_table() -> None:
    node = make_node("sim-h100-0", devices=2)
    node.telemetry[1].throttle_reasons.append(common_pb2.THROTTLE_REASON_SW_POWER_CAP)
    node.telemetry[1].ecc_uncorrected_total = 2
    node.telemetry[1].memory_used_bytes = 10 * 2**30
    node.devices[1].health = common_pb2.DEVICE_HEALTH_UNHEALTHY
    out = text_of(render_nodes.node_detail(node, NOW))
    assert "H100-SXM5-80GB (simulated)" in out
    assert "101 / 700 W" in out and "41°C" in out and "10 GiB" in out
    assert "sw_power_cap" in out and "0/2" in out and "UNHEALTHY" in out


def test_status_view() -> None:
    status = cluster_pb2.ClusterStatus(
        version="0.1.0", nodes_total=4, nodes_ready=3, devices_total=28, devices_free=20, data_dir="/d",
        jobs_by_state={"JOB_STATE_RUNNING": 2, "JOB_STATE_PENDING": 0},
        ingest=cluster_pb2.IngestStats(lag_p50_s=0.003, lag_p99_s=0.045, lag_max_s=0.2, window_messages=9),
        started_at=ts(NOW - 3600),
    )  # fmt: skip
    out = text_of(render_nodes.status_view(status, NOW))
    assert "3 ready of 4" in out and "20 free of 28" in out and "running 2" in out and "pending" not in out
    assert "p50 3.0 ms" in out and "p99 45 ms" in out and "1h00m" in out and "/d" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [("xid:79", "xid:79"), (" XID:013 ", "xid:13"), ("ecc-dbe", "ecc-dbe"), ("fell-off-bus", "fell-off-bus"),
     ("thermal", "thermal"), ("HANG", "hang"), ("vendor:80e01801", "vendor:80E01801"),
     ("Vendor:0x10", "vendor:10")],
)  # fmt: skip
def test_parse_fault_accepts(text: str, expected: str) -> None:
    assert str(parse_fault(text)) == expected


@pytest.mark.parametrize(
    "text", ["xid", "xid:", "xid:abc", "xid:0", "ecc", "thermal:3", "", "fell off bus", "vendor", "vendor:zz"]
)
def test_parse_fault_rejects_with_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"xid:<code>.*ecc-dbe, fell-off-bus, thermal, hang"):
        parse_fault(text)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, ExitCode.NOT_FOUND),
        (grpc.StatusCode.UNAVAILABLE, ExitCode.UNREACHABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ExitCode.UNREACHABLE),
        (grpc.StatusCode.INVALID_ARGUMENT, ExitCode.BAD_INPUT),
        (grpc.StatusCode.FAILED_PRECONDITION, ExitCode.PRECONDITION),
        (grpc.StatusCode.INTERNAL, ExitCode.ERROR),
        (grpc.StatusCode.UNIMPLEMENTED, ExitCode.ERROR),
    ],
)
def test_exit_code_for_status(code: grpc.StatusCode, expected: ExitCode) -> None:
    assert exit_code_for(code) is expected


class _Err(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_error_messages() -> None:
    down = error_from_rpc(_Err(grpc.StatusCode.UNAVAILABLE, "connection refused"), "10.0.0.1:7070")
    assert down.message.startswith("cannot reach the control plane at 10.0.0.1:7070")
    assert "CORRAL_SERVER" in down.message
    invalid = error_from_rpc(_Err(grpc.StatusCode.INVALID_ARGUMENT, "workers: bad\nname: required"), "x:1")
    assert invalid.code is ExitCode.BAD_INPUT and invalid.details == ["workers: bad", "name: required"]
    internal = error_from_rpc(_Err(grpc.StatusCode.INTERNAL, "boom"), "x:1")
    assert internal.code is ExitCode.ERROR and "INTERNAL" in internal.message


def test_log_writer_prefixes_whole_lines_per_rank() -> None:
    out = io.BytesIO()
    writer = LogWriter(out, prefix=True)
    writer.write(0, b"a\nb")
    writer.write(1, b"x\n")
    writer.write(0, b"c\n")
    writer.write(1, b"tail")
    writer.close()
    assert out.getvalue() == b"[rank 0] a\n[rank 1] x\n[rank 0] bc\n[rank 1] tail\n"
    raw = io.BytesIO()
    plain = LogWriter(raw, prefix=False)
    plain.write(0, b"no\nprefix")
    plain.close()
    assert raw.getvalue() == b"no\nprefix"


def test_parse_states() -> None:
    assert _parse_states(["running", "JOB_STATE_FAILED"]) == [
        job_pb2.JOB_STATE_RUNNING,
        job_pb2.JOB_STATE_FAILED,
    ]


def test_up_helpers() -> None:
    assert split_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert dial_address("0.0.0.0:7070") == "127.0.0.1:7070"
    assert dial_address("[::1]:7070") == "[::1]:7070"
    plan, sentence = _plan_agents(True)
    assert [name for name, _ in plan] == ["sim-h100-0", "sim-h100-1", "sim-ascend-0", "sim-mlu-0"]
    assert "SIMULATED" in sentence and "2× h100-sxm-8" in sentence
