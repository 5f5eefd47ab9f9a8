"""GPU-seconds and ETTR: where device time went, from job records at a given `now`.

Pure; the metrics exporter publishes these figures as counters and `corral report` sums them
over a window.

Device-seconds by what they went to (Google's ML-goodput decomposition of
lost time into scheduling, runtime and program losses; "ML Productivity Goodput", 2024):

- productive: work that can no longer be lost — the whole of an attempt that succeeded; a
  failed attempt from its start to `failed_at - lost_s` (its last complete checkpoint); a
  running, cancelled or moved attempt up to its latest complete checkpoint.
- recompute_lost: work redone — `lost_s` × the attempt's devices for a failure (failure minus
  the checkpoint resumed from), and work since the last checkpoint of an attempt moved off its
  nodes (a drain or a preemption).
- restart_lost: from a failure to every worker of the next attempt running (`restart_s`), and
  while still recovering, from the failure to now; × the failed attempt's devices.
- queued: devices the job asked for × time waiting: submission to first placement, and from a
  move (drain, preemption) to the next placement. Waits after a failure are restart_lost.
- idle: device-seconds the fleet offered (nodes from first registration to last heard, or now
  while connected) that no attempt held.

The first four are the jobs' view, idle is the fleet's; they do not add up to capacity (start-up
before the first running report, and what runs after a cancelled job's last checkpoint, are in
none). Every figure is non-decreasing in `now` for a fixed history, so the metrics exporter can
publish them as the counter `corral_gpu_seconds_total{state}`.

**ETTR** (effective training time ratio, as ByteDance's ByteRobust reports it, arXiv
2509.16293): productive time / wall-clock time since submission. Per job: productive
device-seconds / (devices asked for × elapsed); fleet-wide the same sums over every job, so
large jobs weigh more. A job that never checkpoints shows 0 until it succeeds: only work that
cannot be lost counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from scheduler.model import AttemptRecord, JobRecord

# --- GPU-seconds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSeconds:
    """Device-seconds by state; see the module docstring for what each one counts."""

    productive_s: float = 0.0
    recompute_lost_s: float = 0.0
    restart_lost_s: float = 0.0
    queued_s: float = 0.0
    idle_s: float = 0.0

    @property
    def lost_s(self) -> float:
        return self.recompute_lost_s + self.restart_lost_s

    def as_dict(self) -> dict[str, float]:
        """state label -> device-seconds, as `corral_gpu_seconds_total{state}` names them."""
        return {
            "productive": self.productive_s,
            "recompute_lost": self.recompute_lost_s,
            "restart_lost": self.restart_lost_s,
            "queued": self.queued_s,
            "idle": self.idle_s,
        }


@dataclass(frozen=True)
class Demand:
    """What a job asks for: `devices` in device units (a 0.25 share counts a quarter), and the
    share of each listed device a worker holds."""

    devices: float
    share: float = 1.0


def demand_of(spec: Mapping[str, Any]) -> Demand:
    """From a JobRecord's `spec` (the JobSpec as a dict; zero fields are absent)."""
    workers = int(spec.get("workers") or 1)
    per_worker = int(spec.get("devices_per_worker") or 0)
    milli = int(spec.get("device_milli") or 0)
    if per_worker and 0 < milli < 1000:
        share = milli / 1000.0
        return Demand(workers * share, share)
    return Demand(float(workers * per_worker))


@dataclass(frozen=True)
class NodeSpan:
    """A node's time in the fleet: first registration to last heard (None: connected now)."""

    devices: int
    first_seen: float
    last_seen: float | None = None


# (attempt number) -> the attempt's latest complete checkpoint time, or None.
LastCheckpoint = Callable[[int], float | None]
# (job id, attempt number) -> the same, for many jobs.
CheckpointLookup = Callable[[str, int], float | None]


# A span of a job's history: (state, start, end, devices), state one of the indices below.
PRODUCTIVE, RECOMPUTE_LOST, RESTART_LOST, QUEUED, HELD = range(5)
_Span = tuple[int, float, float, float]
# A step of devices in use or offered, for the idle sweep: (time, change).
_Step = tuple[float, float]


