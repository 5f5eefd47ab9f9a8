"""The checkpoint SDK: what a training script imports to talk to its Corral agent.

    from agents import sdk

    start = sdk.resume_path()                 # the checkpoint to resume from, or None
    for step in range(first, steps):
        train_one_step()
        sdk.report_progress(step)
        if step % every == 0 or sdk.checkpoint_requested():
            with sdk.timed_checkpoint(step, path, trigger="requested"):
                save(path)                    # write to a temporary name, fsync, rename

Standard library only, and importing it does nothing but define functions: no handler is
installed and no file is touched until a function is called, so it costs a training script
nothing to import. Outside Corral ($CORRAL_CONTROL_DIR unset) every function is a no-op or
returns its default, so the same script runs standalone.

The local channel (docs/checkpointing.md) is two append-only JSON-lines files in
$CORRAL_CONTROL_DIR: the agent appends checkpoint requests to `requests.jsonl` and sends
SIGUSR1; the worker appends progress and checkpoint reports to `reports.jsonl`, which the
agent tails and relays to the control plane. The file is the truth and the signal only a
wake-up: a signal that arrives before the handler is installed loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "Request",
    "attempt",
    "checkpoint_dir",
    "checkpoint_interval_s",
    "checkpoint_requested",
    "clear_request",
    "enabled",
    "install",
    "on_checkpoint_request",
    "pending_request",
    "report_checkpoint",
    "report_progress",
    "resume_path",
    "resume_step",
    "timed_checkpoint",
]

CONTROL_DIR_ENV = "CORRAL_CONTROL_DIR"
REQUESTS_FILE = "requests.jsonl"
REPORTS_FILE = "reports.jsonl"
PROGRESS_INTERVAL_S = 0.5
# With a handler installed the signal says when to look; this re-read is only a safety net
# (a request whose signal never came), so once a second is plenty.
REREAD_INTERVAL_S = 1.0

# Indirection so tests can drive the clocks; read at call time, never bound at import.
_monotonic: Callable[[], float] = time.monotonic
_wall: Callable[[], float] = time.time


@dataclass(frozen=True)
class Request:
    """A checkpoint request from the control plane, as the agent wrote it."""

    request_id: int
    reason: str
    at: float


class _State:
    def __init__(self) -> None:
        # Set by the signal handler and nothing else: a plain attribute store is all a
        # handler may safely do (it can interrupt this module while it holds the lock).
        self.signalled = False
        self.handler_installed = False
        self.previous_handler: Callable[[int, FrameType | None], Any] | None = None
        self.lock = threading.RLock()
        self.control_dir: Path | None = None
        self.requests_offset = 0
        self.last_read: float | None = None
        self.pending: Request | None = None
        self.callbacks: list[Callable[[Request], None]] = []
        self.last_progress: float | None = None
        self.progress_forced = True
        self.warned: set[str] = set()


_state = _State()


def _reset() -> None:
    """Forget everything (for tests that change the environment between cases)."""
    global _state
    _state = _State()


def _control_dir() -> Path | None:
    value = os.environ.get(CONTROL_DIR_ENV)
    if not value:
        return None
    directory = Path(value)
    if _state.control_dir != directory:
        # A different channel (tests, or a script that rewrites its environment): nothing
        # read from the old one applies to the new one.
        _state.control_dir = directory
        _state.requests_offset = 0
        _state.pending = None
        _state.last_read = None
    return directory


def enabled() -> bool:
    """Whether this process runs under a Corral agent (the local channel exists)."""
    return _control_dir() is not None


def _warn_once(key: str, text: str) -> None:
    if key not in _state.warned:
        _state.warned.add(key)
        print(f"corral sdk: {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- requests


def _on_sigusr1(signum: int, frame: FrameType | None) -> None:
    _state.signalled = True
    previous = _state.previous_handler
    if previous is not None:
        previous(signum, frame)


def install() -> bool:
    """Install the SIGUSR1 handler now; True if it is in place.

    Call it early when the first checkpoint_requested() comes late (after a long data
    load): the agent only signals processes that handle SIGUSR1, since the default action
    kills. Only the main thread can install; elsewhere the SDK reads the request file on
    every poll instead. A Python handler the script installed earlier still runs after ours.
    """
    if not enabled():
        return False
    with _state.lock:
        if _state.handler_installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.signal(signal.SIGUSR1, _on_sigusr1)
        if callable(previous) and previous is not _on_sigusr1:
            _state.previous_handler = previous
        _state.handler_installed = True
        return True


def _read_requests(directory: Path) -> None:
    path = directory / REQUESTS_FILE
    try:
        with open(path, "rb") as f:
            f.seek(_state.requests_offset)
            data = f.read()
    except FileNotFoundError:
        return
    except OSError as e:
        _warn_once("read-requests", f"cannot read {path}: {e}")
        return
    end = data.rfind(b"\n")
    if end < 0:
        return  # nothing, or a line still being written: take it next time
    _state.requests_offset += end + 1
    for raw in data[: end + 1].splitlines():
        try:
            line = json.loads(raw)
            request = Request(
                request_id=int(line.get("request_id") or 0),
                reason=str(line.get("reason") or ""),
                at=float(line.get("at") or 0.0),
            )
        except (ValueError, TypeError, AttributeError):
            _warn_once("bad-request", f"skipping malformed line in {path}: {raw[:200]!r}")
            continue
        # Several requests before one checkpoint are all answered by it; the report names
        # the newest, which the control plane reads as covering the older ones too.
        _state.pending = request
        for callback in list(_state.callbacks):
            callback(request)


def _poll() -> Request | None:
    directory = _control_dir()
    if directory is None:
        return None
    with _state.lock:
        if not _state.handler_installed and threading.current_thread() is threading.main_thread():
            install()
        now = _monotonic()
        due = (
            _state.signalled
            or not _state.handler_installed
            or _state.last_read is None
            or now - _state.last_read >= REREAD_INTERVAL_S
        )
        if due:
            _state.signalled = False
            _state.last_read = now
            _read_requests(directory)
        return _state.pending


def checkpoint_requested() -> bool:
    """True while a checkpoint the control plane asked for is not yet reported.

    Cheap enough to call every step. The first call installs the SIGUSR1 handler (main
    thread only). Callbacks registered with on_checkpoint_request run from here, in the
    calling thread, once per new request; if one reports the checkpoint, this returns False.
    """
    return _poll() is not None


def pending_request() -> Request | None:
    """The request the next checkpoint will answer, or None (polls like checkpoint_requested)."""
    return _poll()


def clear_request() -> Request | None:
    """Drop the pending request without reporting; returns it.

    For ranks that leave writing (and reporting) to rank 0 but must stop seeing the request.
    """
    if _control_dir() is None:
        return None
    with _state.lock:
        request, _state.pending = _state.pending, None
        return request


def on_checkpoint_request(callback: Callable[[Request], None]) -> None:
    """Call `callback(request)` for each new request.

    It runs inside checkpoint_requested()/pending_request() in the thread that polls, never
    in the signal handler, so it may write files, take locks or call report_checkpoint.
    """
    with _state.lock:
        _state.callbacks.append(callback)


# ----------------------------------------------------------------------------- reports


def _append(directory: Path, line: dict[str, Any]) -> None:
    """One os.write per line on an O_APPEND descriptor, so lines never interleave."""
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    path = directory / REPORTS_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        # Reporting must never stop training; the checkpoint itself is on disk regardless.
        _warn_once("write-reports", f"cannot write {path}: {e}")


def _size(path: Path) -> int:
    """A file's size, or the sum over a directory tree (symlinks not followed)."""
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


