"""The reliability report: interruptions by cause, MTBF, ETTR, GPU time and recovery phases
over a window (`corral report`, the dashboard's reliability view, GetReliabilityReport).

Pure: a function of failure facts, job records and the node inventory at a given `now`.

**MTBF** per (component, vendor, model): device-hours of exposure / hardware failures, where
a hardware failure is an unexpected interruption in a hardware component (gpu, gpu_memory,
gpu_interconnect, host, network) not blamed on the job. Meta's "Revisiting Reliability in
Large-Scale ML Research Clusters" (arXiv 2410.21680) reads its MTTF the same way.

**Recovery phases**: detect (failure observed → the control plane's decision, `detect_s`),
reschedule (decision → next attempt placed), restore (placed → every worker running), total
(detect + decision → running). Percentiles interpolate linearly between ranks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from scheduler.model import JobRecord
from scheduler.reliability.gpu_time import (
    CheckpointLookup,
    Demand,
    GpuSeconds,
    JobTime,
    NodeSpan,
    attempt_devices,
    demand_of,
    ettr,
    gpu_seconds,
    job_time,
    overlap,
    restart_end,
)
from scheduler.reliability.interruptions import (
    COMPONENTS,
    HARDWARE_COMPONENTS,
    InterruptionClass,
    classify_interruption,
)

HOUR_S = 3600.0
JOB_ROWS = 50  # per-job rows in a report, the largest jobs first
PHASES = ("detect", "reschedule", "restore", "total")

# --- MTBF and percentiles --------------------------------------------------------------------


@dataclass(frozen=True)
class MtbfRow:
    component: str  # a hardware component, or "all" for every hardware failure of the model
    vendor: str
    model: str
    device_hours: float
    failures: int
    mtbf_hours: float  # 0 when there were no failures


def mtbf_rows(
    exposure_s: Mapping[tuple[str, str], float], failures: Iterable[tuple[str, str, str]]
) -> list[MtbfRow]:
    """`exposure_s`: (vendor, model) -> device-seconds; `failures`: (component, vendor, model)
    of each hardware failure. One "all" row per model, then one per component that failed."""
    by_key = Counter(failures)
    per_model: Counter[tuple[str, str]] = Counter()
    for (_, vendor, model), n in by_key.items():
        per_model[(vendor, model)] += n
    rows: list[MtbfRow] = []
    for vendor, model in sorted(set(exposure_s) | set(per_model)):
        hours = exposure_s.get((vendor, model), 0.0) / HOUR_S
        rows.append(_mtbf("all", vendor, model, hours, per_model[(vendor, model)]))
        for component in COMPONENTS:
            n = by_key.get((component, vendor, model), 0)
            if n:
                rows.append(_mtbf(component, vendor, model, hours, n))
    return rows


def _mtbf(component: str, vendor: str, model: str, hours: float, failures: int) -> MtbfRow:
    return MtbfRow(component, vendor, model, hours, failures, hours / failures if failures else 0.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class PhaseDurations:
    phase: str  # one of PHASES
    count: int
    p50_s: float
    p95_s: float
    max_s: float


def phase_durations(phase: str, values: Sequence[float]) -> PhaseDurations:
    return PhaseDurations(
        phase, len(values), percentile(values, 50), percentile(values, 95), max(values, default=0.0)
    )


def recovery_phases(jobs: Iterable[JobRecord], since: float, now: float) -> list[PhaseDurations]:
    """Detect / reschedule / restore / total of every failure decided in [since, now]."""
    samples: dict[str, list[float]] = {p: [] for p in PHASES}
    for job in jobs:
        for i, a in enumerate(job.attempts):
            if a.failed_at is None or not since <= a.failed_at <= now:
                continue
            samples["detect"].append(a.detect_s)
            nxt = job.attempts[i + 1] if i + 1 < len(job.attempts) else None
            if nxt is not None:
                samples["reschedule"].append(max(0.0, nxt.started_at - a.failed_at))
                if a.restart_s > 0:
                    samples["restore"].append(max(0.0, a.failed_at + a.restart_s - nxt.started_at))
            if a.restart_s > 0:
                samples["total"].append(a.detect_s + a.restart_s)
    return [phase_durations(p, samples[p]) for p in PHASES]


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureFact:
    """One row of the `failures` table, as the report needs it."""

    at: float
    job_id: str
    attempt: int
    blame: str
    cause: str
    nodes: tuple[str, ...] = ()
    signals: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class NodeInventory:
    """A node's span in the fleet and its devices' (vendor, model) by index."""

    name: str
    span: NodeSpan
    models: Mapping[int, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class InterruptionRow:
    component: str
    category: str
    blame: str  # the most common blame among the row's interruptions
    count: int
    share: float  # of all interruptions in the window
    lost_gpu_hours: float  # recomputation plus restart of the row's failures
    unexpected: bool


@dataclass(frozen=True)
class JobReliability:
    job_id: str
    name: str
    state: str
    devices: float
    ettr: float
    productive_gpu_hours: float
    lost_gpu_hours: float
    interruptions: int


@dataclass(frozen=True)
class ReliabilityReportData:
    """Mirrors corral.v1.ReliabilityReport (proto/corral/v1/cluster.proto)."""

    since: float
    until: float
    interruptions: int
    unexpected: int
    by_cause: tuple[InterruptionRow, ...]
    mtbf: tuple[MtbfRow, ...]
    fleet_ettr: float
    gpu_time: GpuSeconds
    jobs: tuple[JobReliability, ...]
    recovery: tuple[PhaseDurations, ...]
    lost_gpu_hours: float
    devices: int


@dataclass(frozen=True)
class _Interruption:
    job_id: str
    kind: InterruptionClass
    blame: str
    lost_device_s: float
    model: tuple[str, str] | None


def _attempt_of(job: JobRecord | None, number: int) -> int | None:
    if job is None:
        return None
    return next((i for i, a in enumerate(job.attempts) if a.number == number), None)


def _failure_lost_s(job: JobRecord | None, number: int, demand: Demand | None, now: float) -> float:
    """Device-seconds one failure cost: work redone plus the wait to run again."""
    i = _attempt_of(job, number)
    if job is None or i is None or demand is None:
        return 0.0
    a = job.attempts[i]
    if a.failed_at is None:
        return 0.0
    restart = max(0.0, min(restart_end(job, i, now), now) - a.failed_at)
    return (a.lost_s + restart) * attempt_devices(a, demand)


def _model_of(
    fact: FailureFact, kind: InterruptionClass, inventory: Mapping[str, NodeInventory]
) -> tuple[str, str] | None:
    """The (vendor, model) a hardware failure counts against: the signalled device's, else the
    node's most common model."""
    for name in fact.nodes:
        node = inventory.get(name)
        if node is None or not node.models:
            continue
        for s in fact.signals:
            index = s.get("device_index")
            if isinstance(index, int) and index in node.models:
                return node.models[index]
        return Counter(node.models.values()).most_common(1)[0][0]
    return None