@dataclass
class SpanMemo:
    """What a finished job contributes since the beginning never changes: its sums and held
    steps are kept here between calls (a metrics scrape then costs only the live jobs)."""

    jobs: dict[str, tuple[float, int, tuple[float, ...], list[_Step]]] = field(default_factory=dict)


def attempt_devices(attempt: AttemptRecord, demand: Demand) -> float:
    held = sum([len(w.device_indices) for w in attempt.workers]) * demand.share
    return held or demand.devices


def running_since(attempt: AttemptRecord) -> float | None:
    """When the first worker of the attempt ran; None if none ever did."""
    started = [w.started_at for w in attempt.workers if w.started_at is not None]
    return min(started) if started else None


def job_end(job: JobRecord, now: float) -> float:
    return min(job.updated_at, now) if job.state.terminal else now


def restart_end(job: JobRecord, i: int, now: float) -> float:
    """Where the restart wait after attempt i's failure ends (see the module docstring)."""
    a = job.attempts[i]
    assert a.failed_at is not None
    if a.restart_s > 0:
        return a.failed_at + a.restart_s
    nxt = job.attempts[i + 1] if i + 1 < len(job.attempts) else None
    if nxt is not None:
        ran = running_since(nxt)
        if ran is not None:
            return ran
        if nxt.outcome:  # ended before running: its own spans count its time
            return nxt.started_at
    return job_end(job, now)


def job_spans(job: JobRecord, demand: Demand, last_checkpoint: LastCheckpoint, now: float) -> list[_Span]:
    """Every interval of the job's history with the state its devices were in, up to now."""
    end_of_job = job_end(job, now)
    attempts = job.attempts
    first_placed = attempts[0].started_at if attempts else end_of_job
    spans: list[_Span] = [(QUEUED, job.created_at, first_placed, demand.devices)]
    for i, a in enumerate(attempts):
        nxt = attempts[i + 1] if i + 1 < len(attempts) else None
        devices = attempt_devices(a, demand)
        start = running_since(a) or a.started_at
        if a.failed_at is not None:
            failed_at = min(a.failed_at, now)
            lost_from = max(a.started_at, failed_at - a.lost_s)
            spans += (
                (PRODUCTIVE, start, lost_from, devices),
                (RECOMPUTE_LOST, lost_from, failed_at, devices),
                (RESTART_LOST, failed_at, restart_end(job, i, now), devices),
                (HELD, a.started_at, failed_at, devices),
            )
            continue
        if a.outcome == "succeeded":
            held_end = a.ended_at if a.ended_at is not None else end_of_job
            spans += ((PRODUCTIVE, start, held_end, devices), (HELD, a.started_at, held_end, devices))
            continue
        checkpoint = last_checkpoint(a.number)
        kept_until = max(start, min(checkpoint, now)) if checkpoint is not None else start
        held_end = a.ended_at or (nxt.started_at if nxt is not None else end_of_job)
        spans += ((PRODUCTIVE, start, kept_until, devices), (HELD, a.started_at, held_end, devices))
        if a.outcome.startswith("preempted"):
            requeued_until = nxt.started_at if nxt is not None else end_of_job
            spans += (
                (RECOMPUTE_LOST, kept_until, held_end, devices),
                (QUEUED, held_end, requeued_until, demand.devices),
            )
        # Otherwise running, or cancelled: what is checkpointed is kept, the rest is in no state.
    return spans


def overlap(start: float, end: float, since: float, now: float) -> float:
    return max(0.0, min(end, now) - max(start, since))


def _sum_spans(spans: Iterable[_Span], since: float, now: float) -> list[float]:
    """Device-seconds per state (indexed as the span states) within [since, now]."""
    totals = [0.0] * 5
    for state, start, end, devices in spans:
        seconds = min(end, now) - max(start, since)
        if seconds > 0:
            totals[state] += devices * seconds
    return totals


def _held_steps(spans: Iterable[_Span]) -> list[_Step]:
    steps: list[_Step] = []
    for state, start, end, devices in spans:
        if state == HELD and end > start:
            steps += ((start, -devices), (end, devices))
    return steps


