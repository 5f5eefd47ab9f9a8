"""Early warnings read from telemetry, end to end: a real `corral server`, a real agent on
simulated devices, the real example training script. A pending row remap shows only in what
the device reports; the agent's telemetry watch turns it into a health event, the device turns
SUSPECT, and the running job keeps running with a checkpoint taken on request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corral.v1 import node_pb2

from tests.harness import REPO, Api, Server, cli, submit, wait_for, write_spec

SUSPECT = 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "server", "127.0.0.1:0", "--restart-backoff", "0.2", "--checkpoint-timeout", "20")
    yield srv
    srv.stop()


def test_a_pending_row_remap_turns_the_device_suspect_and_checkpoints_the_job(
    server: Server, start_agent: Any, tmp_path: Path
) -> None:
    start_agent(server.address, "n0")
    api = Api(server.address)
    api.wait_ready("n0")
    spec = write_spec(
        tmp_path / "remap.yaml",
        name="remap",
        command=["python", "examples/train.py", "--steps", "2000", "--step-sleep", "0.02"],
        devices_per_worker=8,
        checkpoint_dir=str(tmp_path / "ckpt"),
        working_dir=str(REPO),
    )
    job_id = submit(server, spec)
    wait_for(
        lambda: (
            (j := api.job(job_id)).attempts and max(w.progress_step for w in j.attempts[-1].workers) >= 20
        ),
        60,
        what="training progress",
    )
    index = api.job(job_id).attempts[0].workers[0].device_indices[0]
    api.nodes.InjectFault(
        node_pb2.InjectFaultRequest(node_name="n0", device_index=index, fault="remap-pending"), timeout=5
    )
    wait_for(lambda: api.node("n0").devices[index].health == SUSPECT, 30, what="device SUSPECT")
    wait_for(
        lambda: [c for c in api.job(job_id).checkpoints if c.trigger == "requested"], 30, what="checkpoint"
    )
    job = api.job(job_id)
    assert api.state(job_id) == "RUNNING" and len(job.attempts) == 1
    assert cli(server.address, "cancel", job_id).returncode == 0
    api.close()
