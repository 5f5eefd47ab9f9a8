"""examples/train_ddp.py for real: two processes, gloo on 127.0.0.1, checkpoint and resume."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="train_ddp.py needs PyTorch"
)

TRAIN_DDP = Path(__file__).resolve().parents[2] / "examples" / "train_ddp.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_gang(ckpt: Path, *args: str, attempt: str = "1") -> list[subprocess.CompletedProcess[str]]:
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1",
            CORRAL_CHECKPOINT_DIR=str(ckpt), CORRAL_ATTEMPT=attempt,
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, str(TRAIN_DDP), "--timeout-s", "60", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=90)
        finally:
            proc.kill()
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


@needs_torch
def test_two_workers_train_and_checkpoint(tmp_path: Path) -> None:
    rank0, rank1 = run_gang(tmp_path, "--steps", "100")
    assert (rank0.returncode, rank1.returncode) == (0, 0), rank0.stderr + rank1.stderr
    final = next(line for line in rank0.stdout.splitlines() if line.startswith("final loss"))
    assert float(final.split()[2]) < 0.05
    assert "world size 2" in final
    assert "final loss" not in rank1.stdout  # rank 0 reports
    assert (tmp_path / "ckpt-00000100.pt").exists()


@needs_torch
def test_crash_then_resume_from_rank0_checkpoint(tmp_path: Path) -> None:
    args = ("--steps", "150", "--fail-at-step", "120")
    first = run_gang(tmp_path, *args, attempt="1")
    assert first[1].returncode == 1 and "injected failure before step 120" in first[1].stderr
    assert first[0].returncode != 0  # its peer vanished mid-collective
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == ["ckpt-00000050.pt", "ckpt-00000100.pt"]
    second = run_gang(tmp_path, *args, attempt="2")
    assert [r.returncode for r in second] == [0, 0], second[0].stderr + second[1].stderr
    assert "at step 100" in second[0].stdout
    assert "final loss" in second[0].stdout
    assert (tmp_path / "ckpt-00000150.pt").exists()


def test_without_torch_it_says_so_and_exits_3() -> None:
    hide_torch = (
        "import runpy, sys; sys.modules['torch'] = None; sys.argv = ['train_ddp.py']; "
        f"runpy.run_path({str(TRAIN_DDP)!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", hide_torch], capture_output=True, text=True, timeout=30)
    assert done.returncode == 3
    assert "train_ddp.py needs PyTorch" in done.stderr and "examples/train.py" in done.stderr