def _planned_moves(jobs: Iterable[JobRecord], since: float, now: float) -> Iterable[tuple[str, str]]:
    """(job id, outcome) of attempts moved off their nodes in the window; they are not in the
    failures table. An attempt is counted when its workers ended (or the next one started)."""
    for job in jobs:
        for i, a in enumerate(job.attempts):
            if not a.outcome.startswith("preempted"):
                continue
            nxt = job.attempts[i + 1] if i + 1 < len(job.attempts) else None
            at = a.ended_at or (nxt.started_at if nxt is not None else None)
            if at is not None and since <= at <= now:
                yield job.id, a.outcome


def build_report(
    *,
    jobs: Sequence[JobRecord],
    failures: Sequence[FailureFact],
    nodes: Sequence[NodeInventory],
    checkpoints: CheckpointLookup,
    since: float,
    now: float,
    job_rows: int = JOB_ROWS,
) -> ReliabilityReportData:
    """The reliability report over [since, now]. `failures` are the failures table's rows in
    the window; `jobs` every job (those outside the window contribute nothing)."""
    by_id = {j.id: j for j in jobs}
    demands = {j.id: demand_of(j.spec) for j in jobs}
    inventory = {n.name: n for n in nodes}

    interruptions: list[_Interruption] = []
    for f in failures:
        if not since <= f.at <= now:
            continue
        kind = classify_interruption(f.cause, f.signals)
        job = by_id.get(f.job_id)
        lost = _failure_lost_s(job, f.attempt, demands.get(f.job_id), now)
        interruptions.append(_Interruption(f.job_id, kind, f.blame, lost, _model_of(f, kind, inventory)))
    for job_id, outcome in _planned_moves(jobs, since, now):
        interruptions.append(_Interruption(job_id, classify_interruption(outcome, ()), "", 0.0, None))

    gpu = gpu_seconds(jobs, checkpoints, (n.span for n in nodes), now, since, demands)
    times = {j.id: job_time(j, demands[j.id], partial(checkpoints, j.id), now, since) for j in jobs}
    elapsed_device_s = sum(t.devices * t.elapsed_s for t in times.values())
    per_job = Counter(i.job_id for i in interruptions if i.kind.unexpected)
    return ReliabilityReportData(
        since=since,
        until=now,
        interruptions=len(interruptions),
        unexpected=sum(1 for i in interruptions if i.kind.unexpected),
        by_cause=tuple(_by_cause(interruptions)),
        mtbf=tuple(mtbf_rows(_exposure(nodes, since, now), _hardware_failures(interruptions))),
        fleet_ettr=ettr(gpu.productive_s, elapsed_device_s),
        gpu_time=gpu,
        jobs=tuple(_job_rows(by_id, times, per_job, job_rows)),
        recovery=tuple(recovery_phases(jobs, since, now)),
        lost_gpu_hours=gpu.lost_s / HOUR_S,
        devices=sum(n.span.devices for n in nodes),
    )


