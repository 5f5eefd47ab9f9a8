"""Reliability accounting: what interrupted training, what it cost, and how fast it came back.

Pure: functions of job records, failure rows and the node inventory at a given `now`; the live
control plane (scheduler/server/reliability.py), the metrics exporter and `corral report` all
read the same figures from here.

**Interruptions.** `classify_interruption(cause, signals)` puts one failed attempt in a
component class and a readable root-cause category, the cluster's own version of Table 5 of
the Llama 3 paper ("The Llama 3 Herd of Models", 2024: 466 interruptions in 54 days, by
component and category). Component and detector come from small fixed sets because the
metrics exporter uses them as Prometheus labels:

- component: gpu, gpu_memory (HBM: ECC, row remap), gpu_interconnect (NVLink), host (the node:
  heartbeat lost, SIGBUS), network, software (driver and runtime faults that are not the job's),
  job (the user's program), planned (drains, preemptions, agent shutdowns), unknown (hangs:
  Llama 3 files NCCL watchdog timeouts under "unknown" too).
- detected_by: xid, ecc, row_remap, thermal, heartbeat, exit_code, hang, operator, other.

The XID knowledge stays in xid.yaml: a signal's `failure_class` carries its XID *group*
("xid:bus", "xid:memory"), and this module maps groups — not codes — to categories.

**GPU-seconds.** Device-seconds by what they went to (Google's ML-goodput decomposition of
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

**MTBF** per (component, vendor, model): device-hours of exposure / hardware failures, where
a hardware failure is an unexpected interruption in a hardware component (gpu, gpu_memory,
gpu_interconnect, host, network) not blamed on the job. Meta's "Revisiting Reliability in
Large-Scale ML Research Clusters" (arXiv 2410.21680) reads its MTTF the same way.

**Recovery phases**: detect (failure observed → the control plane's decision, `detect_s`),
reschedule (decision → next attempt placed), restore (placed → every worker running), total
(detect + decision → running). Percentiles interpolate linearly between ranks.
"""

from __future__ import annotations

import re
import signal as posix
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from scheduler.model import AttemptRecord, JobRecord
from scheduler.reliability.signals import Kind, Observation, classify

HOUR_S = 3600.0
JOB_ROWS = 50  # per-job rows in a report, the largest jobs first

COMPONENTS = (
    "gpu",
    "gpu_memory",
    "gpu_interconnect",
    "host",
    "network",
    "software",
    "job",
    "planned",
    "unknown",
)
DETECTORS = ("xid", "ecc", "row_remap", "thermal", "heartbeat", "exit_code", "hang", "operator", "other")
HARDWARE_COMPONENTS = frozenset({"gpu", "gpu_memory", "gpu_interconnect", "host", "network"})
PHASES = ("detect", "reschedule", "restore", "total")


# --- interruptions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InterruptionClass:
    component: str  # one of COMPONENTS
    category: str  # readable root cause, Llama 3 Table 5 style
    detected_by: str  # one of DETECTORS
    unexpected: bool  # False for planned moves: drains, preemptions, cancels


