"""Dead and hung agents, with real processes: the gang moves to a healthy node."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Api, Server, cli, wait_for, write_spec

PY = sys.executable
SLEEPER = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(600)"
GRACE_S = 2.0
HEARTBEAT_S = 3.0


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        tmp_path / "server",
        "127.0.0.1:0",
        "--node-grace",
        str(GRACE_S),
        "--heartbeat-timeout",
        str(HEARTBEAT_S),
    )
    yield srv
    srv.stop()


def run_on_first(server: Server, api: Api, tmp_path: Path) -> tuple[str, str]:
    spec = write_spec(tmp_path / "job.yaml", name="long", command=[PY, "-c", SLEEPER], devices_per_worker=8)
    result = cli(server.address, "submit", str(spec), "--output", "json")
    assert result.returncode == 0, result.stderr
    job_id = str(json.loads(result.stdout)["id"])
    job = api.wait_state(job_id, "RUNNING")
    return job_id, job.attempts[-1].workers[0].node_name


def test_a_killed_agent_is_detected_and_its_gang_moves(
    fast_server: Server, start_agent: Any, tmp_path: Path
) -> None:
    agents = {name: start_agent(fast_server.address, name) for name in ("n-a", "n-b")}
    api = Api(fast_server.address)
    api.wait_ready("n-a", "n-b")
    job_id, first = run_on_first(fast_server, api, tmp_path)
    agents[first].kill_hard()
    moved = wait_for(
        lambda: api.state(job_id) == "RUNNING" and len((j := api.job(job_id)).attempts) == 2 and j,
        timeout=30,
        what="the gang running again on the other node",
    )
    assert moved.attempts[-1].workers[0].node_name != first
    assert moved.restarts == 0  # the node failed, not the job
    events = cli(fast_server.address, "job", job_id).stdout
    assert f"node {first} lost" in events, events
    api.close()


def test_a_hung_agent_is_closed_after_the_heartbeat_timeout(
    fast_server: Server, start_agent: Any, tmp_path: Path
) -> None:
    agents = {name: start_agent(fast_server.address, name) for name in ("n-a", "n-b")}
    api = Api(fast_server.address)
    api.wait_ready("n-a", "n-b")
    job_id, first = run_on_first(fast_server, api, tmp_path)
    hung = agents[first]
    os.kill(hung.popen.pid, signal.SIGSTOP)  # the agent only: its stream stays open, silent
    try:
        wait_for(lambda: first not in api.ready_nodes(), timeout=HEARTBEAT_S + 10, what="stream closed")
        moved = wait_for(
            lambda: api.state(job_id) == "RUNNING" and len((j := api.job(job_id)).attempts) == 2 and j,
            timeout=30,
            what="the gang running again elsewhere",
        )
        assert moved.attempts[-1].workers[0].node_name != first
    finally:
        os.kill(hung.popen.pid, signal.SIGCONT)
    # Back from the hang, the agent reconnects and its stale worker is stopped, not kept.
    wait_for(lambda: first in api.ready_nodes(), timeout=30, what="reconnect")
    wait_for(lambda: not api.node(first).workloads, timeout=30, what="stale worker stopped")
    api.close()
