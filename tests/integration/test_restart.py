"""Restarting the control plane loses nothing and kills no worker."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Api, Server, cli, wait_for, write_spec

PY = sys.executable


@pytest.mark.parametrize("job_ends_while_server_is_down", [False, True])
def test_server_crash_and_restart_mid_job(
    tmp_path: Path, start_agent: Any, job_ends_while_server_is_down: bool
) -> None:
    data = tmp_path / "server"
    server = Server(data)
    port = server.address.rsplit(":", 1)[1]
    start_agent(server.address, "n0")
    api = Api(server.address)
    api.wait_ready("n0")
    script = (
        "import os, time\n"
        "print('pid', os.getpid(), flush=True)\n"
        "for i in range(30):\n"
        "    print('tick', i, flush=True)\n"
        "    time.sleep(0.2)\n"
        "print('done', flush=True)\n"
    )
    spec = write_spec(tmp_path / "tick.yaml", name="ticker", devices_per_worker=2, command=[PY, "-c", script])
    result = cli(server.address, "submit", str(spec), "--output", "json")
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["id"]
    api.wait_state(job_id, "RUNNING")

    server.kill_hard()  # a crash: no shutdown path runs
    api.close()
    if job_ends_while_server_is_down:
        import time

        time.sleep(8)  # the worker finishes and its exit waits in the agent's outbox

    server = Server(data, listen=f"127.0.0.1:{port}")
    try:
        api = Api(server.address)
        job = api.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=60)
        assert api.state(job_id) == "SUCCEEDED", job.reason
        assert len(job.attempts) == 1, "the worker must not have been restarted"
        logs = cli(server.address, "logs", job_id).stdout
        assert logs.count("pid ") == 1 and "tick 29" in logs and logs.rstrip().endswith("done")
        assert [line for line in logs.splitlines() if line.startswith("tick")] == [
            f"tick {i}" for i in range(30)
        ]
        # The node came back by itself.
        wait_for(lambda: "n0" in api.ready_nodes(), 10)
    finally:
        server.stop()
