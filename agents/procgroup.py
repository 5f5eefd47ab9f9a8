"""Signalling a worker's process group.

Each worker runs in its own session, so its process group holds the worker and everything
it spawned; signalling the group reaches launchers' children (torchrun, shell pipelines)
that would otherwise outlive a stop.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to the group; False when the group no longer has members."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def catches_signal(pid: int, sig: signal.Signals) -> bool | None:
    """Whether the process installed a handler for `sig` (Linux SigCgt); None where unknown."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (int(sig) - 1)))
    return None


def signal_handlers_in_group(pgid: int, sig: signal.Signals) -> tuple[int, int]:
    """Send `sig` only to group members that handle it; returns (signalled, members).

    A signal like SIGUSR1 terminates a process without a handler, so a checkpoint request
    must not reach workers that never asked for one.
    """
    members = group_members(pgid)
    signalled = 0
    for pid in members:
        handles = catches_signal(pid, sig)
        if handles is None and not Path("/proc").is_dir():
            handles = True  # no way to tell on this platform: trust the worker
        if handles:
            try:
                os.kill(pid, sig)
                signalled += 1
            except ProcessLookupError:
                continue
    return signalled, len(members)
