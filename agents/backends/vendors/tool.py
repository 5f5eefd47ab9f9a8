"""Running a vendor management tool as a subprocess, never trusting it to return.

Vendor tools hang when a driver is wedged (npu-smi on a card mid-reset, cnmon on a lost MLU),
so every call has a deadline: on expiry the whole process group is killed and ToolTimeout is
raised, which the backend reports as a health event while the agent carries on. Output is
decoded as UTF-8 with replacement, since some tools print `℃` and some print stray bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from agents.backends.vendors.snapshot import SnapshotError

DEFAULT_TIMEOUT_S = 10.0
_T = TypeVar("_T")


class ToolError(RuntimeError):
    """The tool is missing, failed, or answered nothing usable; the message is for operators."""


class ToolTimeout(ToolError):
    """The tool did not finish within its deadline and was killed."""


class ToolRunner(Protocol):
    """Runs `argv` (argv[0] is the tool name) and returns its standard output as text."""

    def run(self, argv: Sequence[str]) -> str: ...


@dataclass
class SubprocessRunner:
    """The real runner: finds the tool on PATH (or in the vendor's install directories)."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    extra_dirs: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def which(self, tool: str) -> str | None:
        found = shutil.which(tool)
        if found:
            return found
        for d in self.extra_dirs:
            candidate = os.path.join(d, tool)
            if os.access(candidate, os.X_OK):
                return candidate
        return None

    def run(self, argv: Sequence[str]) -> str:
        path = self.which(argv[0])
        if path is None:
            raise ToolError(f"{argv[0]} is not on PATH")
        command = " ".join(argv)
        try:
            proc = subprocess.Popen(
                [path, *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # so a timeout kills whatever the tool started too
                env={**os.environ, **self.env} if self.env else None,
            )
        except OSError as e:
            raise ToolError(f"{command}: cannot run: {e}") from e
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ToolTimeout(f"{command} did not answer within {self.timeout_s:g} s; killed") from None
        if proc.returncode != 0:
            tail = (err or out).decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise ToolError(f"{command} exited with status {proc.returncode}: {tail[0][:300]}")
        return out.decode("utf-8", "replace")


def first_installed(runner: ToolRunner, tools: Sequence[str]) -> str:
    """The first of `tools` (a vendor's spellings, preferred first) the runner finds installed.
    A runner that cannot look (the simulator, tests), or finds none, gets the first name, so a
    failure names the tool an operator would look for."""
    which = getattr(runner, "which", None)
    if callable(which):
        return next((tool for tool in tools if which(tool)), tools[0])
    return tools[0]


def run_optional(
    runner: ToolRunner, argv: Sequence[str], parse: Callable[[str], _T], log: logging.Logger
) -> _T | None:
    """`parse` of what `argv` printed, or None where the tool failed or printed nothing `parse`
    can read (logged at debug): for the extra commands a reader can do without (a release too
    old for them). A tool that hangs still raises ToolTimeout: a wedged driver is a health event,
    not a missing feature."""
    try:
        return parse(runner.run(argv))
    except ToolTimeout:
        raise
    except (ToolError, SnapshotError) as e:
        log.debug("%s gave nothing usable: %s", " ".join(argv), e)
        return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a process that ignores SIGKILL
        proc.communicate(timeout=2.0)
