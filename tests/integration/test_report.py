"""`corral report` end to end: a real `corral server`, simulated agents, the example training
script with checkpoints, and an XID 79 injected into the gang's device. The report, read through
the real CLI as JSON, Markdown and HTML, shows the interruption under the GPU component, the
GPU-hours it cost and an ETTR below 1; bad windows and formats are refused with exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import grpc
import pytest
from corral.v1 import cluster_pb2, node_pb2

from tests.harness import REPO, Api, Server, cli, cli_json, submit, wait_for, write_spec

FAST = ("--restart-backoff", "0.2", "--stop-grace", "3", "--checkpoint-timeout", "20")


@pytest.fixture
def server(tmp_path: Path) -> Any:
    srv = Server(tmp_path / "server", "127.0.0.1:0", *FAST)
    yield srv
    srv.stop()


def test_report_shows_an_injected_xid_79_with_its_cost(
    server: Server, start_agent: Any, tmp_path: Path
) -> None:
    for name in ("n0", "n1"):
        start_agent(server.address, name)
    api = Api(server.address)
    api.wait_ready("n0", "n1")
    spec = write_spec(
        tmp_path / "train.yaml",
        name="train",
        command=[
            "python",
            "examples/train.py",
            "--steps",
            "250",
            "--step-sleep",
            "0.02",
            "--checkpoint-every",
            "20",
        ],
        devices_per_worker=8,
        checkpoint_dir=str(tmp_path / "ckpt"),
        working_dir=str(REPO),
    )
    job_id = submit(server, spec)
    api.wait_state(job_id, "RUNNING")
    job = wait_for(lambda: (j := api.job(job_id)).checkpoints and j.checkpoints[-1].step >= 40 and j, 60)
    worker = job.attempts[0].workers[0]
    api.nodes.InjectFault(
        node_pb2.InjectFaultRequest(
            node_name=worker.node_name, device_index=worker.device_indices[0], fault="xid:79"
        ),
        timeout=5,
    )
    done = api.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=120)
    assert api.state(job_id) == "SUCCEEDED", done.reason
    assert len(done.attempts) == 2 and "xid:79" in done.attempts[0].cause

    report = cli_json(server.address, "report", "--since", "1h")
    assert report["interruptions"] == 1 and report["unexpected"] == 1
    (row,) = report["by_cause"]
    assert row["component"] == "gpu" and row["category"] == "Faulty GPU (fell off the bus)"
    assert row["count"] == 1 and row["share"] == pytest.approx(1.0) and row["blame"] == "hardware"
    assert row["lost_gpu_hours"] > 0
    assert report["lost_gpu_hours"] > 0
    assert 0 < report["fleet_ettr"] < 1
    (job_row,) = report["jobs"]
    assert job_row["job_id"] == job_id and job_row["devices"] == 8 and job_row["interruptions"] == 1
    assert 0 < job_row["ettr"] < 1 and job_row["lost_gpu_hours"] > 0
    gpu = report["gpu_time"]
    assert gpu["productive_s"] > 0 and gpu["recompute_lost_s"] > 0 and gpu["restart_lost_s"] > 0
    mtbf = {(m["component"], m["model"]): m for m in report["mtbf"]}
    hit = next(m for (component, _), m in mtbf.items() if component == "gpu")
    assert (
        hit["failures"] == 1
        and hit["device_hours"] > 0
        and hit["mtbf_hours"] == pytest.approx(hit["device_hours"])
    )
    phases = {p["phase"]: p for p in report["recovery"]}
    assert phases["detect"]["count"] == 1 and phases["total"]["count"] == 1 and phases["total"]["max_s"] > 0
    assert report["devices"] == 16

    md = cli(server.address, "report")  # Markdown is the default, the window 30 days
    assert md.returncode == 0, md.stderr
    assert "## Interruptions by component and cause" in md.stdout
    assert "| GPU | Faulty GPU (fell off the bus) | hardware | 1 | 100.0 % |" in md.stdout
    assert (
        "Fleet ETTR:" in md.stdout
        and job_id in md.stdout
        and "## MTBF per component and device model" in md.stdout
    )

    page = tmp_path / "report.html"
    written = cli(server.address, "report", "--output", "html", "--file", str(page))
    assert written.returncode == 0, written.stderr
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Faulty GPU (fell off the bus)" in text
    assert "<script" not in text and "http" not in text  # self-contained: nothing fetched, nothing run
    api.close()


def test_bad_windows_and_formats_are_refused(server: Server) -> None:
    for args, needle in [
        (("--since", "yesterday"), "--since"),
        (("--since", "2999-01-01T00:00"), "--since"),
        (("--output", "pdf"), "--output"),
    ]:
        result = cli(server.address, "report", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert needle in result.stderr, result.stderr
    everything = cli_json(server.address, "report", "--since", "all")
    assert everything["interruptions"] == 0 and everything["by_cause"] == []

    api = Api(server.address)
    for bad in (-1.0, math.nan):
        with pytest.raises(grpc.RpcError) as caught:
            api.cluster.GetReliabilityReport(cluster_pb2.GetReliabilityReportRequest(since_s=bad), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "since_s" in str(caught.value.details())
    api.close()
    assert json.loads(cli(server.address, "report", "-o", "json").stdout)["jobs"] == []
