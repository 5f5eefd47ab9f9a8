#!/usr/bin/env python3
"""A small, real training job that checkpoints and resumes: Corral's example workload.

Logistic regression on a seeded synthetic data set (1,000 points, 8 features), trained with
minibatch SGD in plain Python floats -- standard library only, so it runs on any node. Every
`--checkpoint-every` steps it writes `step-NNNNNNNN.json` (step, weights, RNG state, loss,
sha256 of the rest) into $CORRAL_CHECKPOINT_DIR (default ./checkpoints) atomically: temporary
file, fsync, rename. On start it resumes from the newest checkpoint that is complete and
whose checksum holds; torn or corrupt files are skipped. A resumed run ends with bit-identical
weights to an uninterrupted one, because the weights and the RNG state are the whole state.

    python examples/train.py --steps 200 --step-sleep 0.02

SIGTERM (what `corral cancel` / a reschedule sends) saves a checkpoint after the current step
and exits 143. `--fail-at-step N` exits 1 before step N, once: only in attempt 1 when
CORRAL_ATTEMPT is set, otherwise until a marker file in the checkpoint directory says it
already failed -- for testing recovery.

Under Corral it speaks the checkpoint SDK (agents/sdk.py, docs/checkpointing.md): it resumes
from the checkpoint the control plane names ($CORRAL_RESUME_PATH) when that one is intact,
reports progress every step, saves after the current step when the control plane asks
(SIGUSR1 + the local channel), and reports every checkpoint with how long it blocked.
Fault-injection flags for the platform's own tests: `--fail-always-at-step N` (exit 1 before
step N in every attempt), `--hang-at-step N` (attempt 1 only: stop reporting and sleep
forever before step N, like a rank stuck in a collective; SIGTERM does not end it, SIGKILL
does), `--checkpoint-sleep S` (a slow checkpoint: S more seconds inside every write).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

try:
    from agents import sdk
except ImportError:  # run from a copy outside an installed Corral: use the repository's SDK
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from agents import sdk

FEATURES = 8
SAMPLES = 1000
BATCH = 32
FORMAT = 1

Dataset = list[tuple[list[float], float]]


def make_dataset(seed: int) -> Dataset:
    """Points around a random hyperplane, with label noise so the loss stays above zero."""
    rng = random.Random(seed)
    true_w = [rng.gauss(0.0, 1.0) for _ in range(FEATURES)]
    data: Dataset = []
    for _ in range(SAMPLES):
        x = [rng.gauss(0.0, 1.0) for _ in range(FEATURES)]
        margin = sum(w * xi for w, xi in zip(true_w, x, strict=True)) + rng.gauss(0.0, 0.5)
        data.append((x, 1.0 if margin > 0 else 0.0))
    return data


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def predict(weights: list[float], x: list[float]) -> float:
    return sigmoid(weights[FEATURES] + sum(weights[i] * x[i] for i in range(FEATURES)))


def evaluate(weights: list[float], data: Dataset) -> tuple[float, float]:
    """Mean binary cross-entropy and accuracy over the whole data set."""
    loss, correct = 0.0, 0
    for x, y in data:
        p = min(max(predict(weights, x), 1e-12), 1.0 - 1e-12)
        loss -= y * math.log(p) + (1.0 - y) * math.log(1.0 - p)
        correct += (p >= 0.5) == (y == 1.0)
    return loss / len(data), correct / len(data)


def sgd_step(weights: list[float], data: Dataset, rng: random.Random, lr: float) -> None:
    grad = [0.0] * (FEATURES + 1)
    for _ in range(BATCH):
        x, y = data[rng.randrange(len(data))]
        err = predict(weights, x) - y
        for i in range(FEATURES):
            grad[i] += err * x[i]
        grad[FEATURES] += err
    for i in range(FEATURES + 1):
        weights[i] -= lr * grad[i] / BATCH


# ----------------------------------------------------------------------------- checkpoints


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.json"


def save_checkpoint(
    directory: Path, step: int, weights: list[float], rng: random.Random, loss: float, delay_s: float = 0.0
) -> Path:
    version, internal, gauss_next = rng.getstate()
    payload: dict[str, Any] = {
        "format": FORMAT,
        "step": step,
        "weights": weights,
        "rng_state": [version, list(internal), gauss_next],
        "loss": loss,
    }
    payload["sha256"] = _digest(payload)
    path = checkpoint_path(directory, step)
    tmp = directory / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f)
        f.flush()
        os.fsync(f.fileno())
    if delay_s > 0:
        time.sleep(delay_s)  # --checkpoint-sleep: a kill here leaves only the temporary file
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at path if it is complete and intact, else None."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        digest = payload.pop("sha256")
        if digest != _digest(payload) or payload["format"] != FORMAT:
            return None
        if len(payload["weights"]) != FEATURES + 1:
            return None
        return dict(payload)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def latest_checkpoint(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    for path in sorted(directory.glob("step-*.json"), reverse=True):
        payload = load_checkpoint(path)
        if payload is not None:
            return path, payload
        print(f"skipping incomplete or corrupt checkpoint {path.name}", file=sys.stderr, flush=True)
    return None


def prune(directory: Path, keep: int) -> None:
    for old in sorted(directory.glob("step-*.json"), reverse=True)[keep:]:
        old.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- main


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=20, help="steps between checkpoints")
    p.add_argument("--step-sleep", type=float, default=0.0, help="seconds to sleep per step")
    p.add_argument("--fail-at-step", type=int, default=0, help="exit 1 before this step, once")
    p.add_argument(
        "--fail-always-at-step", type=int, default=0, help="exit 1 before this step in every attempt"
    )
    p.add_argument(
        "--hang-at-step",
        type=int,
        default=0,
        help="attempt 1 only: stop reporting progress and sleep forever before this step",
    )
    p.add_argument(
        "--checkpoint-sleep", type=float, default=0.0, help="extra seconds inside each checkpoint write"
    )
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    p.add_argument("--checkpoint-dir", default=None, help="default: $CORRAL_CHECKPOINT_DIR or ./checkpoints")
    args = p.parse_args(argv)
    if args.steps < 1 or args.checkpoint_every < 1 or args.log_every < 1 or args.keep < 1:
        p.error("--steps, --checkpoint-every, --log-every and --keep must be ≥ 1")
    return args


def resume_from(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint the control plane names if it is intact, else the newest intact one here."""
    named = sdk.resume_path()
    if named is not None:
        payload = load_checkpoint(Path(named))
        if payload is not None:
            return Path(named), payload
        print(f"skipping incomplete or corrupt checkpoint {named} (CORRAL_RESUME_PATH)", file=sys.stderr)
    return latest_checkpoint(directory)


