"""The jobs view: the job list (state filter, pages) and one job's page — gang placement,
attempt timeline, checkpoints, lost GPU-hours, blame, and the tail of each rank's log.

Everything but the logs is in memory (cp.jobs, the checkpoints the control plane keeps per
job); logs are read from the end of each rank's file, LOG_TAIL_BYTES at most.
"""

from __future__ import annotations

import signal
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scheduler.jobstate import JobState
from scheduler.web.queries.codes import classify_cause
from scheduler.web.queries.inventory import UNASSIGNED_RACK

if TYPE_CHECKING:
    from scheduler.model import AttemptRecord, JobRecord
    from scheduler.server.controlplane import ControlPlane

PAGE_SIZE = 50
LOG_TAIL_BYTES = 8 * 1024
CHECKPOINTS_SHOWN = 20
JOB_STATES = tuple(s.value for s in JobState)


def gang_devices(attempt: AttemptRecord | None) -> int:
    return sum(len(w.device_indices) for w in attempt.workers) if attempt else 0


def _spec_summary(job: JobRecord) -> tuple[int, int, str]:
    """(workers, devices per worker, accelerator models asked for) from the stored spec."""
    spec = job.spec
    accel = spec.get("accelerator") or {}
    models = ", ".join(accel.get("models") or accel.get("vendors") or []) or "any"
    return int(spec.get("workers") or 1), int(spec.get("devices_per_worker") or 0), models


# --- the list --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    id: str
    name: str
    owner: str
    queue: str
    state: str
    workers: int
    devices_per_worker: int
    attempts: int
    restarts: int
    lost_gpu_h: float
    created_at: float
    updated_at: float
    reason: str


@dataclass(frozen=True)
class JobList:
    rows: list[JobRow]
    total: int
    matched: int
    page: int
    pages: int
    by_state: dict[str, int]


class JobFilterError(ValueError):
    pass


