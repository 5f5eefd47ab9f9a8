"""The executor against real processes: environment, logs, exits, signals, process groups."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from corral.v1 import agent_pb2, common_pb2

from agents.executor import Executor

Py = Callable[[str], list[str]]


def spec(
    command: list[str], *, job: str = "job-1", attempt: int = 0, rank: int = 0, **kw: Any
) -> agent_pb2.StartWorkload:
    return agent_pb2.StartWorkload(
        workload_id=f"{job}.{attempt}.{rank}",
        job_id=job,
        attempt=attempt,
        rank=rank,
        command=command,
        **kw,
    )


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_environment_and_log_file(executor: Executor, py: Py, tmp_path: Path) -> None:
    code = "import json, os, sys; print(json.dumps(dict(os.environ))); print('to stderr', file=sys.stderr)"
    s = spec(
        py(code),
        job="j1",
        attempt=2,
        rank=3,
        local_rank=1,
        world_size=4,
        local_world_size=2,
        device_indices=[2, 5],
        master_addr="10.0.0.7",
        master_port=29500,
        env={"MY_VAR": "hello", "RANK": "99", "CORRAL_JOB_ID": "spoofed"},
    )
    started = await executor.start(s)
    assert started.phase == common_pb2.WORKLOAD_PHASE_RUNNING and started.pid > 0
    final = await asyncio.wait_for(executor.wait(s.workload_id), 10)
    assert final.phase == common_pb2.WORKLOAD_PHASE_EXITED
    assert (final.exit_code, final.signal) == (0, 0)

    log_path = tmp_path / "data" / "logs" / "j1" / "2" / "rank-3.log"
    lines = log_path.read_text().splitlines()
    env = json.loads(lines[0])
    assert lines[1] == "to stderr"
    assert env["CUDA_VISIBLE_DEVICES"] == "2,5"
    ranks = (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"])
    assert ranks == ("3", "1", "4", "2")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("10.0.0.7", "29500")
    assert (env["CORRAL_JOB_ID"], env["CORRAL_ATTEMPT"], env["CORRAL_WORKLOAD_ID"]) == ("j1", "2", "j1.2.3")
    assert env["MY_VAR"] == "hello"
    checkpoint_dir = tmp_path / "data" / "checkpoints" / "j1"
    assert env["CORRAL_CHECKPOINT_DIR"] == str(checkpoint_dir) and checkpoint_dir.is_dir()
    assert env["CORRAL_CONTROL_DIR"] == str(tmp_path / "data" / "control" / "j1.2.3")
    assert not {"CORRAL_RESUME_PATH", "CORRAL_RESUME_STEP", "CORRAL_CHECKPOINT_INTERVAL_S"} & set(env)


async def test_resume_and_interval_environment(tmp_path: Path, py: Py) -> None:
    inherited = {"CORRAL_RESUME_PATH": "/stale", "CORRAL_CONTROL_DIR": "/stale", "PATH": os.environ["PATH"]}
    ex = Executor(tmp_path / "data", "CUDA_VISIBLE_DEVICES", base_env=inherited)
    code = (
        "import json, os, pathlib; "
        "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('CORRAL_')})); "
        "print(pathlib.Path(os.environ['CORRAL_CONTROL_DIR']).is_dir())"
    )
    s = spec(py(code), resume_path="/ckpt/step-40", resume_step=40, checkpoint_interval_s=30.0)
    await ex.start(s)
    await ex.wait(s.workload_id)
    first, second = ex.log_path(s).read_text().splitlines()
    env = json.loads(first)
    assert (env["CORRAL_RESUME_PATH"], env["CORRAL_RESUME_STEP"]) == ("/ckpt/step-40", "40")
    assert env["CORRAL_CHECKPOINT_INTERVAL_S"] == "30.0" and second == "True"
    assert env["CORRAL_CONTROL_DIR"] == str(ex.control_dir(s.workload_id))
    ex.acknowledge_exit(s.workload_id)
    assert not ex.control_dir(s.workload_id).exists()  # read to the end and reported: gone


async def test_checkpoint_dir_and_working_dir_from_spec(executor: Executor, py: Py, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    ckpt = tmp_path / "ckpt" / "here"
    code = "import os; open('cwd.txt', 'w').write(os.getcwd() + '\\n' + os.environ['CORRAL_CHECKPOINT_DIR'])"
    s = spec(py(code), working_dir=str(work), checkpoint_dir=str(ckpt))
    await executor.start(s)
    await executor.wait(s.workload_id)
    cwd, ckpt_env = (work / "cwd.txt").read_text().splitlines()
    assert (cwd, ckpt_env) == (str(work), str(ckpt)) and ckpt.is_dir()


async def test_exit_code_reported(executor: Executor, py: Py) -> None:
    s = spec(py("raise SystemExit(3)"))
    await executor.start(s)
    final = await executor.wait(s.workload_id)
    assert (final.phase, final.exit_code, final.signal) == (common_pb2.WORKLOAD_PHASE_EXITED, 3, 0)
    assert "exited with code 3" in final.message


async def test_death_by_signal_reported(executor: Executor, py: Py) -> None:
    s = spec(py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    await executor.start(s)
    final = await executor.wait(s.workload_id)
    assert (final.exit_code, final.signal) == (0, signal.SIGKILL)
    assert "killed by SIGKILL" in final.message


async def test_stop_sends_sigterm(executor: Executor, py: Py) -> None:
    s = spec(py("import time; print('up', flush=True); time.sleep(60)"))
    await executor.start(s)
    assert executor.stop(s.workload_id, grace_s=5, reason="preempted")
    final = await asyncio.wait_for(executor.wait(s.workload_id), 5)
    assert final.signal == signal.SIGTERM
    assert "SIGTERM" in final.message and "preempted" in final.message and "SIGKILL" not in final.message


async def test_stop_escalates_to_sigkill(executor: Executor, py: Py, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    s = spec(py(code))
    await executor.start(s)
    while not ready.exists():
        await asyncio.sleep(0.02)
    t0 = time.monotonic()
    executor.stop(s.workload_id, grace_s=0.4)
    final = await asyncio.wait_for(executor.wait(s.workload_id), 5)
    assert time.monotonic() - t0 >= 0.35
    assert final.signal == signal.SIGKILL
    assert "SIGKILL after 0.4 s grace" in final.message


async def test_stop_kills_the_whole_group(executor: Executor, py: Py, tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time, pathlib; "
        "p = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
        f"pathlib.Path({str(child_pid_file)!r}).write_text(str(p.pid)); time.sleep(60)"
    )
    s = spec(py(code))
    await executor.start(s)
    while not child_pid_file.exists() or not child_pid_file.read_text():
        await asyncio.sleep(0.02)
    child = int(child_pid_file.read_text())
    assert not dead(child)
    executor.stop(s.workload_id, grace_s=0.3)
    await asyncio.wait_for(executor.wait(s.workload_id), 5)
    for _ in range(100):
        if dead(child):
            break
        await asyncio.sleep(0.02)
    assert dead(child), "the worker's child outlived the stop"


async def test_leftover_children_die_with_the_worker(executor: Executor, py: Py, tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, pathlib; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"pathlib.Path({str(child_pid_file)!r}).write_text(str(p.pid))"
    )
    s = spec(py(code))
    await executor.start(s)
    final = await executor.wait(s.workload_id)
    assert final.exit_code == 0
    child = int(child_pid_file.read_text())
    for _ in range(100):
        if dead(child):
            break
        await asyncio.sleep(0.02)
    assert dead(child)


async def test_missing_working_dir_fails_to_start(executor: Executor, py: Py, tmp_path: Path) -> None:
    s = spec(py("print(1)"), working_dir=str(tmp_path / "nope"))
    status = await executor.start(s)
    assert status.phase == common_pb2.WORKLOAD_PHASE_FAILED_TO_START
    assert str(tmp_path / "nope") in status.message and "does not exist" in status.message


async def test_command_not_found_fails_to_start(executor: Executor, tmp_path: Path) -> None:
    s = spec(["/definitely/not/a/program", "--flag"])
    status = await executor.start(s)
    assert status.phase == common_pb2.WORKLOAD_PHASE_FAILED_TO_START
    assert "No such file or directory" in status.message and "/definitely/not/a/program" in status.message
    log_text = (tmp_path / "data" / "logs" / "job-1" / "0" / "rank-0.log").read_text()
    assert "No such file or directory" in log_text


async def test_bad_devices_and_ids_refused(executor: Executor, py: Py) -> None:
    status = await executor.start(spec(py("print(1)"), device_indices=[0, 8]))
    assert status.phase == common_pb2.WORKLOAD_PHASE_FAILED_TO_START and "[8]" in status.message
    status = await executor.start(spec(py("print(1)"), job=".."))
    assert status.phase == common_pb2.WORKLOAD_PHASE_FAILED_TO_START and "job_id" in status.message


async def test_start_is_idempotent_and_finished_kept_until_acknowledged(executor: Executor, py: Py) -> None:
    s = spec(py("import time; time.sleep(60)"))
    first = await executor.start(s)
    again = await executor.start(s)
    assert again.pid == first.pid
    assert [st.workload_id for st in executor.statuses()] == [s.workload_id]
    executor.stop(s.workload_id, grace_s=2)
    await executor.wait(s.workload_id)
    assert executor.statuses()[0].phase == common_pb2.WORKLOAD_PHASE_EXITED
    assert not executor.stop(s.workload_id, 1.0)  # stopping an exited workload: nothing to do
    assert not executor.stop("unknown.0.0", 1.0)
    executor.acknowledge_exit(s.workload_id)
    assert executor.statuses() == []
    replay = await executor.start(s)  # a late duplicate start must not run the job again
    assert replay.phase == common_pb2.WORKLOAD_PHASE_EXITED and executor.running_ids() == []


async def test_updates_and_busy_devices(tmp_path: Path, py: Py) -> None:
    busy: list[frozenset[int]] = []
    ex = Executor(tmp_path, "MLU_VISIBLE_DEVICES", on_busy=busy.append)
    s = spec(py("import os; print(os.environ['MLU_VISIBLE_DEVICES'])"), device_indices=[1, 3])
    await ex.start(s)
    await ex.wait(s.workload_id)
    phases = [ex.updates.get_nowait().phase for _ in range(ex.updates.qsize())]
    assert phases == [common_pb2.WORKLOAD_PHASE_RUNNING, common_pb2.WORKLOAD_PHASE_EXITED]
    assert busy == [frozenset({1, 3}), frozenset()]
    assert ex.log_path(s).read_text().strip() == "1,3"


async def test_draining_refuses_starts(executor: Executor, py: Py) -> None:
    executor.draining = "maintenance"
    status = await executor.start(spec(py("print(1)")))
    assert status.phase == common_pb2.WORKLOAD_PHASE_FAILED_TO_START and "maintenance" in status.message


async def test_checkpoint_signal_only_reaches_handlers(executor: Executor, py: Py, tmp_path: Path) -> None:
    marker = tmp_path / "checkpointed"
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib; "
        f"signal.signal(signal.SIGUSR1, lambda *a: pathlib.Path({str(marker)!r}).touch()); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    with_handler = spec(py(code), rank=0)
    without = spec(py("import time; time.sleep(60)"), rank=1)
    await executor.start(with_handler)
    await executor.start(without)
    while not ready.exists():
        await asyncio.sleep(0.02)
    ok, message = executor.request_checkpoint(with_handler.workload_id)
    assert ok, message
    for _ in range(100):
        if marker.exists():
            break
        await asyncio.sleep(0.02)
    assert marker.exists()
    ok, message = executor.request_checkpoint(without.workload_id)
    # Filed in the channel for the SDK to find, but not signalled: it would have died of it.
    assert ok and "no process handles SIGUSR1" in message
    await asyncio.sleep(0.1)
    assert without.workload_id in executor.running_ids()
    assert executor.request_checkpoint("nope.0.0")[0] is False
    pid = executor.status(without.workload_id)
    assert pid is not None and os.getpgid(pid.pid) == pid.pid  # its own process group
