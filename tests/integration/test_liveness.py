"""Dead and hung agents, with real processes: the gang moves to a healthy node."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Api, Server, cli, submit, wait_for, write_spec

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


def job_on_one_of_two(
    server: Server, start_agent: Any, tmp_path: Path
) -> tuple[Api, dict[str, Any], str, str]:
    """Two nodes, a whole-node job running on one: the API, the agents, the job id, its node."""
    agents = {name: start_agent(server.address, name) for name in ("n-a", "n-b")}
    api = Api(server.address)
    api.wait_ready("n-a", "n-b")
    spec = write_spec(tmp_path / "job.yaml", name="long", command=[PY, "-c", SLEEPER], devices_per_worker=8)
    job_id = submit(server, spec)
    job = api.wait_state(job_id, "RUNNING")
    return api, agents, job_id, job.attempts[-1].workers[0].node_name


def running_again(api: Api, job_id: str, what: str) -> Any:
    """The job's second attempt, once it runs."""
    return wait_for(
        lambda: api.state(job_id) == "RUNNING" and len((j := api.job(job_id)).attempts) == 2 and j,
        timeout=30,
        what=what,
    )


def test_a_killed_agent_is_detected_and_its_gang_moves(
    fast_server: Server, start_agent: Any, tmp_path: Path
) -> None:
    api, agents, job_id, first = job_on_one_of_two(fast_server, start_agent, tmp_path)
    agents[first].kill_hard()
    moved = running_again(api, job_id, "the gang running again on the other node")
    assert moved.attempts[-1].workers[0].node_name != first
    assert moved.restarts == 0  # the node failed, not the job
    events = cli(fast_server.address, "job", job_id).stdout
    assert f"node {first} lost" in events, events
    api.close()


def test_a_hung_agent_is_closed_after_the_heartbeat_timeout(
    fast_server: Server, start_agent: Any, tmp_path: Path
) -> None:
    api, agents, job_id, first = job_on_one_of_two(fast_server, start_agent, tmp_path)
    hung = agents[first]
    os.kill(hung.popen.pid, signal.SIGSTOP)  # the agent only: its stream stays open, silent
    try:
        wait_for(lambda: first not in api.ready_nodes(), timeout=HEARTBEAT_S + 10, what="stream closed")
        moved = running_again(api, job_id, "the gang running again elsewhere")
        assert moved.attempts[-1].workers[0].node_name != first
    finally:
        os.kill(hung.popen.pid, signal.SIGCONT)
    # Back from the hang, the agent reconnects and its stale worker is stopped, not kept.
    wait_for(lambda: first in api.ready_nodes(), timeout=30, what="reconnect")
    wait_for(lambda: not api.node(first).workloads, timeout=30, what="stale worker stopped")
    api.close()
