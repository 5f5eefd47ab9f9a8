"""`corral up`'s Ascend and Cambricon nodes speak their vendors' tools, end to end.

The simulated domestic nodes are backed by recorded `npu-smi` and `cnmon` output and read
through the real parsers (agents/backends/recorded.py). A job constrained to Ascend runs with
ASCEND_RT_VISIBLE_DEVICES; an injected Ascend error code reaches the control plane the way it
does on hardware, in npu-smi's health output, and cordons the device and restarts the job on
healthy ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import REPO, Api, cli, cli_json, wait_for, write_spec

CORRAL = [sys.executable, "-m", "scheduler.cli"]
pytestmark = pytest.mark.e2e

SHOW_AND_WAIT = (
    "import os, time; print('VISIBLE', os.environ.get('ASCEND_RT_VISIBLE_DEVICES'),"
    " os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True); time.sleep(600)"
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "c"
    out = tmp_path / "up.out"
    up = subprocess.Popen(
        [*CORRAL, "up", "--simulate", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=out.open("w"), stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        wait_for(lambda: "Ctrl-C stops the cluster" in out.read_text(), timeout=90, what="corral up ready")
        yield (data / "server.addr").read_text().strip()
    finally:
        up.terminate()
        assert up.wait(timeout=60) == 0, out.read_text()


def test_ascend_and_cambricon_nodes_run_the_real_parsers(cluster: str, tmp_path: Path) -> None:
    server = cluster
    ascend = cli_json(server, "node", "sim-ascend-0")
    devices = ascend["devices"]
    assert len(devices) == 8
    assert {(d["vendor"], d["model"], d["source"]) for d in devices} == {
        ("ascend", "Ascend 910B", "recorded")
    }
    # The bus ids are the recorded npu-smi table's, not the plain simulator's made-up ones.
    assert devices[0]["bus_id"] == "0000:C1:00.0"
    assert all(d["visibility_env"] == "ASCEND_RT_VISIBLE_DEVICES" for d in devices)

    mlu = cli_json(server, "node", "sim-mlu-0")["devices"]
    assert {(d["vendor"], d["model"], d["source"]) for d in mlu} == {("cambricon", "MLU370-X8", "recorded")}
    boards = [d["board_id"] for d in mlu]
    assert len(mlu) == 8 and len(set(boards)) == 4  # four cards, two chips each
    assert mlu[0]["bus_id"] == "0000:13:00.0"

    api = Api(server)
    spec = write_spec(
        tmp_path / "npu.yaml",
        name="npu",
        command=[sys.executable, "-c", SHOW_AND_WAIT],
        devices_per_worker=2,
        accelerator={"vendors": ["ascend"]},
        max_restarts=0,
    )
    submitted = cli(server, "submit", str(spec), "--output", "json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    job = api.wait_state(job_id, "RUNNING", timeout=60)
    [worker] = job.attempts[0].workers
    assert worker.node_name == "sim-ascend-0"
    first = list(worker.device_indices)
    wanted = ",".join(map(str, first))
    logs = wait_for(
        lambda: "VISIBLE" in (text := cli(server, "logs", job_id).stdout) and text,
        30,
        what="the worker's line",
    )
    assert f"VISIBLE {wanted} None" in logs  # the Ascend runtime's variable, logic ids; no CUDA one

    bad = first[0]
    injected = cli(
        server, "sim", "inject", "--node", "sim-ascend-0", "--device", str(bad), "--fault", "vendor:80E01801"
    )
    assert injected.returncode == 0, injected.stderr

    # RestartNPU (an HBM uncorrectable error) is a critical device fault: the device is taken
    # out, the attempt fails as the hardware's fault, and the job restarts on healthy devices.
    moved = wait_for(
        lambda: len((j := api.job(job_id)).attempts) == 2 and api.state(job_id) == "RUNNING" and j,
        90,
        what="the job restarted on other devices",
    )
    failed, second = moved.attempts
    assert "80E01801" in failed.cause and failed.blame == "hardware", failed.cause
    assert bad not in list(second.workers[0].device_indices)
    node = cli_json(server, "node", "sim-ascend-0")
    health = {d["index"]: d["health"] for d in node["devices"]}
    assert health[bad] == "DEVICE_HEALTH_UNHEALTHY"
    assert all(h == "DEVICE_HEALTH_HEALTHY" for i, h in health.items() if i != bad)
    events = cli(server, "events", "--node", "sim-ascend-0", "--kind", "health").stdout
    assert "ascend 80E01801" in events and "RestartNPU" in events
    assert cli(server, "cancel", job_id).returncode == 0
