#!/usr/bin/env python3
"""A deterministic PyTorch training job that speaks Corral's checkpoint SDK.

A small MLP regressor trained with plain SGD on a seeded synthetic problem, on CPU. Its whole
state is the step and the weights (no optimizer state: plain SGD keeps none), and each
step's batch is a pure function of (seed, step, rank), so a run interrupted and resumed from
a checkpoint ends with bit-identical weights to one that never stopped; the last line
prints a fingerprint of them to compare.

Checkpoints are `ckpt-NNNNNNNN.pt` in $CORRAL_CHECKPOINT_DIR (default ./checkpoints),
written with torch.save to a temporary name, fsynced and renamed: a reader sees a whole
checkpoint or none. On start it resumes from $CORRAL_RESUME_PATH (the control plane's latest
complete checkpoint; sdk.resume_path()) when that loads, else from the newest loadable one
in the directory. Every step is reported (sdk.report_progress); when the control plane asks
for a checkpoint (sdk.checkpoint_requested()) one is saved after the current step; every save
is timed and reported (sdk.timed_checkpoint).

With WORLD_SIZE > 1 (Corral sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) the ranks
average gradients over torch.distributed (gloo); only rank 0 writes and reports
checkpoints, and rank 0's weights are broadcast at start, so no shared file system is needed.

    python examples/train_torch.py --steps 300 --checkpoint-every 50

`--fail-at-step N` exits 1 before step N once (attempt 1 when CORRAL_ATTEMPT is set, else
until a marker file in the checkpoint directory says it already failed), like train.py.
SIGTERM saves a checkpoint after the current step and exits 143.
Exit codes: 0 done, 1 injected failure, 3 PyTorch is not installed, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import signal
import struct
import sys
import time
import warnings
from pathlib import Path
from typing import Any

try:
    from agents import sdk
except ImportError:  # run from a copy outside an installed Corral: use the repository's SDK
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from agents import sdk

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch works without it
try:
    import torch
    import torch.distributed as dist
except ImportError as exc:
    print(f"train_torch.py needs PyTorch, which {sys.executable} cannot import: {exc}", file=sys.stderr)
    sys.exit(3)

IN, HIDDEN, BATCH, FORMAT = 16, 64, 64, 1


def make_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(IN, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, 1),
    )  # fmt: skip


def batch(seed: int, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's batch for `step`: the same in a resumed run as in an uninterrupted one."""
    w_true = torch.randn(IN, 1, generator=torch.Generator().manual_seed(seed + 7)) / IN**0.5
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 1009 + rank)
    x = torch.randn(BATCH, IN, generator=g)
    return x, torch.sin(2 * (x @ w_true)) + 0.05 * torch.randn(BATCH, 1, generator=g)


def fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every weight's exact bits (float32 → float64 is exact), without numpy."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        values = tensor.detach().flatten().tolist()
        h.update(name.encode())
        h.update(struct.pack(f"<{len(values)}d", *values))
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:08d}.pt"


def save(directory: Path, step: int, model: torch.nn.Module, loss: float, keep: int) -> Path:
    path = checkpoint_path(directory, step)
    tmp = directory / f".{path.name}.tmp-{os.getpid()}"
    state = {"format": FORMAT, "step": step, "model": model.state_dict(), "loss": loss}
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)
    for old in sorted(directory.glob("ckpt-*.pt"), reverse=True)[keep:]:
        old.unlink(missing_ok=True)
    return path


