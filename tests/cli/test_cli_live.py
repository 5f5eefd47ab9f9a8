"""The CLI against the real control plane and agents, as processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytest.importorskip("scheduler.server.main", reason="the control plane is not there yet")
pytest.importorskip("agents.main", reason="the node agent is not there yet")

from tests.harness import REPO, wait_for

CORRAL = [sys.executable, "-m", "scheduler.cli"]
pytestmark = pytest.mark.e2e


def corral(*args: str, server: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if server:
        env["CORRAL_SERVER"] = server
    return subprocess.run(
        [*CORRAL, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False
    )


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`corral server` alone (no agents), on a free port."""
    proc = subprocess.Popen(
        [*CORRAL, "server", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
    )  # fmt: skip
    addr = tmp_path / "server.addr"
    try:
        wait_for(lambda: addr.is_file() and addr.read_text().strip())
        yield addr.read_text().strip()
    finally:
        assert stop(proc) == 0


def test_status_submit_cancel_against_server(server: str, tmp_path: Path) -> None:
    status = json.loads(corral("status", "-o", "json", server=server).stdout)
    assert status["nodes_total"] == 0 and status["version"]
    spec = tmp_path / "job.yaml"
    spec.write_text("name: waits\ncommand: [python, -c, 'pass']\ndevices_per_worker: 1\n")
    job_id = corral("submit", str(spec), server=server).stdout.strip()
    assert job_id
    job = json.loads(corral("job", job_id, "-o", "json", server=server).stdout)
    assert job["state"] == "JOB_STATE_PENDING" and job["spec"]["working_dir"] == str(REPO)
    assert "PENDING" in corral("jobs", server=server).stdout
    follower = subprocess.Popen(
        [*CORRAL, "submit", str(spec), "--follow", "--server", server],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert follower.stdout is not None
    first = follower.stdout.readline()
    second_id = first.split()[2]
    assert corral("cancel", second_id, "--reason", "test", server=server).returncode == 0
    assert follower.wait(timeout=30) == 5  # followed job ended CANCELLED
    assert corral("job", "no-such-job", server=server).returncode == 3
    assert corral("cordon", "no-such-node", server=server).returncode == 3
    bad = corral("sim", "inject", "--node", "ghost", "--device", "0", "--fault", "hang", server=server)
    assert bad.returncode == 3


def test_up_example_runs_the_demo(tmp_path: Path) -> None:
    result = corral(
        "up", "--simulate", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "c"),
        "--example", "examples/job.yaml", timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "starting a SIMULATED cluster" in out
    for node in ("sim-h100-0", "sim-h100-1", "sim-ascend-0", "sim-mlu-0"):
        assert node in out
    assert "SUCCEEDED" in out and "final loss" in out
    assert (tmp_path / "c" / "logs" / "server.log").is_file()


def test_up_example_failing_job_exits_1(tmp_path: Path) -> None:
    spec = tmp_path / "fail.yaml"
    spec.write_text(
        "name: fails\ncommand: [python, -c, 'import sys; print(\"bye\"); sys.exit(3)']\nworkers: 2\n"
    )
    result = corral(
        "up", "--simulate", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "c"),
        "--example", str(spec), timeout=180,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    # Whichever rank fails first gets its peer stopped, perhaps before the peer printed
    # anything (a slow start under load): one rank's line is what is certain.
    assert "FAILED" in result.stdout and ("[rank 0] bye" in result.stdout or "[rank 1] bye" in result.stdout)


def test_up_foreground_then_sigterm_leaves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "c"
    log = (tmp_path / "up.out").open("w")
    up = subprocess.Popen(
        [*CORRAL, "up", "--simulate", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        wait_for(lambda: "Ctrl-C stops the cluster" in (tmp_path / "up.out").read_text(), timeout=90)
        server = (data / "server.addr").read_text().strip()
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 5  # server and four agents
        nodes = json.loads(corral("nodes", "-o", "json", server=server).stdout)["nodes"]
        assert {n["name"] for n in nodes} == {"sim-h100-0", "sim-h100-1", "sim-ascend-0", "sim-mlu-0"}
        assert all(n["simulated"] for n in nodes)
        assert "simulated" in corral("nodes", server=server).stdout
        assert "(simulated)" in corral("node", "sim-mlu-0", server=server).stdout
        submitted = corral("submit", "examples/job.yaml", server=server)
        assert submitted.returncode == 0
        followed = corral("logs", submitted.stdout.strip(), "--follow", server=server)
        assert followed.returncode == 0 and "final loss" in followed.stdout
        bad = corral("submit", "examples/bad-job.yaml", server=server)
        assert bad.returncode == 2
        for field in (
            "name:",
            "workers:",
            "devices_per_worker:",
            "accelerator.vendors[1]:",
            "env.RANK:",
            "gpus:",
        ):
            assert field in bad.stderr, bad.stderr
        assert len(json.loads(corral("jobs", "-o", "json", server=server).stdout)["jobs"]) == 1
        assert corral("submit", "examples/job.yaml", server=server).returncode == 0
        inject = corral(
            "sim", "inject", "--node", "sim-h100-0", "--device", "0", "--fault", "xid:79", server=server
        )
        assert inject.returncode == 0, inject.stderr
        time.sleep(1.0)  # let a worker start, so stopping has one to stop
        children = psutil.Process(up.pid).children(recursive=True)
    finally:
        code = stop(up)
    assert code == 0, (tmp_path / "up.out").read_text()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, [p.cmdline() for p in alive]


def test_events_and_node_health_against_corral_up(tmp_path: Path) -> None:
    data = tmp_path / "c"
    log = (tmp_path / "up.out").open("w")
    up = subprocess.Popen(
        [*CORRAL, "up", "--simulate", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        wait_for(lambda: "Ctrl-C stops the cluster" in (tmp_path / "up.out").read_text(), timeout=90)
        server = (data / "server.addr").read_text().strip()
        listed = corral("events", "--kind", "node", "-o", "json", server=server)
        assert listed.returncode == 0, listed.stderr
        events = json.loads(listed.stdout)["events"]
        connected = {e["node_name"] for e in events if "connected" in e["message"]}
        assert {"sim-h100-0", "sim-h100-1", "sim-ascend-0", "sim-mlu-0"} <= connected
        assert all(e["kind"] == "node" for e in events)
        table = corral("events", "--node", "sim-mlu-0", "--since", "1h", server=server)
        assert table.returncode == 0 and "node sim-mlu-0 connected" in table.stdout
        assert "sim-h100-0" not in table.stdout
        assert "no events match" in corral("events", "--cause", "xid:79", server=server).stdout
        node = json.loads(corral("node", "sim-h100-0", "-o", "json", server=server).stdout)
        assert node["health"] == "HEALTHY" and node["hot_spare"] in (True, False)
        assert "health     HEALTHY" in corral("node", "sim-h100-0", server=server).stdout
        missing = corral("clear-health", "sim-h100-0", "--device", "99", server=server)
        assert missing.returncode == 3 and "no device 99" in missing.stderr
    finally:
        code = stop(up)
    assert code == 0, (tmp_path / "up.out").read_text()
