"""Child processes of `corral up`: each in its own process group with its own log file,
stopped in order (agents, then the server) and never left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

AGENT_STOP_GRACE_S = 20.0  # agents stop their workers (SIGTERM, then SIGKILL) before exiting
SERVER_STOP_GRACE_S = 10.0
LEFTOVER_GRACE_S = 3.0


class StopSignals:
    """SIGINT and SIGTERM both raise KeyboardInterrupt, but not inside `deferred()` blocks
    (starting a child), where they are held until the block ends. While stopping, a second
    signal only asks to hurry (escalate to SIGKILL)."""

    def __init__(self) -> None:
        self._critical = 0
        self._pending = False
        self.stopping = False
        self.hurry = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            self.hurry = True
        elif self._critical:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if self._pending and not self._critical and not self.stopping:
                self._pending = False
                raise KeyboardInterrupt


@dataclass
class Child:
    name: str
    role: str  # "server" or "agent"
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    descendants: list[Any] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> list[str]:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [f"{self.log_path}:", *text.splitlines()[-lines:]]


def child_env() -> dict[str, str]:
    """The environment of every child: this one, with this interpreter's directory first on
    PATH (so a worker's `python` is this venv's) and unbuffered Python output."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [bindir, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir)]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def corral_argv(*args: str) -> list[str]:
    """Run a corral subcommand with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "scheduler.cli", *args]


def become_subreaper() -> bool:
    """Linux: adopt our orphaned descendants (a worker whose agent died), so that they can
    still be found and stopped. False where the platform has no such thing."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_child_subreaper = 36
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class Supervisor:
    def __init__(self, log_dir: Path, signals: StopSignals) -> None:
        self.log_dir = log_dir
        self.signals = signals
        self.children: list[Child] = []
        self.env = child_env()
        self.subreaper = False

    def adopt_orphans(self) -> None:
        """Become the subreaper of everything started from here on (see become_subreaper)."""
        self.subreaper = become_subreaper()

    def reap_orphans(self) -> None:
        """Collect the exit status of adopted orphans (not our own children: Popen does)."""
        if not self.subreaper:
            return
        import psutil

        ours = {c.popen.pid for c in self.children}
        for proc in psutil.Process().children():
            if proc.pid not in ours:
                with suppress(ChildProcessError, psutil.Error):
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        os.waitpid(proc.pid, os.WNOHANG)

    def start(self, name: str, role: str, argv: list[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with self.signals.deferred():
            log = log_path.open("ab")
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # own process group: Ctrl-C in the terminal reaches only us
            )
            child = Child(name, role, popen, log_path, log)
            self.children.append(child)
        return child

    def stop_all(self) -> None:
        """Agents first (they stop their workers), then the server; SIGKILL whatever outlives
        its grace period, and any process an agent started that outlived the agent."""
        self.signals.stopping = True
        agents = [c for c in self.children if c.role == "agent"]
        others = [c for c in self.children if c.role != "agent"]
        for child in agents:
            child.descendants = _descendants(child.popen.pid)
        self._stop(agents, AGENT_STOP_GRACE_S)
        # Workers an agent left behind: those we saw before, and (as their subreaper) any
        # started while the agents were stopping.
        _reap_leftovers([p for c in agents for p in c.descendants] + self._adopted())
        self._stop(others, SERVER_STOP_GRACE_S)
        _reap_leftovers(self._adopted())
        for child in self.children:
            child.log.close()

    def _adopted(self) -> list[Any]:
        if not self.subreaper:
            return []
        import psutil

        keep = {c.popen.pid for c in self.children}
        for child in self.children:  # what a running child (the server) started is its own
            if child.running:
                keep.update(p.pid for p in _descendants(child.popen.pid))
        return [p for p in psutil.Process().children(recursive=True) if p.pid not in keep]

    def _stop(self, children: list[Child], grace_s: float) -> None:
        for child in children:
            _signal_group(child.popen, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(c.running for c in children) and time.monotonic() < deadline and not self.signals.hurry:
            time.sleep(0.05)
        for child in children:
            if child.running:
                _signal_group(child.popen, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):  # SIGKILL ends it; do not hang if not
                child.popen.wait(timeout=5)


def _signal_group(popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)  # start_new_session: the group id is the child's pid


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _reap_leftovers(processes: list[Any]) -> None:
    import psutil

    alive = [p for p in processes if p.is_running()]
    if not alive:
        return
    for proc in alive:
        with suppress(psutil.Error):
            proc.terminate()
    _, still = psutil.wait_procs(alive, timeout=LEFTOVER_GRACE_S)
    for proc in still:
        with suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(still, timeout=LEFTOVER_GRACE_S)