def _by_cause(interruptions: Sequence[_Interruption]) -> list[InterruptionRow]:
    groups: dict[tuple[str, str, bool], list[_Interruption]] = defaultdict(list)
    for i in interruptions:
        groups[(i.kind.component, i.kind.category, i.kind.unexpected)].append(i)
    total = len(interruptions)
    rows = [
        InterruptionRow(
            component=component,
            category=category,
            blame=_majority_blame(members),
            count=len(members),
            share=len(members) / total,
            lost_gpu_hours=sum(m.lost_device_s for m in members) / HOUR_S,
            unexpected=unexpected,
        )
        for (component, category, unexpected), members in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r.count, not r.unexpected, r.component, r.category))


def _majority_blame(members: Sequence[_Interruption]) -> str:
    counts = Counter(m.blame for m in members if m.blame)
    if not counts:
        return ""
    top = counts.most_common()
    tied = [b for b, n in top if n == top[0][1]]
    return tied[0] if len(tied) == 1 else "unknown"


def _hardware_failures(interruptions: Iterable[_Interruption]) -> Iterable[tuple[str, str, str]]:
    for i in interruptions:
        if i.kind.unexpected and i.kind.component in HARDWARE_COMPONENTS and i.blame != "job":
            vendor, model = i.model or ("", "unknown")
            yield i.kind.component, vendor, model


def _exposure(nodes: Iterable[NodeInventory], since: float, now: float) -> dict[tuple[str, str], float]:
    exposure: dict[tuple[str, str], float] = defaultdict(float)
    for n in nodes:
        end = now if n.span.last_seen is None else n.span.last_seen
        seconds = overlap(n.span.first_seen, end, since, now)
        for vendor_model in n.models.values():
            exposure[vendor_model] += seconds
    return exposure


def _job_rows(
    jobs: Mapping[str, JobRecord], times: Mapping[str, JobTime], interruptions: Counter[str], limit: int
) -> list[JobReliability]:
    active = [j for j in jobs.values() if times[j.id].elapsed_s > 0 and times[j.id].devices > 0]
    active.sort(key=lambda j: (-times[j.id].devices, -times[j.id].elapsed_s, j.id))
    return [
        JobReliability(
            job_id=j.id,
            name=j.name,
            state=j.state.value,
            devices=times[j.id].devices,
            ettr=times[j.id].ettr,
            productive_gpu_hours=times[j.id].gpu.productive_s / HOUR_S,
            lost_gpu_hours=times[j.id].gpu.lost_s / HOUR_S,
            interruptions=interruptions.get(j.id, 0),
        )
        for j in active[:limit]
    ]
