"""The placement engine and queues in the live control plane: real server, real agents.

Quotas hold a job back and say so in `corral job`; `corral queues` shows the numbers; a
higher-priority job preempts a lower one, which goes back to the queue and returns when
room frees up; an unknown queue is refused at submit.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Api, Server, cli, cli_json, submit, wait_for, write_spec

PY = sys.executable
SLEEPER = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(600)"


@pytest.fixture
def quota_server(tmp_path: Path) -> Iterator[Server]:
    queues = tmp_path / "queues.yaml"
    queues.write_text("queues:\n  - name: research\n    quotas:\n      - {vendor: nvidia, nominal: 8}\n")
    srv = Server(tmp_path / "server", "127.0.0.1:0", "--queues", str(queues))
    yield srv
    srv.stop()


def sleeper(tmp_path: Path, name: str, **fields: Any) -> Path:
    return write_spec(tmp_path / f"{name}.yaml", name=name, command=[PY, "-c", SLEEPER], **fields)


def test_quota_holds_a_job_back_and_says_why(quota_server: Server, start_agent: Any, tmp_path: Path) -> None:
    start_agent(quota_server.address, "h100-a")
    start_agent(quota_server.address, "h100-b")
    api = Api(quota_server.address)
    api.wait_ready("h100-a", "h100-b")

    first = submit(quota_server, sleeper(tmp_path, "first", queue="research", devices_per_worker=8))
    api.wait_state(first, "RUNNING")
    second = submit(quota_server, sleeper(tmp_path, "second", queue="research", devices_per_worker=4))
    api.wait_state(second, "PENDING")
    # The reason is set by the scheduling pass after submit; wait for it.
    reason = wait_for(
        lambda: "quota" in api.job(second).reason and api.job(second).reason, what="quota reason"
    )
    assert "queue research at quota 8/8" in reason, reason
    shown = cli(quota_server.address, "job", second)
    assert shown.returncode == 0 and "quota 8/8" in shown.stdout, shown.stdout

    queues = cli_json(quota_server.address, "queues")
    research = next(q for q in queues["queues"] if q["name"] == "research")
    nvidia = next(p for p in research["pools"] if p["vendor"] == "nvidia")
    assert nvidia["nominal"] == 8 and nvidia["in_use"] == 8 and nvidia["pending_jobs"] == 1
    assert queues["policy"] == "corral"

    # The default queue has no quota: the same request goes ahead there.
    other = submit(quota_server, sleeper(tmp_path, "other", devices_per_worker=4))
    api.wait_state(other, "RUNNING")
    # Room in the quota again: the held job starts.
    assert cli(quota_server.address, "cancel", first).returncode == 0
    api.wait_state(second, "RUNNING")
    api.close()


def test_unknown_queue_is_refused_at_submit(quota_server: Server, tmp_path: Path) -> None:
    result = cli(quota_server.address, "submit", str(sleeper(tmp_path, "lost", queue="reserch")))
    assert result.returncode != 0
    assert "unknown queue 'reserch'" in result.stderr and "research" in result.stderr, result.stderr


def test_higher_priority_preempts_and_the_victim_comes_back(
    server: Server, start_agent: Any, tmp_path: Path
) -> None:
    start_agent(server.address, "h100-a")
    api = Api(server.address)
    api.wait_ready("h100-a")
    low = submit(server, sleeper(tmp_path, "low", devices_per_worker=8, priority=0))
    api.wait_state(low, "RUNNING")
    high = submit(server, sleeper(tmp_path, "high", devices_per_worker=8, priority=10))
    api.wait_state(high, "RUNNING", timeout=90)
    victim = api.wait_state(low, "PENDING")
    assert victim.restarts == 0  # preemption is not the job's failure
    events = cli(server.address, "job", low).stdout
    assert "preempted" in events, events
    assert cli(server.address, "cancel", high).returncode == 0
    api.wait_state(low, "RUNNING", timeout=90)
    assert len(api.job(low).attempts) == 2
    api.close()


def test_two_half_device_jobs_share_one_device(server: Server, start_agent: Any, tmp_path: Path) -> None:
    start_agent(server.address, "mlu-a", "mlu370-x8-4")
    api = Api(server.address)
    api.wait_ready("mlu-a")
    halves = [submit(server, sleeper(tmp_path, f"half-{i}", devices_per_worker=0.5)) for i in range(2)]
    jobs = [api.wait_state(j, "RUNNING") for j in halves]
    slots = [(w.node_name, list(w.device_indices)) for j in jobs for w in j.attempts[-1].workers]
    assert slots[0] == slots[1] and len(slots[0][1]) == 1, slots  # the second half fills the first's device
    # A whole-device job does not land on the shared device.
    whole = api.wait_state(submit(server, sleeper(tmp_path, "whole", devices_per_worker=1)), "RUNNING")
    assert list(whole.attempts[-1].workers[0].device_indices) != slots[0][1]
    api.close()
