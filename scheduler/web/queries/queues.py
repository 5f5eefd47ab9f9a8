"""What the Queues and scheduling view shows: pending gangs by queue and why they wait,
wait times, quota against usage per queue and pool, and recent preemptions.

All of it comes from the control plane's memory; nothing here reads the store. Quota against
usage is `corral queues`' figure, `ControlPlane.queue_usage()`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scheduler.jobstate import JobState
from scheduler.model import JobRecord
from scheduler.placement.from_spec import placement_request
from scheduler.placement.request import WHOLE, PlacementRequest
from scheduler.queueing.quota import demand_milli
from scheduler.queueing.usage import QueueUsage
from scheduler.server.controlplane import ControlPlane

PAGE_SIZE = 50
# Placements younger than this feed the "recent placements" wait percentiles.
RECENT_WINDOW_S = 24 * 3600.0
PREEMPTIONS_SHOWN = 50
PREEMPTED_PREFIX = "preempted: "

# Why a gang waits, from the scheduling pass's one-line reason (scheduler/queueing/admission.py
# and the fault-tolerance code write them). First match wins: a reason can carry several
# notes, and the earlier ones here are what actually holds the job back.
_REASON_RULES: tuple[tuple[str, str], ...] = (
    ("waiting for power", "power budget"),
    ("waiting for the jobs preempted for it", "victims stopping"),
    ("preempting ", "preempting to make room"),
    ("reserved ", "holds a reservation"),
    (" at quota ", "queue quota"),
    ("no connected device matches", "no matching device"),
    ("unknown queue", "unknown queue"),
    ("waiting for devices after a failure", "recovering: no devices"),
    ("largest free block", "not enough free devices"),
    ("requeued", "requeued, not yet tried"),
    ("waiting for placement", "not yet tried"),
)
OTHER_REASON = "other"

# How a running gang came to be moved off its devices, from the attempt's outcome.
_PREEMPTION_RULES: tuple[tuple[str, str], ...] = (
    ("reclaims its nominal quota", "quota reclaim"),
    ("(priority ", "priority"),
    ("is draining", "node drain"),
    ("shut down", "agent shutdown"),
)
OTHER_PREEMPTION = "other"


def reason_category(reason: str) -> str:
    """The kind of wait a pending job's reason describes, for grouping."""
    for needle, category in _REASON_RULES:
        if needle in reason:
            return category
    return OTHER_REASON


def preemption_kind(outcome: str) -> str:
    for needle, kind in _PREEMPTION_RULES:
        if needle in outcome:
            return kind
    return OTHER_PREEMPTION


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Percentiles:
        ordered = sorted(values)
        if not ordered:
            return cls(0, 0.0, 0.0, 0.0)
        return cls(len(ordered), nearest_rank(ordered, 0.50), nearest_rank(ordered, 0.95), ordered[-1])


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values by the nearest-rank method: always a value
    that occurred."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class PendingRow:
    job_id: str
    name: str
    queue: str
    priority: int
    devices: float
    wait_s: float
    category: str
    reason: str


@dataclass(frozen=True)
class PendingGroup:
    """The pending gangs of one queue held back for one kind of reason."""

    queue: str
    category: str
    jobs: int
    devices: float
    longest_wait_s: float
    example: str  # the reason of the longest-waiting of them, verbatim


@dataclass(frozen=True)
class PreemptionRow:
    job_id: str
    name: str
    queue: str
    attempt: int
    at: float
    kind: str
    reason: str


@dataclass(frozen=True)
class QueuesPage:
    now: float
    policy: str
    queues: tuple[QueueUsage, ...]
    pending_total: int
    pending_devices: float
    groups: tuple[PendingGroup, ...]
    pending: tuple[PendingRow, ...]  # this page of them, longest wait first
    listed_total: int  # pending gangs the table pages through (those of `queue_filter`)
    page: int
    pages: int
    queue_filter: str
    current_waits: Percentiles  # how long the gangs pending now have waited so far
    placement_waits: Percentiles  # submit -> first placement, over the recent window
    preemptions: tuple[PreemptionRow, ...]  # newest first, at most PREEMPTIONS_SHOWN
    preemptions_total: int
    preemptions_recent: int  # within RECENT_WINDOW_S
    preemptions_by_kind: tuple[tuple[str, int], ...]  # over the recent window, most first