def hang(step: int) -> None:
    print(f"injected hang before step {step} (--hang-at-step)", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sdk.install()  # early, so a request during data loading is signalled rather than only filed
    directory = Path(args.checkpoint_dir or os.environ.get("CORRAL_CHECKPOINT_DIR") or "checkpoints")
    directory.mkdir(parents=True, exist_ok=True)
    data = make_dataset(args.seed)
    weights = [0.0] * (FEATURES + 1)
    rng = random.Random(args.seed + 1)
    step = 0
    found = resume_from(directory)
    if found is not None:
        path, state = found
        step, weights = int(state["step"]), [float(w) for w in state["weights"]]
        version, internal, gauss_next = state["rng_state"]
        rng.setstate((version, tuple(internal), gauss_next))
        print(f"resumed from {path} at step {step}", flush=True)

    stopping = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)

    while step < args.steps:
        if should_fail(args.fail_at_step, step + 1, directory):
            print(f"injected failure before step {step + 1} (--fail-at-step)", file=sys.stderr, flush=True)
            return 1
        if args.fail_always_at_step == step + 1:
            print(
                f"injected failure before step {step + 1} (--fail-always-at-step)",
                file=sys.stderr,
                flush=True,
            )
            return 1
        if args.hang_at_step == step + 1 and sdk.attempt() == 1:
            hang(step + 1)
        sgd_step(weights, data, rng, args.lr)
        step += 1
        sdk.report_progress(step)
        if args.step_sleep > 0:
            time.sleep(args.step_sleep)
        last = step == args.steps
        if step % args.log_every == 0 or last:
            loss, _ = evaluate(weights, data)
            print(f"step {step}/{args.steps} loss {loss:.4f}", flush=True)
        requested = sdk.checkpoint_requested()
        if step % args.checkpoint_every == 0 or last or stopping or requested:
            trigger = "signal" if stopping else "requested" if requested else "final" if last else "periodic"
            with sdk.timed_checkpoint(step, checkpoint_path(directory, step), trigger=trigger):
                save_checkpoint(
                    directory, step, weights, rng, evaluate(weights, data)[0], delay_s=args.checkpoint_sleep
                )
            prune(directory, args.keep)
        if stopping and not last:
            print(f"SIGTERM: checkpointed step {step}, exiting", flush=True)
            return 128 + signal.SIGTERM

    loss, accuracy = evaluate(weights, data)
    fingerprint = hashlib.sha256(json.dumps(weights).encode()).hexdigest()[:16]
    print(f"final loss {loss:.4f} accuracy {accuracy:.4f} weights {fingerprint}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