# xid.yaml's XID groups (not codes: the table owns those) -> (component, category).
_XID_GROUPS: dict[str, tuple[str, str]] = {
    "bus": ("gpu", "Faulty GPU (fell off the bus)"),
    "memory": ("gpu_memory", "GPU HBM memory"),
    "memory_rate": ("gpu_memory", "GPU HBM memory"),
    "nvlink": ("gpu_interconnect", "NVLink"),
    "firmware": ("gpu", "GPU firmware (micro-controller)"),
    "gsp": ("gpu", "GPU System Processor (GSP)"),
    "stopped": ("gpu", "GPU stopped processing"),
    "push_buffer": ("gpu", "GPU PCIe link (push buffer)"),
    "recovery_action": ("gpu", "GPU recovery action"),
    "app_fault": ("job", "User program error (GPU fault)"),
}
# The table's own component, for XID groups above does not name and codes it does not list.
_TABLE_COMPONENT: dict[str, tuple[str, str]] = {
    "device": ("gpu", "GPU error (other XID)"),
    "node": ("host", "Host error (XID)"),
    "network": ("gpu_interconnect", "GPU interconnect error (XID)"),
    "job": ("software", "GPU driver or runtime fault"),
}
# Observation kinds (signals.Kind) -> (component, category, detected_by).
_KINDS: dict[str, tuple[str, str, str]] = {
    Kind.DEVICE_LOST: ("gpu", "Faulty GPU (lost)", "other"),
    Kind.ECC_UNCORRECTED: ("gpu_memory", "GPU HBM memory", "ecc"),
    Kind.ECC_CORRECTABLE: ("gpu_memory", "GPU HBM memory", "ecc"),
    Kind.ECC_CORRECTABLE_RATE: ("gpu_memory", "GPU HBM memory", "ecc"),
    Kind.ROW_REMAP_PENDING: ("gpu_memory", "GPU HBM memory", "row_remap"),
    Kind.ROW_REMAP_FAILED: ("gpu_memory", "GPU HBM memory", "row_remap"),
    Kind.THERMAL_SLOWDOWN: ("gpu", "GPU thermal", "thermal"),
    Kind.THERMAL_SHUTDOWN: ("gpu", "GPU thermal", "thermal"),
    Kind.HANG: ("unknown", "Hang (no progress, NCCL watchdog)", "hang"),
    Kind.HEARTBEAT_LOST: ("host", "Host lost (heartbeat)", "heartbeat"),
    Kind.EXIT_NONZERO: ("job", "User program error", "exit_code"),
    Kind.OOM_KILLED: ("job", "Out of memory (OOM killer)", "exit_code"),
    Kind.VENDOR: ("gpu", "Accelerator vendor error", "other"),
    Kind.RECOVERED: ("unknown", "Unclassified", "other"),
}
# Cause strings the control plane writes (faults/health.py `cause_of`) -> observation kinds.
_CAUSE_KINDS: tuple[tuple[str, Kind], ...] = (
    ("heartbeat lost", Kind.HEARTBEAT_LOST),
    ("hang", Kind.HANG),
    ("ecc_dbe", Kind.ECC_UNCORRECTED),
    ("ecc_uncorrected", Kind.ECC_UNCORRECTED),
    ("ecc_sbe", Kind.ECC_CORRECTABLE_RATE),
    ("row_remap_failed", Kind.ROW_REMAP_FAILED),
    ("row_remap_pending", Kind.ROW_REMAP_PENDING),
    ("thermal", Kind.THERMAL_SHUTDOWN),
    ("device_lost", Kind.DEVICE_LOST),
    ("vendor", Kind.VENDOR),
)
_EXIT_CAUSE = re.compile(r"exited with (?:code|status) (-?\d+)")
_SIGNAL_CAUSE = re.compile(r"killed by (sig[a-z0-9]+)")
_UNCLASSIFIED = InterruptionClass("unknown", "Unclassified", "other", True)


def classify_interruption(cause: str, signals: Sequence[Mapping[str, Any]]) -> InterruptionClass:
    """The component class, root-cause category and detector of one interrupted attempt.

    `cause` is the attempt's cause as recorded ("xid:79", "heartbeat lost: …", "rank 0 on n1
    exited with code 1", "preempted: drain …"); `signals` the failure row's signals (Signal as
    a dict). The signal that best explains the failure decides: a critical hardware signal
    beats the worker's exit status it caused; without signals the cause string is read."""
    text = cause.strip().lower()
    if text.startswith("preempted") or text.startswith("cancel"):
        return _planned(text)
    primary = _primary(signals)
    if primary is not None:
        return _from_signal(primary, text)
    return _from_cause(text)


def _planned(text: str) -> InterruptionClass:
    if text.startswith("cancel"):
        return InterruptionClass("planned", "Cancelled", "operator", False)
    if "drain" in text:
        return InterruptionClass("planned", "Drain (maintenance)", "operator", False)
    if "shut down" in text:
        return InterruptionClass("planned", "Host maintenance (agent shutdown)", "operator", False)
    return InterruptionClass("planned", "Preemption", "other", False)


