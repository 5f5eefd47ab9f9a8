"""Fault tolerance end to end, with real processes: a real `corral server`, real agents on
simulated devices (the fault injector), the real example training script and its SDK.

- a device falls off the bus: the gang resumes on a hot spare from its last checkpoint and
  ends with the same weights as a run that never failed;
- a job that always crashes ends FAILED, blamed on the job, and the hardware stays HEALTHY;
- a drained node's job is moved with a fresh checkpoint taken on request;
- a SUSPECT warning gets a checkpoint taken before the device fails;
- a job that stops reporting progress is restarted as hung.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from corral.v1 import cluster_pb2, node_pb2

from tests.harness import REPO, Api, Server, cli, submit, wait_for, write_spec

FAST = ("--restart-backoff", "0.2", "--stop-grace", "3", "--checkpoint-timeout", "20")
MakeServer = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[MakeServer]:
    started: list[Server] = []

    def make(*extra: str) -> Server:
        srv = Server(tmp_path / f"server-{len(started)}", "127.0.0.1:0", *FAST, *extra)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def cluster(
    make_server: MakeServer, start_agent: Any, *names: str, flags: tuple[str, ...] = ()
) -> tuple[Server, Api]:
    server = make_server(*flags)
    for name in names:
        start_agent(server.address, name)
    api = Api(server.address)
    api.wait_ready(*names)
    return server, api


def submit_long_job(server: Server, tmp_path: Path, name: str) -> str:
    """A whole-node job that runs for a while and never checkpoints unless asked to."""
    spec = write_spec(
        tmp_path / f"{name}.yaml",
        name=name,
        command=train(2000, "--checkpoint-every", "100000"),
        devices_per_worker=8,
        checkpoint_dir=str(tmp_path / f"ckpt-{name}"),
        working_dir=str(REPO),
    )
    return submit(server, spec)


def second_attempt_running(api: Api, job_id: str) -> Any:
    return wait_for(
        lambda: len((j := api.job(job_id)).attempts) == 2 and api.state(job_id) == "RUNNING" and j, 60
    )


def train(steps: int, *extra: str) -> list[str]:
    return ["python", "examples/train.py", "--steps", str(steps), "--step-sleep", "0.02", *extra]


def events(api: Api, *kinds: str, job_id: str = "", node: str = "") -> list[Any]:
    request = cluster_pb2.ListEventsRequest(job_id=job_id, node_name=node, kinds=list(kinds), limit=10_000)
    return list(api.cluster.ListEvents(request, timeout=5).events)


def inject(api: Api, node: str, device: int, fault: str) -> None:
    api.nodes.InjectFault(
        node_pb2.InjectFaultRequest(node_name=node, device_index=device, fault=fault), timeout=5
    )


def progressed(api: Api, job_id: str, step: int) -> Any:
    """The job once its current attempt has reported progress past `step`."""
    return wait_for(
        lambda: (
            (j := api.job(job_id)).attempts
            and max(w.progress_step for w in j.attempts[-1].workers) >= step
            and j
        ),
        60,
        0.1,
        what=f"job {job_id} past step {step}",
    )


def final_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("final loss")]
    assert lines, text
    return lines[-1]


def test_fell_off_the_bus_resumes_on_a_hot_spare_with_the_result_of_a_clean_run(
    make_server: MakeServer, start_agent: Any, tmp_path: Path
) -> None:
    spares = ("--hot-spares", "1")
    server, api = cluster(make_server, start_agent, "n0", "n1", "n2", flags=spares)
    spare = wait_for(
        lambda: [n.name for n in api.nodes.List(node_pb2.ListNodesRequest()).nodes if n.hot_spare], 10
    )
    assert len(spare) == 1, spare  # one node held back for the one device model
    spec = write_spec(
        tmp_path / "gang.yaml",
        name="gang",
        command=train(300, "--checkpoint-every", "20"),
        workers=2,
        devices_per_worker=8,
        checkpoint_dir=str(tmp_path / "ckpt"),
        working_dir=str(REPO),
    )
    job_id = submit(server, spec)
    api.wait_state(job_id, "RUNNING")
    job = wait_for(lambda: (j := api.job(job_id)).checkpoints and j.checkpoints[-1].step >= 40 and j, 60)
    first = job.attempts[0]
    assert spare[0] not in {w.node_name for w in first.workers}  # the spare took no normal work
    victim = first.workers[1].node_name
    inject(api, victim, first.workers[1].device_indices[0], "xid:79")

    done = api.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=120)
    assert api.state(job_id) == "SUCCEEDED", done.reason
    assert len(done.attempts) == 2
    failed, second = done.attempts
    assert failed.blame == "hardware" and "xid:79" in failed.cause
    assert done.restarts == 0  # hardware failures do not spend the job's max_restarts
    assert {w.node_name for w in second.workers} == {first.workers[0].node_name, spare[0]}
    assert second.resumed_from_step >= 40 and second.resume_path
    node = api.node(victim)
    assert node.health == "UNHEALTHY" and node.cordoned and "auto-cordoned" in node.cordon_reason
    recovery = [e for e in events(api, "recovery", job_id=job_id) if "hot spare" in e.message]
    assert recovery and spare[0] in recovery[0].message
    shown = cli(server.address, "events", "--cause", "xid:79", "--kind", "failure")
    assert shown.returncode == 0 and job_id in shown.stdout, shown.stdout + shown.stderr

    resumed = cli(server.address, "logs", job_id, "--attempt", "2", "--rank", "0").stdout
    assert f"at step {second.resumed_from_step}" in resumed
    clean = subprocess.run(
        [sys.executable, "examples/train.py", "--steps", "300", "--checkpoint-dir", str(tmp_path / "clean")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    assert final_line(resumed) == final_line(clean.stdout)  # bit-identical weights
    api.close()


def test_a_job_that_always_crashes_is_blamed_and_fails_leaving_the_hardware_healthy(
    make_server: MakeServer, start_agent: Any, tmp_path: Path
) -> None:
    server, api = cluster(make_server, start_agent, "n0", "n1", "n2")
    spec = write_spec(
        tmp_path / "crash.yaml",
        name="crash",
        command=train(50, "--fail-always-at-step", "3"),
        devices_per_worker=8,
        max_restarts=5,
        checkpoint_dir=str(tmp_path / "ckpt"),
        working_dir=str(REPO),
    )
    job_id = submit(server, spec)
    job = api.wait_state(job_id, "FAILED", "SUCCEEDED", timeout=90)
    assert api.state(job_id) == "FAILED"
    # Three failures the same way on three different healthy nodes settle it before
    # max_restarts (5) runs out: the job, not the hardware.
    assert len(job.attempts) == 3 and job.restarts == 2, job.reason
    assert "the job, not the hardware" in job.reason
    assert all(a.blame == "job" for a in job.attempts)
    assert len({a.workers[0].node_name for a in job.attempts}) == 3
    for name in ("n0", "n1", "n2"):
        node = api.node(name)
        assert node.health == "HEALTHY" and not node.cordoned
    api.close()


def test_drain_moves_the_job_with_a_fresh_checkpoint(
    make_server: MakeServer, start_agent: Any, tmp_path: Path
) -> None:
    server, api = cluster(make_server, start_agent, "n0", "n1")
    # No periodic checkpoints of its own: the only one is the one the drain asks for.
    job_id = submit_long_job(server, tmp_path, "move")
    job = progressed(api, job_id, 30)
    node = job.attempts[0].workers[0].node_name
    assert cli(server.address, "drain", node, "--reason", "maintenance").returncode == 0
    moved = second_attempt_running(api, job_id)
    states = [
        e.message for e in events(api, "state", job_id=job_id) if "checkpointing before the move" in e.message
    ]
    assert states, "the job went through CHECKPOINTING"
    requested = [c for c in moved.checkpoints if c.trigger == "requested" and c.complete]
    assert requested and requested[0].step >= 30
    assert moved.attempts[1].resumed_from_step == requested[0].step
    assert moved.attempts[1].workers[0].node_name != node
    assert moved.restarts == 0 and "draining" in moved.attempts[0].outcome
    assert cli(server.address, "cancel", job_id).returncode == 0
    api.close()


def test_a_suspect_warning_gets_a_checkpoint_before_the_device_fails(
    make_server: MakeServer, start_agent: Any, tmp_path: Path
) -> None:
    server, api = cluster(make_server, start_agent, "n0", "n1")
    job_id = submit_long_job(server, tmp_path, "warned")
    job = progressed(api, job_id, 20)
    worker = job.attempts[0].workers[0]
    inject(api, worker.node_name, worker.device_indices[0], "xid:92")  # high single-bit ECC rate
    wait_for(lambda: api.node(worker.node_name).devices[worker.device_indices[0]].health == 2, 10)  # SUSPECT
    warned = wait_for(lambda: [c for c in api.job(job_id).checkpoints if c.trigger == "requested"], 30)
    inject(api, worker.node_name, worker.device_indices[0], "xid:79")
    back = second_attempt_running(api, job_id)
    assert back.attempts[0].blame == "hardware"
    assert back.attempts[1].resumed_from_step >= warned[0].step > 0
    kinds = [(e.kind, e.message) for e in events(api, "checkpoint", "failure", job_id=job_id)]
    first_checkpoint = next(i for i, (k, _) in enumerate(kinds) if k == "checkpoint")
    first_failure = next(i for i, (k, _) in enumerate(kinds) if k == "failure")
    assert first_checkpoint < first_failure, kinds  # the warning's checkpoint came first
    assert cli(server.address, "cancel", job_id).returncode == 0
    api.close()


def test_a_job_without_progress_is_restarted_as_hung(
    make_server: MakeServer, start_agent: Any, tmp_path: Path
) -> None:
    server, api = cluster(make_server, start_agent, "n0")
    spec = write_spec(
        tmp_path / "hang.yaml",
        name="hang",
        command=train(80, "--hang-at-step", "30"),
        devices_per_worker=1,
        hang_timeout="10s",
        max_restarts=1,
        checkpoint_dir=str(tmp_path / "ckpt"),
        working_dir=str(REPO),
    )
    job_id = submit(server, spec)
    job = api.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=90)
    assert api.state(job_id) == "SUCCEEDED", job.reason
    hung = job.attempts[0]
    assert "hang" in hung.cause and hung.blame == "unknown"
    assert job.restarts == 1  # nobody to blame yet: it spends one of the job's restarts
    api.close()


def test_a_node_in_repeated_hardware_failures_is_quarantined_with_its_evidence(
    make_server: MakeServer, start_agent: Any, tmp_path: Path
) -> None:
    server, api = cluster(make_server, start_agent, "n0", "n1")
    assert cli(server.address, "cordon", "n1").returncode == 0  # every job starts on n0
    jobs = []
    for i in range(3):
        spec = write_spec(
            tmp_path / f"j{i}.yaml",
            name=f"job-{i}",
            command=train(100000, "--checkpoint-every", "100000"),
            devices_per_worker=1,
            checkpoint_dir=str(tmp_path / f"ckpt{i}"),
            working_dir=str(REPO),
        )
        jobs.append(submit(server, spec))
    running = [api.wait_state(j, "RUNNING") for j in jobs]
    assert {r.attempts[0].workers[0].node_name for r in running} == {"n0"}
    assert cli(server.address, "uncordon", "n1").returncode == 0
    for job in running:  # a different device each time: the node is the common factor
        inject(api, "n0", job.attempts[0].workers[0].device_indices[0], "ecc-dbe")
    node = wait_for(lambda: (n := api.node("n0")).health == "QUARANTINED" and n, 20, what="n0 quarantined")
    assert node.cordoned
    assert {e.job_id for e in node.lemon_evidence} == set(jobs)
    shown = cli(server.address, "node", "n0").stdout
    assert "QUARANTINED" in shown and all(j in shown for j in jobs), shown
    for job_id in jobs:  # each gang moved on, none spent a restart of its own
        moved = wait_for(lambda j=job_id: len((x := api.job(j)).attempts) == 2 and x, 30)
        assert moved.attempts[1].workers[0].node_name == "n1" and moved.restarts == 0
    cleared = cli(server.address, "clear-health", "n0", "--reason", "DIMMs replaced")
    assert cleared.returncode == 0, cleared.stderr
    node = api.node("n0")
    assert node.health == "HEALTHY" and not node.lemon_evidence
    assert all(d.health == 1 for d in node.devices)  # DEVICE_HEALTH_HEALTHY
    for job_id in jobs:
        cli(server.address, "cancel", job_id)
    api.close()
