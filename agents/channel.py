"""The agent's end of a worker's local channel (docs/checkpointing.md; the worker's end is agents/sdk.py).

Per workload, a directory `<data dir>/control/<workload id>` holds two append-only JSON-lines
files: the agent writes checkpoint requests to `requests.jsonl`, the worker writes progress
and checkpoint reports to `reports.jsonl`. This module writes the one and tails the other.
A worker is untrusted input here: a bad line is logged and skipped, never raised.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.v1 import agent_pb2
from google.protobuf import timestamp_pb2

log = logging.getLogger("corral.agent.channel")

REQUESTS_FILE = "requests.jsonl"
REPORTS_FILE = "reports.jsonl"
# A line longer than this without a newline is garbage, not a report still being written.
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True)
class Progress:
    step: int
    at: float


Event = Progress | agent_pb2.CheckpointReport


class MalformedLine(ValueError):
    pass


def _int(line: dict[str, Any], key: str, *, required: bool = False) -> int:
    value = line.get(key)
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise MalformedLine(f"{key} must be a non-negative 64-bit integer, got {value!r}")
    return value


def _float(line: dict[str, Any], key: str) -> float:
    value = line.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise MalformedLine(f"{key} must be a non-negative number, got {value!r}")
    return float(value)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class WorkerChannel:
    def __init__(self, workload_id: str, directory: Path, working_dir: Path | None = None) -> None:
        self.workload_id = workload_id
        self.directory = directory
        self.working_dir = working_dir
        self.requests_path = directory / REQUESTS_FILE
        self.reports_path = directory / REPORTS_FILE
        self.offset = 0
        self.lines = 0
        self.skipped = 0

    def prepare(self) -> None:
        """Create the directory, empty: a restarted workload id must not see old requests."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.requests_path, self.reports_path):
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def write_request(self, request_id: int, reason: str) -> None:
        """Append one request line (one write, so the worker never reads half of one)."""
        line = {"request_id": request_id, "reason": reason, "at": time.time()}
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.requests_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def read(self, *, final: bool = False) -> list[Event]:
        """Everything complete appended since the last read.

        A last line without its newline is left for the next read (the worker may be
        writing it); with `final` (the worker has exited) it never will be, so it is dropped.
        """
        events: list[Event] = []
        while True:
            try:
                with open(self.reports_path, "rb") as f:
                    f.seek(self.offset)
                    data = f.read(MAX_LINE_BYTES)
            except FileNotFoundError:
                return events
            except OSError as e:
                log.warning("workload %s: cannot read %s: %s", self.workload_id, self.reports_path, e)
                return events
            if not data:
                return events
            end = data.rfind(b"\n")
            if end < 0:
                if len(data) >= MAX_LINE_BYTES or final:
                    self.lines += 1
                    problem = "longer than 1 MiB" if not final else "no newline (the worker exited mid-write)"
                    self._skip(problem)
                    self.offset += len(data)
                    continue
                return events
            self.offset += end + 1
            for raw in data[: end + 1].split(b"\n")[:-1]:
                self.lines += 1
                try:
                    events.append(self._parse(raw))
                except MalformedLine as e:
                    self._skip(str(e))
            if len(data) < MAX_LINE_BYTES:
                return events

    def _skip(self, problem: str) -> None:
        self.skipped += 1
        log.warning(
            "workload %s: %s line %d skipped: %s", self.workload_id, self.reports_path, self.lines, problem
        )

    def _parse(self, raw: bytes) -> Event:
        try:
            line = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise MalformedLine(f"not JSON ({e})") from None
        if not isinstance(line, dict):
            raise MalformedLine(f"not a JSON object: {raw[:80]!r}")
        kind = line.get("type")
        if kind == "progress":
            return Progress(step=_int(line, "step", required=True), at=_float(line, "at"))
        if kind == "checkpoint":
            return self._checkpoint(line)
        raise MalformedLine(f"unknown type {kind!r}")

    def _checkpoint(self, line: dict[str, Any]) -> agent_pb2.CheckpointReport:
        path = line.get("path")
        if not isinstance(path, str) or not path:
            raise MalformedLine(f"path must be a non-empty string, got {path!r}")
        complete = line.get("complete", False)
        if not isinstance(complete, bool):
            raise MalformedLine(f"complete must be true or false, got {complete!r}")
        trigger = line.get("trigger", "")
        if not isinstance(trigger, str):
            raise MalformedLine(f"trigger must be a string, got {trigger!r}")
        where = Path(path)
        if not where.is_absolute() and self.working_dir is not None:
            where = self.working_dir / where
        # The SDK checked when it wrote the line; the file may have been pruned (or never
        # been where the worker said) since, and only the agent's view reaches the resume.
        if complete and not where.exists():
            log.warning(
                "workload %s: checkpoint of step %s at %s reported complete but does not exist",
                self.workload_id,
                line.get("step"),
                where,
            )
            complete = False
        report = agent_pb2.CheckpointReport(
            workload_id=self.workload_id,
            step=_int(line, "step", required=True),
            path=str(where),
            size_bytes=_int(line, "size_bytes"),
            duration_s=_float(line, "duration_s"),
            complete=complete,
            trigger=trigger,
            request_id=_int(line, "request_id"),
        )
        at = _float(line, "at")
        report.at.CopyFrom(_timestamp(at if at > 0 else time.time()))
        return report
