"""The shipped examples run through Corral itself: real agents, real workers, real restarts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO, Api, Server, cli, submit, write_spec


def test_training_fails_once_then_resumes_from_its_checkpoint(
    server: Server, start_agent: Any, tmp_path: Path
) -> None:
    start_agent(server.address, "n0")
    api = Api(server.address)
    api.wait_ready("n0")
    spec = write_spec(
        tmp_path / "resume.yaml",
        name="resume",
        command=[
            "python",
            "examples/train.py",
            "--steps",
            "120",
            "--checkpoint-every",
            "20",
            "--fail-at-step",
            "70",
        ],
        devices_per_worker=1,
        max_restarts=1,
        checkpoint_dir=str(tmp_path / "ckpt"),
        working_dir=str(REPO),
    )
    job_id = submit(server, spec)
    job = api.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=90)
    assert api.state(job_id) == "SUCCEEDED", job.reason
    assert job.restarts == 1 and "exited with code 1" in job.attempts[0].outcome
    first = cli(server.address, "logs", job_id, "--attempt", "1").stdout
    second = cli(server.address, "logs", job_id, "--attempt", "2").stdout
    assert "injected failure before step 70" in first
    resumed = re.search(r"resumed from \S+ at step (\d+)", second)
    assert resumed and int(resumed.group(1)) == 60, second
    assert "step 60/120" not in second and "final loss" in second

    # The same training, uninterrupted, ends with bit-identical weights.
    spec = write_spec(
        tmp_path / "straight.yaml",
        name="straight",
        command=["python", "examples/train.py", "--steps", "120"],
        devices_per_worker=1,
        checkpoint_dir=str(tmp_path / "ckpt2"),
        working_dir=str(REPO),
    )
    straight = submit(server, spec)
    api.wait_state(straight, "SUCCEEDED", "FAILED", timeout=60)
    final = [line for line in second.splitlines() if line.startswith("final loss")]
    assert final and final[0] in cli(server.address, "logs", straight).stdout


def test_ddp_example_trains_across_two_workers(server: Server, start_agent: Any) -> None:
    pytest.importorskip("torch", reason="the torch.distributed example needs PyTorch")
    start_agent(server.address, "n0")
    api = Api(server.address)
    api.wait_ready("n0")
    job_id = submit(server, REPO / "examples" / "job-ddp.yaml")
    job = api.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=180)
    logs = cli(server.address, "logs", job_id).stdout
    assert api.state(job_id) == "SUCCEEDED", job.reason + logs
    assert len(job.attempts[0].workers) == 2
    assert "[rank 0] final loss" in logs and "(world size 2)" in logs
