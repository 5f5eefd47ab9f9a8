"""examples/train_torch.py: deterministic, so an interrupted and resumed run matches exactly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="train_torch.py needs PyTorch"
)

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "train_torch.py"
ARGS = ("--steps", "60", "--checkpoint-every", "20", "--log-every", "20")


def run(ckpt: Path, *args: str, attempt: str = "1", **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "RANK", "WORLD_SIZE"))}
    env.update(CORRAL_CHECKPOINT_DIR=str(ckpt), CORRAL_ATTEMPT=attempt, OMP_NUM_THREADS="1", **extra)
    return subprocess.run(
        [sys.executable, str(TRAIN), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def final_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return next(line for line in done.stdout.splitlines() if line.startswith("final loss"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The final line of an uninterrupted run (torch starts slowly: run it once for the module)."""
    return final_line(run(tmp_path_factory.mktemp("straight"), *ARGS))


def test_interrupted_and_resumed_matches_uninterrupted(tmp_path: Path, straight: str) -> None:
    broken, control = tmp_path / "broken", tmp_path / "control"
    control.mkdir()
    first = run(broken, *ARGS, "--fail-at-step", "45", CORRAL_CONTROL_DIR=str(control))
    assert first.returncode == 1 and "injected failure before step 45" in first.stderr
    assert sorted(p.name for p in broken.glob("ckpt-*.pt")) == ["ckpt-00000020.pt", "ckpt-00000040.pt"]
    assert not list(broken.glob(".*tmp*"))
    reported = [json.loads(line) for line in (control / "reports.jsonl").read_text().splitlines()]
    checkpoints = [r for r in reported if r["type"] == "checkpoint"]
    assert [(c["step"], c["complete"], c["trigger"]) for c in checkpoints] == [
        (20, True, "periodic"), (40, True, "periodic")
    ]  # fmt: skip
    # The control plane names the latest complete checkpoint; attempt 2 resumes from it.
    second = run(
        broken, *ARGS, "--fail-at-step", "45", attempt="2",
        CORRAL_RESUME_PATH=checkpoints[-1]["path"], CORRAL_RESUME_STEP="40",
    )  # fmt: skip
    assert "at step 40" in second.stdout
    assert final_line(second) == straight


def test_resumes_from_the_directory_without_a_named_checkpoint(tmp_path: Path, straight: str) -> None:
    ckpt = tmp_path / "ckpt"
    assert run(ckpt, "--steps", "40", "--checkpoint-every", "20").returncode == 0
    (ckpt / "ckpt-00000050.pt").write_bytes(b"torn")  # newer but unreadable: skipped
    resumed = run(ckpt, *ARGS)
    assert (
        "at step 40" in resumed.stdout and "skipping unreadable checkpoint ckpt-00000050.pt" in resumed.stderr
    )
    assert final_line(resumed) == straight
