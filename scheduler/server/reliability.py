"""Reliability figures of the live control plane: the I/O edge of the pure modules
scheduler/reliability/{interruptions,gpu_time,report}.py.

Reads the ControlPlane's in-memory jobs, checkpoints and node registry, and (for reports only)
the store's `failures` table through its index on `at`; every figure is computed by those
modules. `fleet_gpu_seconds` reads memory only, and is reused for GPU_SECONDS_REUSE_S: it
walks every job's attempts and every node (about 60 ms at 10,000 nodes and 3,000 jobs),
and Prometheus scrapes it from every replica of itself.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scheduler.reliability.gpu_time import (
    CheckpointLookup,
    Demand,
    GpuSeconds,
    NodeSpan,
    SpanMemo,
    demand_of,
    gpu_seconds,
)
from scheduler.reliability.interruptions import InterruptionClass, classify_interruption
from scheduler.reliability.report import FailureFact, NodeInventory, ReliabilityReportData
from scheduler.reliability.report import build_report as build_report_from

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane
    from scheduler.server.nodes import NodeRuntime

# A published GpuSeconds is handed out again for this long (control-plane clock seconds).
# Reusing it keeps the counter monotone: what is published only ever grows (see below).
GPU_SECONDS_REUSE_S = 5.0

# Per control plane: the GpuSeconds last published, with the time it was figured for (the
# counter never goes back), each job's parsed Demand (a spec never changes after submit) and
# finished jobs' figures.
_published: weakref.WeakKeyDictionary[ControlPlane, tuple[float, GpuSeconds]] = weakref.WeakKeyDictionary()
_demands: weakref.WeakKeyDictionary[ControlPlane, dict[str, Demand]] = weakref.WeakKeyDictionary()
_memos: weakref.WeakKeyDictionary[ControlPlane, SpanMemo] = weakref.WeakKeyDictionary()


def interruption_of(failure_row: Mapping[str, Any]) -> InterruptionClass:
    """The class of one `failures` table row (its cause and signals)."""
    signals = failure_row.get("signals") or []
    return classify_interruption(str(failure_row.get("cause") or ""), list(signals))


def fleet_gpu_seconds(cp: ControlPlane, now: float) -> GpuSeconds:
    """Device-seconds by state since the store began, for `corral_gpu_seconds_total{state}`.

    Each state is the larger of what was last published and what the history says now: a node
    that disconnects ends its capacity at its last heartbeat, in the past, which would otherwise
    take back idle seconds already published and read to Prometheus as a counter reset.
    Within GPU_SECONDS_REUSE_S after it was figured, the last published value is returned."""
    last = _published.get(cp)
    if last is not None and 0.0 <= now - last[0] < GPU_SECONDS_REUSE_S:
        return last[1]
    memo = _memos.get(cp)
    if memo is None:
        memo = _memos[cp] = SpanMemo()
    current = gpu_seconds(
        cp.jobs.values(), checkpoint_lookup(cp), node_spans(cp), now, 0.0, _demand_cache(cp), memo
    )
    if last is not None:
        before = last[1]
        current = GpuSeconds(
            productive_s=max(current.productive_s, before.productive_s),
            recompute_lost_s=max(current.recompute_lost_s, before.recompute_lost_s),
            restart_lost_s=max(current.restart_lost_s, before.restart_lost_s),
            queued_s=max(current.queued_s, before.queued_s),
            idle_s=max(current.idle_s, before.idle_s),
        )
    _published[cp] = (now, current)
    return current


def build_report(cp: ControlPlane, since_s: float, now: float) -> ReliabilityReportData:
    """The reliability report over the last `since_s` seconds (0: everything stored)."""
    if math.isnan(since_s) or since_s < 0:
        raise ValueError(f"since_s: must be 0 (everything) or a positive number of seconds (got {since_s})")
    since = max(0.0, now - since_s) if since_s > 0 else 0.0
    failures = [
        FailureFact(
            at=float(row["at"]),
            job_id=str(row["job_id"]),
            attempt=int(row["attempt"]),
            blame=str(row["blame"]),
            cause=str(row["cause"] or ""),
            nodes=tuple(row["nodes"] or ()),
            signals=tuple(row["signals"] or ()),
        )
        for row in cp.store.load_failures(since=since)
        if row["at"] <= now
    ]
    return build_report_from(
        jobs=list(cp.jobs.values()),
        failures=failures,
        nodes=[_inventory(rt) for rt in cp.nodes],
        checkpoints=checkpoint_lookup(cp),
        since=since,
        now=now,
    )


def checkpoint_lookup(cp: ControlPlane) -> CheckpointLookup:
    """(job, attempt) -> the attempt's latest complete checkpoint time, from memory, each
    job's records read once per lookup function."""
    latest: dict[str, dict[int, float]] = {}

    def lookup(job_id: str, attempt: int) -> float | None:
        per_attempt = latest.get(job_id)
        if per_attempt is None:
            per_attempt = latest[job_id] = {}
            for c in cp.checkpoints_of(job_id):
                if c.complete and c.at > per_attempt.get(c.attempt, -math.inf):
                    per_attempt[c.attempt] = c.at
        return per_attempt.get(attempt)

    return lookup


def node_spans(cp: ControlPlane) -> list[NodeSpan]:
    return [_span(rt) for rt in cp.nodes]


def _span(rt: NodeRuntime) -> NodeSpan:
    record = rt.record
    return NodeSpan(len(record.devices), record.first_seen, None if rt.connected else record.last_seen)


def _inventory(rt: NodeRuntime) -> NodeInventory:
    models = {d.index: (d.vendor, d.model) for d in rt.record.devices}
    return NodeInventory(rt.record.name, _span(rt), models)


def _demand_cache(cp: ControlPlane) -> dict[str, Demand]:
    cache = _demands.get(cp)
    if cache is None:
        cache = _demands[cp] = {}
    if len(cache) != len(cp.jobs):
        for job in cp.jobs.values():
            if job.id not in cache:
                cache[job.id] = demand_of(job.spec)
    return cache