def load(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != FORMAT or not isinstance(state.get("step"), int):
            raise ValueError("not a train_torch.py checkpoint")
        return state
    except Exception as exc:  # torn, foreign or unreadable: the caller tries another
        print(f"skipping unreadable checkpoint {path.name}: {exc}", file=sys.stderr, flush=True)
        return None


def resume_from(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    named = sdk.resume_path()
    candidates = [Path(named)] if named else []
    candidates += sorted(directory.glob("ckpt-*.pt"), reverse=True)
    for path in candidates:
        state = load(path)
        if state is not None:
            return path, state
    return None


def should_fail(fail_at: int, step: int, directory: Path) -> bool:
    if fail_at <= 0 or step != fail_at:
        return False
    attempt = os.environ.get("CORRAL_ATTEMPT")
    if attempt is not None:
        return attempt.strip() == "1"
    marker = directory / f".failed-at-step-{fail_at}"
    if marker.exists():
        return False
    marker.touch()
    return True


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Deterministic PyTorch training with Corral's checkpoint SDK.")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--step-sleep", type=float, default=0.0, help="seconds to sleep per step")
    p.add_argument("--fail-at-step", type=int, default=0, help="exit 1 before this step, once")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    p.add_argument("--timeout-s", type=float, default=300.0, help="rendezvous and collective timeout")
    p.add_argument("--checkpoint-dir", default=None, help="default: $CORRAL_CHECKPOINT_DIR or ./checkpoints")
    args = p.parse_args(argv)
    if args.steps < 1 or args.checkpoint_every < 1 or args.log_every < 1 or args.keep < 1:
        p.error("--steps, --checkpoint-every, --log-every and --keep must be ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sdk.install()
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1") or "1")
    torch.set_num_threads(int(env.get("OMP_NUM_THREADS", "1")))  # same reduction order every run
    if world > 1:
        if env.get("MASTER_ADDR") in ("127.0.0.1", "localhost") and sys.platform == "linux":
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        timeout = datetime.timedelta(seconds=args.timeout_s)
        dist.init_process_group("gloo", init_method="env://", timeout=timeout)
    rank = dist.get_rank() if world > 1 else 0
    directory = Path(args.checkpoint_dir) if args.checkpoint_dir else sdk.checkpoint_dir()
    directory.mkdir(parents=True, exist_ok=True)

    model = make_model(args.seed)
    step, loss_value = 0, float("nan")
    found = resume_from(directory) if rank == 0 else None
    if found is not None:
        path, state = found
        model.load_state_dict(state["model"])
        step, loss_value = int(state["step"]), float(state["loss"])
        print(f"resumed from {path} at step {step}", flush=True)
    if world > 1:
        # Rank 0's state for everyone: the ranks need not share a file system.
        start = torch.tensor([step], dtype=torch.int64)
        dist.broadcast(start, src=0)
        step = int(start.item())
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)

    stopping = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)
    params = list(model.parameters())

    while step < args.steps:
        if should_fail(args.fail_at_step, step + 1, directory):
            print(f"injected failure before step {step + 1} (--fail-at-step)", file=sys.stderr, flush=True)
            return 1
        x, y = batch(args.seed, step, rank)
        loss = torch.nn.functional.mse_loss(model(x), y)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in params:
                assert p.grad is not None
                if world > 1:
                    dist.all_reduce(p.grad)
                    p.grad /= world
                p -= args.lr * p.grad
        step += 1
        loss_value = float(loss.item())
        sdk.report_progress(step)
        if args.step_sleep > 0:
            time.sleep(args.step_sleep)
        last = step == args.steps
        if rank == 0 and (step % args.log_every == 0 or last):
            print(f"step {step}/{args.steps} loss {loss_value:.5f}", flush=True)
        requested = sdk.checkpoint_requested()
        if world > 1:
            # One decision for the gang: a request or a SIGTERM seen by any rank saves (rank 0
            # writes) and stops every rank at the same step, so no rank waits on a gone peer.
            flags = torch.tensor([int(stopping), int(requested)], dtype=torch.int64)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            stopping, requested = bool(flags[0].item()), bool(flags[1].item())
        if step % args.checkpoint_every == 0 or last or stopping or requested:
            trigger = "signal" if stopping else "requested" if requested else "final" if last else "periodic"
            if rank == 0:
                with sdk.timed_checkpoint(step, checkpoint_path(directory, step), trigger=trigger):
                    save(directory, step, model, loss_value, args.keep)
            else:
                sdk.clear_request()  # rank 0's report answers for the gang
        if stopping and not last:
            print(f"SIGTERM: checkpointed step {step}, exiting", flush=True)
            return 128 + signal.SIGTERM

    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        print(f"final loss {loss_value:.5f} weights {fingerprint(model)} (world size {world})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
