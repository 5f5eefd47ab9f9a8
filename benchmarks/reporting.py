"""Every benchmark leaves the same two files: the figures as JSON, and a Markdown report."""

from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil


def write_reports(
    result: dict[str, Any], json_path: Path, md_path: Path, markdown: Callable[[Any], str]
) -> None:
    for path in (json_path, md_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown(result))


def machine_info(**extra: Any) -> dict[str, Any]:
    """The machine a benchmark ran on, for its report: cores usable here, CPU, memory, Python."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **extra,
    }
