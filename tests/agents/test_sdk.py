"""The checkpoint SDK (agents/sdk.py) on its own: the worker's end of the local channel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents import sdk


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(sdk, "_monotonic", c)
    return c


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "control"
    directory.mkdir()
    for name in list(os.environ):
        if name.startswith("CORRAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CORRAL_CONTROL_DIR", str(directory))
    previous = signal.getsignal(signal.SIGUSR1)
    sdk._reset()
    yield directory
    signal.signal(signal.SIGUSR1, previous)
    sdk._reset()


def request(control: Path, request_id: int, reason: str = "test") -> None:
    with open(control / "requests.jsonl", "a") as f:
        f.write(json.dumps({"request_id": request_id, "reason": reason, "at": 1.0}) + "\n")


def reports(control: Path) -> list[dict[str, Any]]:
    path = control / "reports.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_request_from_the_file_is_answered_once(control: Path, tmp_path: Path) -> None:
    # Written before this process had a handler, so no signal reached it: the file is enough.
    request(control, 7, "preemption")
    assert sdk.checkpoint_requested()
    assert sdk.pending_request() == sdk.Request(7, "preemption", 1.0)
    ckpt = tmp_path / "ckpt.bin"
    ckpt.write_bytes(b"x" * 100)
    sdk.report_checkpoint(12, ckpt, duration_s=0.5, trigger="requested")
    assert not sdk.checkpoint_requested()
    (line,) = reports(control)
    assert line["type"] == "checkpoint" and line["request_id"] == 7
    assert (line["step"], line["path"], line["size_bytes"], line["complete"]) == (12, str(ckpt), 100, True)
    assert (line["duration_s"], line["trigger"]) == (0.5, "requested") and line["at"] > 0


def test_sigusr1_makes_the_sdk_look_at_the_file(control: Path, clock: Clock) -> None:
    assert sdk.install()
    assert signal.getsignal(signal.SIGUSR1) is sdk._on_sigusr1
    assert not sdk.checkpoint_requested()  # the first poll reads the (empty) file
    request(control, 9)
    # With a handler in place and the clock standing still, only the signal prompts a read.
    assert not sdk.checkpoint_requested()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert sdk.checkpoint_requested()
    request_seen = sdk.pending_request()
    assert request_seen is not None and request_seen.request_id == 9


def test_without_a_signal_the_file_is_reread_within_a_second(control: Path, clock: Clock) -> None:
    sdk.install()
    assert not sdk.checkpoint_requested()
    request(control, 4)
    clock.now += sdk.REREAD_INTERVAL_S
    assert sdk.checkpoint_requested()


def test_first_poll_installs_the_handler_in_the_main_thread_only(control: Path) -> None:
    seen: list[bool] = []
    request(control, 5)
    thread = threading.Thread(target=lambda: seen.append(sdk.checkpoint_requested()))
    thread.start()
    thread.join()
    assert seen == [True]  # read from the file without a handler
    assert signal.getsignal(signal.SIGUSR1) is not sdk._on_sigusr1
    sdk.checkpoint_requested()
    assert signal.getsignal(signal.SIGUSR1) is sdk._on_sigusr1


def test_earlier_handler_still_runs(control: Path) -> None:
    calls: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    sdk.install()
    os.kill(os.getpid(), signal.SIGUSR1)
    sdk.checkpoint_requested()
    assert calls == [signal.SIGUSR1]


def test_callbacks_run_on_poll_and_may_report(control: Path, tmp_path: Path) -> None:
    got: list[sdk.Request] = []
    ckpt = tmp_path / "c"
    ckpt.write_text("weights")

    def save(req: sdk.Request) -> None:
        got.append(req)
        sdk.report_checkpoint(1, ckpt, trigger="requested")

    sdk.on_checkpoint_request(save)
    request(control, 11)
    assert not sdk.checkpoint_requested()  # answered by the callback already
    assert [r.request_id for r in got] == [11]
    assert reports(control)[0]["request_id"] == 11


def test_several_requests_answered_by_one_checkpoint(control: Path, tmp_path: Path) -> None:
    request(control, 1)
    request(control, 2)
    assert sdk.checkpoint_requested()
    (tmp_path / "c").write_text("w")
    sdk.report_checkpoint(5, tmp_path / "c")
    assert reports(control)[0]["request_id"] == 2 and not sdk.checkpoint_requested()


def test_partial_and_malformed_request_lines(
    control: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(control / "requests.jsonl", "w") as f:
        f.write('not json\n{"request_id": 8, "rea')
    assert not sdk.checkpoint_requested()
    assert "malformed line" in capsys.readouterr().err
    with open(control / "requests.jsonl", "a") as f:
        f.write('son": "x"}\n')
    clock.now += sdk.REREAD_INTERVAL_S
    assert sdk.pending_request() == sdk.Request(8, "x", 0.0)


def test_incomplete_checkpoints(control: Path, tmp_path: Path) -> None:
    sdk.report_checkpoint(1, tmp_path / "missing")
    (tmp_path / "empty").touch()
    sdk.report_checkpoint(2, tmp_path / "empty")
    tree = tmp_path / "tree"
    (tree / "shards").mkdir(parents=True)
    (tree / "a").write_bytes(b"1" * 10)
    (tree / "shards" / "b").write_bytes(b"2" * 32)
    os.symlink(tree / "a", tree / "link")  # not counted twice
    sdk.report_checkpoint(3, tree, trigger="final")
    missing, empty, whole = reports(control)
    assert (missing["complete"], missing["size_bytes"], missing["request_id"]) == (False, 0, 0)
    assert (empty["complete"], empty["size_bytes"]) == (False, 0)
    assert (whole["complete"], whole["size_bytes"], whole["trigger"]) == (True, 42, "final")
    assert missing["duration_s"] is None


def test_timed_checkpoint_reports_only_on_success(control: Path, tmp_path: Path) -> None:
    path = tmp_path / "ok"
    with sdk.timed_checkpoint(10, path, trigger="periodic"):
        path.write_text("weights")
    torn = tmp_path / "torn"
    with pytest.raises(OSError), sdk.timed_checkpoint(20, torn):
        torn.write_text("half")
        raise OSError("disk full")
    (line,) = reports(control)
    assert (line["step"], line["complete"], line["trigger"]) == (10, True, "periodic")
    assert line["duration_s"] >= 0


def test_progress_is_rate_limited(control: Path, clock: Clock, tmp_path: Path) -> None:
    for step in range(1, 11):
        sdk.report_progress(step)  # the first writes, the rest fall in the same 0.5 s
    clock.now += sdk.PROGRESS_INTERVAL_S
    sdk.report_progress(11)
    sdk.report_progress(12)
    (tmp_path / "c").write_text("w")
    sdk.report_checkpoint(12, tmp_path / "c")
    sdk.report_progress(13)  # right after a checkpoint: always written
    lines = reports(control)
    assert [(line["type"], line["step"]) for line in lines] == [
        ("progress", 1), ("progress", 11), ("checkpoint", 12), ("progress", 13)
    ]  # fmt: skip


def test_environment(control: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (sdk.resume_path(), sdk.resume_step(), sdk.attempt()) == (None, 0, 1)
    assert sdk.checkpoint_dir() == Path("checkpoints") and sdk.checkpoint_interval_s() == 0.0
    ckpt = tmp_path / "step-40"
    monkeypatch.setenv("CORRAL_RESUME_PATH", str(ckpt))
    monkeypatch.setenv("CORRAL_RESUME_STEP", "40")
    assert (sdk.resume_path(), sdk.resume_step()) == (None, 0)  # named but gone
    ckpt.write_text("w")
    assert (sdk.resume_path(), sdk.resume_step()) == (str(ckpt), 40)
    monkeypatch.setenv("CORRAL_ATTEMPT", "3")
    monkeypatch.setenv("CORRAL_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("CORRAL_CHECKPOINT_INTERVAL_S", "30.0")
    assert (sdk.attempt(), sdk.checkpoint_dir(), sdk.checkpoint_interval_s()) == (3, tmp_path, 30.0)


def test_outside_corral_everything_is_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, control: Path
) -> None:
    monkeypatch.delenv("CORRAL_CONTROL_DIR")
    monkeypatch.chdir(tmp_path)
    before = signal.getsignal(signal.SIGUSR1)
    assert not sdk.enabled() and sdk.install() is False
    assert sdk.checkpoint_requested() is False and sdk.pending_request() is None
    sdk.report_progress(1)
    sdk.report_checkpoint(1, tmp_path / "x")
    with sdk.timed_checkpoint(2, tmp_path / "y"):
        pass
    assert sdk.clear_request() is None
    assert signal.getsignal(signal.SIGUSR1) is before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["control"]  # nothing written anywhere
    assert list(control.iterdir()) == []


def test_import_installs_nothing() -> None:
    code = "import signal; from agents import sdk; print(signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)"
    env = {**os.environ, "CORRAL_CONTROL_DIR": "/nonexistent"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["True"], done.stderr