def pending_requests(cp: ControlPlane) -> dict[str, PlacementRequest]:
    """Every pending job's placement request (its spec is parsed once and kept by `cp`)."""
    return {
        job.id: placement_request(job.id, cp.spec_of(job))
        for job in cp.jobs.values()
        if job.state is JobState.PENDING
    }


def pending_rows(cp: ControlPlane, requests: Mapping[str, PlacementRequest], now: float) -> list[PendingRow]:
    """The pending jobs of `requests`, longest wait first. A job's wait runs from when it last
    became PENDING (submission, or a requeue), which is when its record last changed state."""
    rows = []
    for job_id, request in requests.items():
        job = cp.jobs[job_id]
        rows.append(
            PendingRow(
                job_id=job.id,
                name=job.name,
                queue=job.queue,
                priority=job.priority,
                devices=demand_milli(request) / WHOLE,
                wait_s=max(0.0, now - job.updated_at),
                category=reason_category(job.reason),
                reason=job.reason,
            )
        )
    rows.sort(key=lambda r: (-r.wait_s, r.job_id))
    return rows


def pending_groups(rows: Iterable[PendingRow]) -> list[PendingGroup]:
    """Rows grouped by (queue, category); `rows` must be longest wait first, so each group's
    first row is its longest-waiting one."""
    groups: dict[tuple[str, str], list[PendingRow]] = {}
    for r in rows:
        groups.setdefault((r.queue, r.category), []).append(r)
    out = [
        PendingGroup(
            queue=queue,
            category=category,
            jobs=len(members),
            devices=sum(m.devices for m in members),
            longest_wait_s=members[0].wait_s,
            example=members[0].reason,
        )
        for (queue, category), members in groups.items()
    ]
    out.sort(key=lambda g: (g.queue, -g.jobs, g.category))
    return out


def placement_waits(jobs: Iterable[JobRecord], now: float, window_s: float = RECENT_WINDOW_S) -> Percentiles:
    """Submission to first placement, for jobs first placed within the window."""
    return Percentiles.of(
        max(0.0, job.attempts[0].started_at - job.created_at)
        for job in jobs
        if job.attempts and job.attempts[0].started_at >= now - window_s
    )


def preemptions(jobs: Iterable[JobRecord]) -> list[PreemptionRow]:
    """Attempts stopped to move their gang (requeued without spending a restart), newest
    first. Their time is when the last worker stopped, or the start if it has not yet."""
    rows = [
        PreemptionRow(
            job_id=job.id,
            name=job.name,
            queue=job.queue,
            attempt=attempt.number,
            at=attempt.ended_at if attempt.ended_at is not None else attempt.started_at,
            kind=preemption_kind(attempt.outcome),
            reason=attempt.outcome.removeprefix(PREEMPTED_PREFIX),
        )
        for job in jobs
        for attempt in job.attempts
        if attempt.outcome.startswith(PREEMPTED_PREFIX)
    ]
    rows.sort(key=lambda r: (-r.at, r.job_id, -r.attempt))
    return rows


def queues_page(cp: ControlPlane, *, page: int = 1, queue: str = "", now: float | None = None) -> QueuesPage:
    """The whole view. `page` counts from 1 (out-of-range pages are clamped); `queue`
    narrows the pending table (not the summaries) to one queue."""
    now = cp.clock() if now is None else now
    requests = pending_requests(cp)
    rows = pending_rows(cp, requests, now)
    listed = [r for r in rows if r.queue == queue] if queue else rows
    pages = max(1, math.ceil(len(listed) / PAGE_SIZE))
    page = min(max(1, page), pages)
    moved = preemptions(cp.jobs.values())
    recent = [p for p in moved if p.at >= now - RECENT_WINDOW_S]
    kinds: dict[str, int] = {}
    for p in recent:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    return QueuesPage(
        now=now,
        policy=cp.policy_name,
        queues=tuple(cp.queue_usage()),
        pending_total=len(rows),
        pending_devices=sum(r.devices for r in rows),
        groups=tuple(pending_groups(rows)),
        pending=tuple(listed[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]),
        listed_total=len(listed),
        page=page,
        pages=pages,
        queue_filter=queue,
        current_waits=Percentiles.of(r.wait_s for r in rows),
        placement_waits=placement_waits(cp.jobs.values(), now),
        preemptions=tuple(moved[:PREEMPTIONS_SHOWN]),
        preemptions_total=len(moved),
        preemptions_recent=len(recent),
        preemptions_by_kind=tuple(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