def job_list(cp: ControlPlane, state: str, page: int, page_size: int = PAGE_SIZE) -> JobList:
    wanted = state.strip().upper()
    if wanted and wanted not in JOB_STATES:
        raise JobFilterError(f"state: {state!r} is not one of {', '.join(JOB_STATES)}")
    by_state = Counter(j.state.value for j in cp.jobs.values())
    jobs = [j for j in cp.jobs.values() if not wanted or j.state.value == wanted]
    jobs.sort(key=lambda j: j.created_at, reverse=True)
    pages = max(1, -(-len(jobs) // page_size))
    page = min(max(1, page), pages)
    rows = []
    for j in jobs[(page - 1) * page_size : page * page_size]:
        workers, per_worker, _ = _spec_summary(j)
        rows.append(
            JobRow(
                id=j.id,
                name=j.name,
                owner=j.owner,
                queue=j.queue,
                state=j.state.value,
                workers=workers,
                devices_per_worker=per_worker,
                attempts=len(j.attempts),
                restarts=j.restarts + j.hardware_restarts,
                lost_gpu_h=j.lost_device_s / 3600.0,
                created_at=j.created_at,
                updated_at=j.updated_at,
                reason=j.reason,
            )
        )
    return JobList(rows, len(cp.jobs), len(jobs), page, pages, dict(by_state))


# --- one job ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    rank: int
    node: str
    rack: str
    devices: list[int]
    phase: str
    exit: str  # "exit 0", "SIGKILL", "" while it holds devices
    progress_step: int
    checkpoint_step: int


@dataclass(frozen=True)
class AttemptRow:
    number: int
    started_at: float
    ended_at: float | None
    outcome: str
    cause: str
    signal: str
    blame: str
    lost_s: float
    detect_s: float
    restart_s: float
    resumed_from_step: int
    nodes: list[str]


@dataclass(frozen=True)
class CheckpointRow:
    attempt: int
    rank: int
    step: int
    path: str
    at: float
    size_bytes: int
    duration_s: float
    complete: bool
    trigger: str


@dataclass(frozen=True)
class LogTail:
    attempt: int
    rank: int
    node: str
    text: str
    size: int
    truncated: bool


@dataclass(frozen=True)
class JobDetail:
    id: str
    name: str
    owner: str
    queue: str
    priority: int
    state: str
    reason: str
    created_at: float
    updated_at: float
    command: str
    workers: int
    devices_per_worker: int
    accelerator: str
    max_restarts: int
    restarts: int
    hardware_restarts: int
    lost_gpu_h: float
    blame: dict[str, int]  # blame -> failed attempts
    checkpoint_interval: str
    current_attempt: int
    placement: list[Placement]
    attempts: list[AttemptRow]
    checkpoints: list[CheckpointRow]


def job_detail(cp: ControlPlane, job_id: str) -> JobDetail | None:
    job = cp.jobs.get(job_id)
    if job is None:
        return None
    spec = job.spec
    workers, per_worker, models = _spec_summary(job)
    current = job.current_attempt
    command = " ".join([*(spec.get("command") or []), *(spec.get("args") or [])])
    return JobDetail(
        id=job.id,
        name=job.name,
        owner=job.owner,
        queue=job.queue,
        priority=job.priority,
        state=job.state.value,
        reason=job.reason,
        created_at=job.created_at,
        updated_at=job.updated_at,
        command=command,
        workers=workers,
        devices_per_worker=per_worker,
        accelerator=models,
        max_restarts=int(spec.get("max_restarts") or 0),
        restarts=job.restarts,
        hardware_restarts=job.hardware_restarts,
        lost_gpu_h=job.lost_device_s / 3600.0,
        blame=dict(Counter(a.blame for a in job.attempts if a.blame)),
        checkpoint_interval=cp.interval_text(job),
        current_attempt=current.number if current else 0,
        placement=placement(cp, current),
        attempts=[_attempt_row(a) for a in reversed(job.attempts)],
        checkpoints=[
            CheckpointRow(
                c.attempt, c.rank, c.step, c.path, c.at, c.size_bytes, c.duration_s, c.complete, c.trigger
            )
            for c in reversed(cp.checkpoints_of(job.id)[-CHECKPOINTS_SHOWN:])
        ],
    )


def placement(cp: ControlPlane, attempt: AttemptRecord | None) -> list[Placement]:
    if attempt is None:
        return []
    out = []
    for w in attempt.workers:
        rt = cp.nodes.get(w.node_name)
        rack = (rt.record.labels.get("rack") if rt else None) or UNASSIGNED_RACK
        if w.phase.holds_devices:
            ended = ""
        elif w.signal:
            ended = _signal_name(w.signal)
        else:
            ended = f"exit {w.exit_code}" if w.exit_code is not None else w.phase.value
        out.append(
            Placement(
                w.rank,
                w.node_name,
                rack,
                list(w.device_indices),
                w.phase.value,
                ended,
                w.progress_step,
                w.checkpoint_step,
            )
        )
    return out


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _attempt_row(a: AttemptRecord) -> AttemptRow:
    return AttemptRow(
        number=a.number,
        started_at=a.started_at,
        ended_at=a.ended_at,
        outcome=a.outcome or ("in progress" if a.ended_at is None else ""),
        cause=a.cause,
        signal=classify_cause(a.cause).signal if a.cause else "",
        blame=a.blame,
        lost_s=a.lost_s,
        detect_s=a.detect_s,
        restart_s=a.restart_s,
        resumed_from_step=a.resumed_from_step,
        nodes=sorted({w.node_name for w in a.workers}),
    )


def log_tails(cp: ControlPlane, job_id: str, max_bytes: int = LOG_TAIL_BYTES) -> list[LogTail]:
    """The end of each rank's log for the job's current attempt (its output so far)."""
    job = cp.jobs.get(job_id)
    attempt = job.current_attempt if job else None
    if attempt is None:
        return []
    tails = []
    for w in sorted(attempt.workers, key=lambda w: w.rank):
        size = cp.logs.size(job_id, attempt.number, w.rank)
        start = max(0, size - max_bytes)
        data = cp.logs.read(job_id, attempt.number, w.rank, start, max_bytes)
        text = data.decode("utf-8", errors="replace")
        if start:
            text = text.split("\n", 1)[-1]  # drop the partial first line
        tails.append(LogTail(attempt.number, w.rank, w.node_name, text, size, start > 0))
    return tails