def idle_seconds(nodes: Iterable[NodeSpan], held: Iterable[_Step], since: float, now: float) -> float:
    """Device-seconds offered and not held: the integral over [since, now] of the positive
    part of (devices online − devices held). The positive part keeps it non-decreasing even
    when a lost node's gang still counts as holding devices the node no longer offers.
    `held` are steps (time, change in devices free): −n when n are taken, +n when given back."""
    steps: list[_Step] = list(held)
    for n in nodes:
        end = now if n.last_seen is None else n.last_seen
        if n.devices and end > n.first_seen:
            steps += ((n.first_seen, float(n.devices)), (end, -float(n.devices)))
    steps.sort()
    free, cursor, total = 0.0, since, 0.0
    for t, delta in steps:
        if t >= now:
            break
        if t > cursor:
            if free > 0:
                total += free * (t - cursor)
            cursor = t
        free += delta
    if now > cursor and free > 0:
        total += free * (now - cursor)
    return total


def gpu_seconds(
    jobs: Iterable[JobRecord],
    checkpoints: CheckpointLookup,
    nodes: Iterable[NodeSpan],
    now: float,
    since: float = 0.0,
    demands: Mapping[str, Demand] | None = None,
    memo: SpanMemo | None = None,
) -> GpuSeconds:
    """The fleet's device-seconds by state over [since, now]. `demands` may carry each job's
    Demand already parsed; `memo` keeps finished jobs' figures between calls (used only for
    the whole history, since 0)."""
    totals = [0.0] * 5
    held: list[_Step] = []
    remember = memo is not None and since <= 0
    sums: Sequence[float]
    for job in jobs:
        if remember and memo is not None and job.state.terminal and job.updated_at <= now:
            kept = memo.jobs.get(job.id)
            if kept is None or kept[0] != job.updated_at or kept[1] != len(job.attempts):
                spans = job_spans(job, _demand(job, demands), partial(checkpoints, job.id), now)
                kept = memo.jobs[job.id] = (
                    job.updated_at,
                    len(job.attempts),
                    tuple(_sum_spans(spans, since, now)),
                    _held_steps(spans),
                )
            sums, steps = kept[2], kept[3]
        else:
            spans = job_spans(job, _demand(job, demands), partial(checkpoints, job.id), now)
            sums, steps = _sum_spans(spans, since, now), _held_steps(spans)
        for state in (PRODUCTIVE, RECOMPUTE_LOST, RESTART_LOST, QUEUED):
            totals[state] += sums[state]
        held += steps
    return GpuSeconds(
        productive_s=totals[PRODUCTIVE],
        recompute_lost_s=totals[RECOMPUTE_LOST],
        restart_lost_s=totals[RESTART_LOST],
        queued_s=totals[QUEUED],
        idle_s=idle_seconds(nodes, held, since, now),
    )


def _demand(job: JobRecord, demands: Mapping[str, Demand] | None) -> Demand:
    found = demands.get(job.id) if demands is not None else None
    return found if found is not None else demand_of(job.spec)


@dataclass(frozen=True)
class JobTime:
    """One job's accounting over a window: device-seconds by state, and its ETTR."""

    gpu: GpuSeconds
    devices: float
    elapsed_s: float  # wall-clock seconds of the window the job existed in

    @property
    def ettr(self) -> float:
        return ettr(self.gpu.productive_s, self.devices * self.elapsed_s)


def ettr(productive_device_s: float, elapsed_device_s: float) -> float:
    """Productive over elapsed, 0 when nothing has elapsed."""
    return min(1.0, productive_device_s / elapsed_device_s) if elapsed_device_s > 0 else 0.0


def job_time(
    job: JobRecord, demand: Demand, last_checkpoint: LastCheckpoint, now: float, since: float = 0.0
) -> JobTime:
    totals = _sum_spans(job_spans(job, demand, last_checkpoint, now), since, now)
    gpu = GpuSeconds(totals[PRODUCTIVE], totals[RECOMPUTE_LOST], totals[RESTART_LOST], totals[QUEUED], 0.0)
    return JobTime(gpu, demand.devices, overlap(job.created_at, job_end(job, now), since, now))


def job_ettr(
    job: JobRecord, demand: Demand, last_checkpoint: LastCheckpoint, now: float, since: float = 0.0
) -> float:
    """ETTR of one job over [since, now]: productive device-seconds / (devices × elapsed)."""
    return job_time(job, demand, last_checkpoint, now, since).ettr
