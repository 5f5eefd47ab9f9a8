"""examples/train.py for real: it converges, checkpoints, resumes bit-identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "train.py"


def run(ckpt: Path, *args: str, attempt: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_CHECKPOINT_DIR"] = str(ckpt)
    env.update(extra)
    if attempt is not None:
        env["CORRAL_ATTEMPT"] = attempt
    return subprocess.run(
        [sys.executable, str(TRAIN), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def final_weights(ckpt: Path, step: int) -> list[float]:
    weights: list[float] = json.loads((ckpt / f"step-{step:08d}.json").read_text())["weights"]
    return weights


def final_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("final loss"))


def test_converges_and_logs(tmp_path: Path) -> None:
    done = run(tmp_path, "--steps", "200")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "step 10/200 loss " in lines[0]
    first = float(lines[0].split()[-1])
    _, _, loss, _, accuracy, _, _ = final_line(done.stdout).split()
    assert float(loss) < 0.3 < first
    assert float(accuracy) > 0.85
    assert sorted(p.name for p in tmp_path.glob("step-*.json")) == [
        "step-00000160.json", "step-00000180.json", "step-00000200.json"
    ]  # fmt: skip
    assert not list(tmp_path.glob(".*tmp*"))


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert run(straight, "--steps", "200").returncode == 0
    first = run(broken, "--steps", "200", "--fail-at-step", "131")
    assert first.returncode == 1
    assert "injected failure before step 131" in first.stderr
    assert (broken / "step-00000120.json").exists() and not (broken / "step-00000140.json").exists()
    second = run(broken, "--steps", "200", "--fail-at-step", "131")  # fails only once
    assert second.returncode == 0, second.stderr
    assert "at step 120" in second.stdout
    assert final_weights(broken, 200) == final_weights(straight, 200)
    assert final_line(second.stdout) == final_line(run(straight, "--steps", "200").stdout)


def test_torn_and_corrupt_checkpoints_are_skipped(tmp_path: Path) -> None:
    straight, ckpt = tmp_path / "straight", tmp_path / "ckpt"
    assert run(straight, "--steps", "200").returncode == 0
    assert run(ckpt, "--steps", "100").returncode == 0
    good = (ckpt / "step-00000100.json").read_text()
    (ckpt / "step-00000120.json").write_text(good[: len(good) // 2])  # torn write
    payload = json.loads(good)
    payload["step"] = 110  # tampered: checksum no longer matches
    (ckpt / "step-00000110.json").write_text(json.dumps(payload))
    (ckpt / ".step-00000130.json.tmp-1").write_text(good)  # a leftover temporary file
    done = run(ckpt, "--steps", "200")
    assert done.returncode == 0, done.stderr
    assert "at step 100" in done.stdout
    assert "skipping incomplete or corrupt checkpoint step-00000120.json" in done.stderr
    assert "step-00000110.json" in done.stderr
    assert final_weights(ckpt, 200) == final_weights(straight, 200)


@pytest.mark.parametrize(("attempt", "code"), [("1", 1), ("2", 0)])
def test_fail_at_step_only_in_attempt_one(tmp_path: Path, attempt: str, code: int) -> None:
    done = run(tmp_path, "--steps", "50", "--fail-at-step", "30", attempt=attempt)
    assert done.returncode == code


def test_sigterm_checkpoints_and_resume_matches(tmp_path: Path) -> None:
    straight, ckpt = tmp_path / "straight", tmp_path / "ckpt"
    assert run(straight, "--steps", "300").returncode == 0
    env = {**os.environ, "CORRAL_CHECKPOINT_DIR": str(ckpt)}
    args = [
        sys.executable,
        str(TRAIN),
        "--steps",
        "300",
        "--step-sleep",
        "0.01",
        "--checkpoint-every",
        "1000",
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("step 10/300")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM: checkpointed step" in out
    (saved,) = ckpt.glob("step-*.json")
    assert 10 <= json.loads(saved.read_text())["step"] < 300
    assert run(ckpt, "--steps", "300").returncode == 0
    assert final_weights(ckpt, 300) == final_weights(straight, 300)


def reports(control: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (control / "reports.jsonl").read_text().splitlines()]


def test_answers_a_requested_checkpoint_and_reports(tmp_path: Path) -> None:
    ckpt, control = tmp_path / "ckpt", tmp_path / "control"
    control.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_CHECKPOINT_DIR=str(ckpt), CORRAL_CONTROL_DIR=str(control), CORRAL_ATTEMPT="1")
    args = [
        "--steps",
        "300",
        "--step-sleep",
        "0.01",
        "--checkpoint-every",
        "1000",
        "--checkpoint-sleep",
        "0.05",
    ]
    proc = subprocess.Popen([sys.executable, str(TRAIN), *args], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().startswith("step 10/300")  # running, so the SDK handler is in place
        with open(control / "requests.jsonl", "a") as f:  # what the agent does: file, then signal
            f.write(json.dumps({"request_id": 5, "reason": "test", "at": time.time()}) + "\n")
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "final loss" in out
    lines = reports(control)
    requested, final = [line for line in lines if line["type"] == "checkpoint"]
    assert (requested["trigger"], requested["request_id"], requested["complete"]) == ("requested", 5, True)
    assert 10 <= requested["step"] < 300 and Path(requested["path"]).exists()
    assert requested["duration_s"] >= 0.05  # --checkpoint-sleep happens inside the timed write
    assert (final["trigger"], final["step"], final["request_id"]) == ("final", 300, 0)
    steps = [line["step"] for line in lines if line["type"] == "progress"]
    assert steps and steps == sorted(steps) and steps[0] == 1


def test_resumes_from_the_checkpoint_the_control_plane_names(tmp_path: Path) -> None:
    straight, ckpt = tmp_path / "straight", tmp_path / "ckpt"
    assert run(straight, "--steps", "200").returncode == 0
    assert run(ckpt, "--steps", "100").returncode == 0  # keeps steps 60, 80 and 100
    named = ckpt / "step-00000080.json"
    text = named.read_text()
    done = run(ckpt, "--steps", "200", CORRAL_RESUME_PATH=str(named), CORRAL_RESUME_STEP="80")
    assert done.returncode == 0, done.stderr
    assert f"resumed from {named} at step 80" in done.stdout
    assert final_weights(ckpt, 200) == final_weights(straight, 200)
    # A named checkpoint that is torn is skipped for the newest intact one in the directory.
    torn = tmp_path / "torn.json"
    torn.write_text(text[:50])
    again = run(ckpt, "--steps", "220", CORRAL_RESUME_PATH=str(torn))
    assert "at step 200" in again.stdout and "(CORRAL_RESUME_PATH)" in again.stderr


@pytest.mark.parametrize("attempt", ["1", "2"])
def test_fail_always_at_step(tmp_path: Path, attempt: str) -> None:
    done = run(tmp_path, "--steps", "50", "--fail-always-at-step", "30", attempt=attempt)
    assert done.returncode == 1 and "--fail-always-at-step" in done.stderr


def test_hang_at_step_only_in_attempt_one(tmp_path: Path) -> None:
    assert run(tmp_path / "a2", "--steps", "30", "--hang-at-step", "20", attempt="2").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_CHECKPOINT_DIR=str(tmp_path / "a1"), CORRAL_ATTEMPT="1")
    args = [sys.executable, str(TRAIN), "--steps", "30", "--hang-at-step", "20"]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        assert "injected hang before step 20" in proc.stderr.readline()
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "a1" / "step-00000030.json").exists()
