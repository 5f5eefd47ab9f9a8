"""The core loop with real processes: a control plane and simulated agents on loopback."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from tests.harness import Api, Server, cli, submit, wait_for, write_spec

PY = sys.executable
ENV_DUMP = (
    "import json, os; keys = ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', "
    "'MASTER_PORT', 'CORRAL_JOB_ID', 'CORRAL_ATTEMPT', 'CORRAL_CHECKPOINT_DIR', 'CUDA_VISIBLE_DEVICES', "
    "'ASCEND_RT_VISIBLE_DEVICES', 'GREETING']; "
    "print('ENV ' + json.dumps({k: os.environ.get(k) for k in keys}))"
)


def env_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line.split("ENV ", 1)[1]) for line in text.splitlines() if "ENV " in line]


def test_gang_runs_with_torchrun_environment_and_logs_per_rank(
    server: Server, start_agent: Any, tmp_path: Path
) -> None:
    start_agent(server.address, "h100-a")
    start_agent(server.address, "ascend-a", "ascend-910b-8")
    api = Api(server.address)
    api.wait_ready("h100-a", "ascend-a")

    spec = write_spec(
        tmp_path / "env.yaml",
        name="env-dump",
        command=[PY, "-c", ENV_DUMP],
        workers=2,
        devices_per_worker=3,
        accelerator={"vendors": ["nvidia"]},
        env={"GREETING": "hi"},
    )
    job_id = submit(server, spec)
    job = api.wait_state(job_id, "SUCCEEDED", "FAILED")
    assert api.state(job_id) == "SUCCEEDED", job.reason
    [attempt] = job.attempts
    assert [(w.node_name, list(w.device_indices)) for w in attempt.workers] == [
        ("h100-a", [0, 1, 2]),
        ("h100-a", [3, 4, 5]),
    ]
    logs = cli(server.address, "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    envs = sorted(env_lines(logs.stdout), key=lambda e: e["RANK"])
    assert [e["RANK"] for e in envs] == ["0", "1"]
    for rank, env in enumerate(envs):
        assert env["WORLD_SIZE"] == "2" and env["LOCAL_RANK"] == str(rank) and env["LOCAL_WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] == "127.0.0.1" and env["MASTER_PORT"] == str(attempt.master_port)
        assert env["CORRAL_JOB_ID"] == job_id and env["CORRAL_ATTEMPT"] == "1"
        assert env["GREETING"] == "hi" and env["CORRAL_CHECKPOINT_DIR"]
    assert envs[0]["CUDA_VISIBLE_DEVICES"] == "0,1,2" and envs[1]["CUDA_VISIBLE_DEVICES"] == "3,4,5"

    rank1 = cli(server.address, "logs", job_id, "--rank", "1")
    assert [e["RANK"] for e in env_lines(rank1.stdout)] == ["1"]

    # The other vendor gets its own visibility variable.
    spec = write_spec(
        tmp_path / "asc.yaml",
        name="asc",
        command=[PY, "-c", ENV_DUMP],
        devices_per_worker=2,
        accelerator={"vendors": ["ascend"]},
    )
    job_id = submit(server, spec)
    assert api.wait_state(job_id, "SUCCEEDED", "FAILED").state
    [env] = env_lines(cli(server.address, "logs", job_id).stdout)
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1" and env["CUDA_VISIBLE_DEVICES"] is None


def test_failure_restarts_then_succeeds_and_fails_when_budget_is_spent(
    server: Server, start_agent: Any, tmp_path: Path
) -> None:
    start_agent(server.address, "n0")
    api = Api(server.address)
    api.wait_ready("n0")
    flaky = (
        "import os, sys; attempt = os.environ['CORRAL_ATTEMPT']; print('attempt', attempt); "
        "sys.exit(3 if attempt == '1' else 0)"
    )
    job_id = submit(
        server,
        write_spec(
            tmp_path / "flaky.yaml",
            name="flaky",
            command=[PY, "-c", flaky],
            devices_per_worker=1,
            max_restarts=1,
        ),
    )
    job = api.wait_state(job_id, "SUCCEEDED", "FAILED")
    assert api.state(job_id) == "SUCCEEDED", job.reason
    assert job.restarts == 1 and len(job.attempts) == 2
    assert "exited with code 3" in job.attempts[0].outcome

    job_id = submit(
        server,
        write_spec(
            tmp_path / "bad.yaml",
            name="always-fails",
            command=[PY, "-c", "import sys; sys.exit(7)"],
            devices_per_worker=1,
        ),
    )
    job = api.wait_state(job_id, "SUCCEEDED", "FAILED")
    assert api.state(job_id) == "FAILED"
    assert "exited with code 7" in job.reason
    shown = cli(server.address, "job", job_id)
    assert shown.returncode == 0 and "code 7" in shown.stdout

    job_id = submit(
        server,
        write_spec(tmp_path / "nocmd.yaml", name="nocmd", command=["/no/such/binary"], devices_per_worker=1),
    )
    job = api.wait_state(job_id, "SUCCEEDED", "FAILED")
    assert "failed to start" in job.reason


def test_cancel_stops_the_whole_gang(server: Server, start_agent: Any, tmp_path: Path) -> None:
    start_agent(server.address, "n0")
    api = Api(server.address)
    api.wait_ready("n0")
    job_id = submit(
        server,
        write_spec(
            tmp_path / "sleep.yaml",
            name="sleeper",
            workers=2,
            devices_per_worker=1,
            command=[PY, "-c", "import time; print('up', flush=True); time.sleep(600)"],
        ),
    )
    api.wait_state(job_id, "RUNNING")
    free_before = api.node("n0").devices_free
    assert free_before == 6
    result = cli(server.address, "cancel", job_id, "--reason", "changed my mind")
    assert result.returncode == 0, result.stderr
    assert api.state(job_id) == "CANCELLED"

    def stopped() -> bool:
        return all(w.phase == "exited" for w in api.job(job_id).attempts[0].workers)

    wait_for(stopped, 30, what="workers stopped")
    assert {w.signal for w in api.job(job_id).attempts[0].workers} == {signal.SIGTERM}
    wait_for(lambda: api.node("n0").devices_free == 8, 10, what="devices freed")


def test_cordon_drain_and_injected_faults_steer_placement(
    server: Server, start_agent: Any, tmp_path: Path
) -> None:
    start_agent(server.address, "n0")
    start_agent(server.address, "n1")
    api = Api(server.address)
    api.wait_ready("n0", "n1")

    assert cli(server.address, "cordon", "n0", "--reason", "maintenance").returncode == 0
    long_job = write_spec(
        tmp_path / "long.yaml",
        name="long",
        devices_per_worker=8,
        command=[PY, "-c", "import time; time.sleep(600)"],
    )
    job_id = submit(server, long_job)
    job = api.wait_state(job_id, "RUNNING")
    assert job.attempts[0].workers[0].node_name == "n1"

    # Drain n1: the job is checkpoint-requested, stopped and requeued without spending a restart.
    assert cli(server.address, "uncordon", "n0").returncode == 0
    assert cli(server.address, "drain", "n1").returncode == 0
    wait_for(
        lambda: len(api.job(job_id).attempts) == 2 and api.state(job_id) == "RUNNING", 60, what="requeued"
    )
    job = api.job(job_id)
    assert job.attempts[1].workers[0].node_name == "n0" and job.restarts == 0
    assert "preempted: node n1 is draining" in job.attempts[0].outcome
    node = api.node("n1")
    assert node.cordoned and node.draining
    assert cli(server.address, "cancel", job_id).returncode == 0
    # Lifting the drain makes n1 take work again (the agent was told to stop accepting it).
    assert cli(server.address, "uncordon", "n1").returncode == 0
    assert cli(server.address, "cordon", "n0").returncode == 0
    job_id = submit(
        server,
        write_spec(
            tmp_path / "after.yaml",
            name="after-drain",
            devices_per_worker=1,
            command=[PY, "-c", "print('ok')"],
        ),
    )
    assert api.wait_state(job_id, "SUCCEEDED", "FAILED").attempts[0].workers[0].node_name == "n1"
    assert api.state(job_id) == "SUCCEEDED"
    assert cli(server.address, "uncordon", "n0").returncode == 0

    # An injected uncorrectable ECC error turns the device UNHEALTHY; placement avoids it.
    result = cli(server.address, "sim", "inject", "--node", "n0", "--device", "3", "--fault", "ecc-dbe")
    assert result.returncode == 0, result.stderr
    from corral.v1 import common_pb2

    wait_for(
        lambda: api.node("n0").devices[3].health == common_pb2.DEVICE_HEALTH_UNHEALTHY, 15, what="unhealthy"
    )
    wait_for(lambda: api.node("n0").devices_free == 7, 30, what="devices free after cancel")
    from corral.v1 import cluster_pb2

    status = api.cluster.GetStatus(cluster_pb2.GetStatusRequest(), timeout=5)
    assert (status.devices_total, status.devices_free) == (16, 15)  # the unhealthy one is not free
    job_id = submit(
        server,
        write_spec(
            tmp_path / "seven.yaml", name="seven", devices_per_worker=7, command=[PY, "-c", "print('ok')"]
        ),
    )
    job = api.wait_state(job_id, "SUCCEEDED", "FAILED")
    assert 3 not in job.attempts[0].workers[0].device_indices

    # A device fallen off the bus takes its node out: UNHEALTHY and cordoned automatically.
    result = cli(server.address, "sim", "inject", "--node", "n1", "--device", "0", "--fault", "fell-off-bus")
    assert result.returncode == 0, result.stderr
    gone = wait_for(lambda: (n := api.node("n1")).cordoned and n, 15, what="n1 auto-cordoned")
    assert gone.health == "UNHEALTHY" and "auto-cordoned" in gone.cordon_reason

    bad = cli(server.address, "sim", "inject", "--node", "n0", "--device", "0", "--fault", "meltdown")
    assert bad.returncode == 2 and "xid:<code>" in bad.stderr
    missing = cli(server.address, "sim", "inject", "--node", "nope", "--device", "0", "--fault", "hang")
    assert missing.returncode == 3


def test_agent_shutdown_requeues_without_spending_a_restart(
    server: Server, start_agent: Any, tmp_path: Path
) -> None:
    a0 = start_agent(server.address, "n0")
    api = Api(server.address)
    api.wait_ready("n0")
    job_id = submit(
        server,
        write_spec(
            tmp_path / "long.yaml",
            name="long",
            devices_per_worker=8,
            command=[PY, "-c", "import time; time.sleep(600)"],
        ),
    )
    api.wait_state(job_id, "RUNNING")
    start_agent(server.address, "n1")
    api.wait_ready("n1")
    a0.stop()  # SIGTERM: the agent says it is leaving, then stops its workers
    wait_for(lambda: len(api.job(job_id).attempts) == 2 and api.state(job_id) == "RUNNING", 60, what="moved")
    job = api.job(job_id)
    assert job.restarts == 0 and job.attempts[1].workers[0].node_name == "n1"
    assert "agent on n0 shut down" in job.attempts[0].outcome
