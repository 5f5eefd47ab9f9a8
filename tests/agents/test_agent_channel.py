"""The agent's end of the local channel: real workers using the SDK, through the Executor."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from corral.v1 import agent_pb2, common_pb2

from agents.channel import Progress, WorkerChannel
from agents.executor import Executor

Py = Callable[[str], list[str]]
Wait = Callable[..., Any]
RUNNING, EXITED = common_pb2.WORKLOAD_PHASE_RUNNING, common_pb2.WORKLOAD_PHASE_EXITED


def spec(command: list[str], **kw: Any) -> agent_pb2.StartWorkload:
    return agent_pb2.StartWorkload(workload_id="job-c.1.0", job_id="job-c", attempt=1, command=command, **kw)


def script(body: str) -> str:
    return "import os, pathlib, sys, time\nfrom agents import sdk\n" + textwrap.dedent(body)


def drain(queue: asyncio.Queue[Any]) -> list[Any]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


async def test_progress_and_checkpoint_relayed_before_the_exit(
    executor: Executor, py: Py, tmp_path: Path, wait_until: Wait
) -> None:
    go = tmp_path / "go"
    code = script(
        f"""
        for step in range(1, 6):
            sdk.report_progress(step)
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        path = pathlib.Path(os.environ["CORRAL_CHECKPOINT_DIR"]) / "step-5.bin"
        with sdk.timed_checkpoint(5, path, trigger="final"):
            path.write_bytes(b"w" * 64)
        sdk.report_progress(6)
        """
    )
    s = spec(py(code))
    await executor.start(s)
    assert (executor.control_dir(s.workload_id) / "reports.jsonl").parent.is_dir()
    seen: list[common_pb2.WorkloadStatus] = []

    def progress_pushed() -> bool:
        seen.extend(drain(executor.updates))
        return any(st.phase == RUNNING and st.progress_step == 1 for st in seen)

    # Five progress calls in a row: the SDK's rate limit lets the first one through.
    await wait_until(progress_pushed, what="a progress status")
    go.touch()
    order: list[str] = []

    async def consume() -> None:
        while True:
            status = await executor.updates.get()
            if status.phase == EXITED:
                # The executor queues the checkpoint before the exit: it is already waiting.
                order.append(f"checkpoints queued: {executor.checkpoints.qsize()}")
                seen.append(status)
                return

    await asyncio.wait_for(consume(), 30)
    assert order == ["checkpoints queued: 1"]
    report = executor.checkpoints.get_nowait()
    assert (report.workload_id, report.step, report.size_bytes) == ("job-c.1.0", 5, 64)
    assert report.complete and report.trigger == "final" and report.request_id == 0
    assert report.path.endswith("step-5.bin") and report.at.seconds > 0 and report.duration_s >= 0
    exited = seen[-1]
    assert (exited.progress_step, exited.checkpoint_step) == (6, 5)
    assert exited.checkpoint_path == report.path


async def test_request_checkpoint_reaches_a_polling_worker(
    executor: Executor, py: Py, wait_until: Wait
) -> None:
    code = script(
        """
        sdk.install()
        step = 0
        while step < 3000:
            step += 1
            sdk.report_progress(step)
            if sdk.checkpoint_requested():
                path = sdk.checkpoint_dir() / f"step-{step}"
                path.write_text("weights")
                sdk.report_checkpoint(step, path, trigger="requested", duration_s=0.01)
                sys.exit(0)
            time.sleep(0.01)
        sys.exit(5)
        """
    )
    s = spec(py(code))
    await executor.start(s)
    control = executor.control_dir(s.workload_id)
    # The first progress line is written after install(): the handler is in place by then.
    await wait_until(lambda: (control / "reports.jsonl").exists(), what="the first progress line")
    ok, message = executor.request_checkpoint(s.workload_id, reason="preemption", request_id=42)
    assert ok and "SIGUSR1 sent to 1 of 1" in message, message
    line = json.loads((control / "requests.jsonl").read_text())
    assert (line["request_id"], line["reason"]) == (42, "preemption")
    final = await asyncio.wait_for(executor.wait(s.workload_id), 30)
    assert final.exit_code == 0, final.message
    (report,) = drain(executor.checkpoints)
    assert (report.request_id, report.trigger, report.complete) == (42, "requested", True)
    assert report.step == final.checkpoint_step


async def test_request_without_a_handler_is_filed_not_signalled(
    executor: Executor, py: Py, tmp_path: Path, wait_until: Wait
) -> None:
    ready = tmp_path / "ready"
    s = spec(py(f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"))
    await executor.start(s)
    await wait_until(ready.exists, what="worker up")
    ok, message = executor.request_checkpoint(s.workload_id, request_id=1)
    assert ok and "no process handles SIGUSR1" in message, message
    assert (executor.control_dir(s.workload_id) / "requests.jsonl").exists()
    assert s.workload_id in executor.running_ids()  # SIGUSR1 would have killed it
    assert executor.request_checkpoint("nope.0.0")[0] is False


async def test_malformed_lines_are_logged_and_skipped(
    executor: Executor, py: Py, caplog: pytest.LogCaptureFixture
) -> None:
    code = script(
        """
        reports = pathlib.Path(os.environ["CORRAL_CONTROL_DIR"]) / "reports.jsonl"
        with open(reports, "a") as f:
            f.write("{not json\\n")
            f.write('{"type": "checkpoint", "step": -1, "path": "x"}\\n')
            f.write('{"type": "telemetry"}\\n')
        sdk.report_progress(3)
        sdk.report_checkpoint(3, "/nonexistent/ckpt")
        """
    )
    s = spec(py(code))
    with caplog.at_level(logging.WARNING, logger="corral.agent.channel"):
        await executor.start(s)
        final = await asyncio.wait_for(executor.wait(s.workload_id), 30)
    assert final.exit_code == 0 and final.progress_step == 3
    assert final.checkpoint_step == 0  # the only checkpoint was not complete
    (report,) = drain(executor.checkpoints)
    assert not report.complete and report.step == 3
    problems = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(problems) == 3
    assert all("job-c.1.0" in p for p in problems)
    assert "line 1 skipped: not JSON" in problems[0]
    assert "line 2 skipped: step must be a non-negative" in problems[1]
    assert "line 3 skipped: unknown type 'telemetry'" in problems[2]


def test_partial_lines_wait_for_their_newline(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    channel = WorkerChannel("w.1.0", tmp_path / "c")
    channel.prepare()
    with open(channel.reports_path, "w") as f:
        f.write('{"type":"progress","step":1,"at":5}\n{"type":"progress","st')
    assert channel.read() == [Progress(1, 5.0)]
    assert channel.read() == []
    with open(channel.reports_path, "a") as f:
        f.write('ep":2,"at":6}\n{"type":"progress"')
    assert channel.read() == [Progress(2, 6.0)]
    with caplog.at_level(logging.WARNING, logger="corral.agent.channel"):
        assert channel.read(final=True) == []  # the worker is gone: that line never ends
    assert "line 3 skipped: no newline" in caplog.text
    assert channel.skipped == 1


def test_relative_path_and_vanished_checkpoint(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "ck").mkdir(parents=True)
    (work / "ck" / "a").write_text("w")
    channel = WorkerChannel("w.1.0", tmp_path / "c", working_dir=work)
    channel.prepare()
    lines = [
        {"type": "checkpoint", "step": 1, "path": "ck/a", "complete": True, "size_bytes": 1, "at": 9.5},
        {"type": "checkpoint", "step": 2, "path": str(work / "gone"), "complete": True, "size_bytes": 1},
    ]
    channel.reports_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    first, second = channel.read()
    assert isinstance(first, agent_pb2.CheckpointReport) and isinstance(second, agent_pb2.CheckpointReport)
    assert (
        first.path == str(work / "ck" / "a") and first.complete and first.at.ToNanoseconds() == 9_500_000_000
    )
    assert not second.complete  # reported complete, but the agent cannot see it


def test_prepare_starts_clean(tmp_path: Path) -> None:
    channel = WorkerChannel("w.1.0", tmp_path / "c")
    channel.prepare()
    channel.write_request(1, "old")
    channel.reports_path.write_text('{"type":"progress","step":1}\n')
    channel.prepare()
    assert list(channel.directory.iterdir()) == []