def _primary(signals: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Critical hardware-blamed first, then any critical, then the first reported."""
    if not signals:
        return None

    def rank(s: Mapping[str, Any]) -> int:
        critical = s.get("severity") == "critical"
        return 0 if critical and s.get("blame") == "hardware" else 1 if critical else 2

    return min(signals, key=rank)  # min is stable: the first of equal rank wins


def _from_signal(signal: Mapping[str, Any], cause: str) -> InterruptionClass:
    failure_class = str(signal.get("failure_class") or "")
    table_component = str(signal.get("component") or "")
    if failure_class.startswith("xid:"):
        group = failure_class.removeprefix("xid:")
        found = _XID_GROUPS.get(group)
        if found is not None:
            component, category = found
            if group == "stopped" and table_component == "job":
                # XIDs 8 and 109: a channel timed out, usually software, not the device.
                component, category = "software", "GPU stopped processing (software timeout)"
            return InterruptionClass(component, category, "xid", True)
        component, category = _TABLE_COMPONENT.get(table_component, ("unknown", "Unclassified"))
        if table_component == "job" and signal.get("blame") == "job":
            component, category = "job", "User program error (GPU fault)"
        return InterruptionClass(component, category, "xid", True)
    if failure_class.startswith("exit:"):
        return InterruptionClass("job", "User program error", "exit_code", True)
    if failure_class.startswith("signal:") or failure_class == "oom":
        return _from_posix(failure_class, table_component)
    kind, _, code = failure_class.partition(" ")
    if kind == Kind.DEVICE_LOST and code.isdigit():
        # A device lost with an XID (NVML reports 79 as "GPU is lost"): the XID's group says why.
        return _from_cause(f"xid:{code}")
    found_kind = _KINDS.get(kind or _kind_of_cause(cause) or "")
    if found_kind is None:
        return _from_cause(cause)
    return InterruptionClass(*found_kind, True)


def _from_posix(failure_class: str, table_component: str) -> InterruptionClass:
    if failure_class == "oom":
        return InterruptionClass(*_KINDS[Kind.OOM_KILLED], True)
    name = failure_class.removeprefix("signal:")
    if table_component == "node":
        return InterruptionClass("host", f"Host memory or bus error ({name})", "exit_code", True)
    return InterruptionClass("job", "User program crash (signal)", "exit_code", True)


def _kind_of_cause(text: str) -> Kind | None:
    return next((kind for prefix, kind in _CAUSE_KINDS if text.startswith(prefix)), None)


def _signal_number(name: str) -> int | None:
    number = getattr(posix.Signals, name.upper(), None)
    return int(number) if number is not None else None


def _from_cause(text: str) -> InterruptionClass:
    """No signals recorded: read the cause string through the same signal table."""
    if text.startswith("xid:"):
        code = text.removeprefix("xid:").split()[0]
        if code.isdigit():
            s = classify(Observation(Kind.XID, int(code)))
            return _from_signal({"failure_class": s.failure_class, "component": s.component}, text)
    kind = _kind_of_cause(text)
    if kind is not None:
        return _from_signal({"failure_class": kind.value}, text)
    if _EXIT_CAUSE.search(text) or "failed to start" in text:
        return InterruptionClass("job", "User program error", "exit_code", True)
    if (match := _SIGNAL_CAUSE.search(text)) and (number := _signal_number(match.group(1))):
        s = classify(Observation(Kind.SIGNAL, number))
        return _from_posix(s.failure_class, s.component)
    return _UNCLASSIFIED


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


def _restart_end(job: JobRecord, i: int, now: float) -> float:
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
                (RESTART_LOST, failed_at, _restart_end(job, i, now), devices),
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


def _overlap(start: float, end: float, since: float, now: float) -> float:
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
    return JobTime(gpu, demand.devices, _overlap(job.created_at, job_end(job, now), since, now))


def job_ettr(
    job: JobRecord, demand: Demand, last_checkpoint: LastCheckpoint, now: float, since: float = 0.0
) -> float:
    """ETTR of one job over [since, now]: productive device-seconds / (devices × elapsed)."""
    return job_time(job, demand, last_checkpoint, now, since).ettr


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
    restart = max(0.0, min(_restart_end(job, i, now), now) - a.failed_at)
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
        seconds = _overlap(n.span.first_seen, end, since, now)
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
