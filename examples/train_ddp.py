#!/usr/bin/env python3
"""Data-parallel training with torch.distributed on CPU (gloo): Corral's gang example.

Each worker reads its place in the gang from what Corral sets -- RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT (env:// rendezvous) -- and trains a tiny MLP regressor
wrapped in DistributedDataParallel on its own shard of a seeded synthetic problem. Rank 0
writes `ckpt-NNNNNNNN.pt` into $CORRAL_CHECKPOINT_DIR (default ./checkpoints) with
torch.save, atomically; on start rank 0 loads the newest readable checkpoint and broadcasts
it, so the workers need no shared file system. Rank 0 prints the final loss (averaged over
every rank). Run by hand without those variables it trains alone, as a world of one.

    RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 python examples/train_ddp.py &
    RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 python examples/train_ddp.py

Exit codes: 0 done, 1 injected failure (--fail-at-step), 3 PyTorch is not installed.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # torch works without it
try:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
except ImportError as exc:  # the example's one dependency
    print(
        f"train_ddp.py needs PyTorch, which this Python ({sys.executable}) cannot import: {exc}. "
        "Install it (pip install torch) or run examples/train.py, which needs only the standard library.",
        file=sys.stderr,
    )
    sys.exit(3)

IN, HIDDEN, BATCH = 16, 32, 64


def make_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, 1))


def target_weights(seed: int) -> torch.Tensor:
    return torch.randn(IN, 1, generator=torch.Generator().manual_seed(seed + 7)) / IN**0.5


def batch(seed: int, step: int, rank: int, w_true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's batch for this step: a pure function of (seed, step, rank), so a resumed
    run sees exactly the data an uninterrupted one would."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 1009 + rank)
    x = torch.randn(BATCH, IN, generator=g)
    y = torch.sin(x @ w_true) + 0.05 * torch.randn(BATCH, 1, generator=g)
    return x, y


def save(directory: Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, loss: float) -> None:
    path = directory / f"ckpt-{step:08d}.pt"
    tmp = directory / f".{path.name}.tmp-{os.getpid()}"
    state = {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "loss": loss}
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in sorted(directory.glob("ckpt-*.pt"), reverse=True)[3:]:
        old.unlink(missing_ok=True)


def load_latest(directory: Path) -> dict[str, Any] | None:
    for path in sorted(directory.glob("ckpt-*.pt"), reverse=True):
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
            print(f"resumed from {path} at step {state['step']}", flush=True)
            return state
        except Exception as exc:  # a torn or foreign file: try the one before
            print(f"skipping unreadable checkpoint {path.name}: {exc}", file=sys.stderr, flush=True)
    return None


def broadcast_state(state: dict[str, Any] | None, rank: int) -> dict[str, Any] | None:
    """Rank 0's checkpoint (or None) to every rank, as torch.save bytes in a uint8 tensor
    (broadcast_object_list would need numpy)."""
    data = b""
    if rank == 0 and state is not None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    size = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(size, src=0)
    if size.item() == 0:
        return None
    if rank == 0:
        dist.broadcast(torch.frombuffer(bytearray(data), dtype=torch.uint8), src=0)
        return state
    payload = torch.empty(int(size.item()), dtype=torch.uint8)
    dist.broadcast(payload, src=0)
    received: dict[str, Any] = torch.load(io.BytesIO(bytes(payload.tolist())), weights_only=True)
    return received


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Data-parallel training example (gloo, CPU).")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--step-sleep", type=float, default=0.0, help="seconds to sleep per step")
    p.add_argument(
        "--fail-at-step",
        type=int,
        default=0,
        help="rank 1 (rank 0 alone) exits 1 before this step in attempt 1 ($CORRAL_ATTEMPT, 1 if unset)",
    )
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout-s", type=float, default=300.0, help="rendezvous and collective timeout")
    p.add_argument("--checkpoint-dir", default=None, help="default: $CORRAL_CHECKPOINT_DIR or ./checkpoints")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        print("RANK/WORLD_SIZE not set: training alone as a world of one", flush=True)
        env.setdefault("RANK", "0")
        env.setdefault("WORLD_SIZE", "1")
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", "29500")
    if env["MASTER_ADDR"] in ("127.0.0.1", "localhost") and sys.platform == "linux":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # all ranks on this host: stay on loopback
    torch.set_num_threads(int(env.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=args.timeout_s))
    rank, world = dist.get_rank(), dist.get_world_size()
    directory = Path(args.checkpoint_dir or env.get("CORRAL_CHECKPOINT_DIR") or "checkpoints")
    if rank == 0:
        directory.mkdir(parents=True, exist_ok=True)

    model = make_model(args.seed)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    state = broadcast_state(load_latest(directory) if rank == 0 else None, rank)
    step, loss_value = 0, float("nan")
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, loss_value = int(state["step"]), float(state["loss"])
    ddp = DistributedDataParallel(model)
    w_true = target_weights(args.seed)
    failing_rank = 1 if world > 1 else 0

    while step < args.steps:
        if step + 1 == args.fail_at_step and rank == failing_rank and env.get("CORRAL_ATTEMPT", "1") == "1":
            print(f"rank {rank}: injected failure before step {step + 1}", file=sys.stderr, flush=True)
            os._exit(1)  # like a crash: no clean shutdown of the process group
        x, y = batch(args.seed, step, rank, w_true)
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        opt.zero_grad()
        loss.backward()  # DDP all-reduces the gradients here
        opt.step()
        step += 1
        if args.step_sleep > 0:
            time.sleep(args.step_sleep)
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        loss_value = mean.item() / world
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            print(f"step {step}/{args.steps} loss {loss_value:.4f}", flush=True)
        if rank == 0 and (step % args.checkpoint_every == 0 or step == args.steps):
            save(directory, step, model, opt, loss_value)

    dist.barrier()
    if rank == 0:
        print(f"final loss {loss_value:.4f} (world size {world})", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