def report_checkpoint(
    step: int, path: str | os.PathLike[str], *, duration_s: float | None = None, trigger: str = "periodic"
) -> None:
    """Tell the control plane a checkpoint of `step` is at `path` (file or directory).

    Call it after the write is final (renamed into place). `complete` is reported True only
    when the path exists and is not empty; only complete checkpoints are ever resumed from.
    A pending request is answered (its request_id is in the report) and cleared.
    """
    directory = _control_dir()
    if directory is None:
        return
    target = Path(path).absolute()
    try:
        size = _size(target) if target.exists() else 0
    except OSError:
        size = 0
    exists = target.exists()
    with _state.lock:
        request = _state.pending
        _state.pending = None
        _state.progress_forced = True
        line: dict[str, Any] = {
            "type": "checkpoint",
            "step": int(step),
            "path": str(target),
            "at": _wall(),
            "size_bytes": size,
            "duration_s": None if duration_s is None else float(duration_s),
            "complete": exists and size > 0,
            "trigger": trigger,
            "request_id": request.request_id if request else 0,
        }
        _append(directory, line)


@contextlib.contextmanager
def timed_checkpoint(step: int, path: str | os.PathLike[str], trigger: str = "periodic") -> Iterator[None]:
    """Time the body (the blocking write) and report the checkpoint if it succeeds.

    An exception in the body reports nothing and propagates: a write that did not finish is
    never announced, let alone as complete.
    """
    started = time.perf_counter()
    yield
    report_checkpoint(step, path, duration_s=time.perf_counter() - started, trigger=trigger)


def report_progress(step: int) -> None:
    """Record that `step` is done; at most one line per 0.5 s reaches the channel.

    The first call and the first call after a checkpoint always write, so the agent never
    shows progress older than the last checkpoint.
    """
    directory = _control_dir()
    if directory is None:
        return
    with _state.lock:
        now = _monotonic()
        last = _state.last_progress
        if not _state.progress_forced and last is not None and now - last < PROGRESS_INTERVAL_S:
            return
        _state.last_progress = now
        _state.progress_forced = False
        _append(directory, {"type": "progress", "step": int(step), "at": _wall()})


# ----------------------------------------------------------------------------- environment


def resume_path() -> str | None:
    """$CORRAL_RESUME_PATH (the job's latest complete checkpoint) if it still exists, else None."""
    value = os.environ.get("CORRAL_RESUME_PATH")
    if not value or not os.path.exists(value):
        return None
    return value


def resume_step() -> int:
    """$CORRAL_RESUME_STEP when resume_path() is usable, else 0."""
    if resume_path() is None:
        return 0
    try:
        return max(int(os.environ.get("CORRAL_RESUME_STEP", "0")), 0)
    except ValueError:
        return 0


def attempt() -> int:
    """Which attempt of the job this is, counting from 1 ($CORRAL_ATTEMPT; 1 when unset)."""
    try:
        return int(os.environ.get("CORRAL_ATTEMPT", "1"))
    except ValueError:
        return 1


def checkpoint_dir() -> Path:
    """Where checkpoints go: $CORRAL_CHECKPOINT_DIR, else ./checkpoints."""
    return Path(os.environ.get("CORRAL_CHECKPOINT_DIR") or "checkpoints")


def checkpoint_interval_s() -> float:
    """The interval the control plane chose when it started us ($CORRAL_CHECKPOINT_INTERVAL_S), or 0.

    Informational: the control plane also asks with requests when a checkpoint is due.
    """
    try:
        value = float(os.environ.get("CORRAL_CHECKPOINT_INTERVAL_S", "0"))
    except ValueError:
        return 0.0
    return value if value > 0 and value != float("inf") else 0.0
