"""Per-queue quota and usage, for the `corral queues` table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.catalog import model_key
from scheduler.placement.cluster import ClusterState
from scheduler.placement.request import WHOLE, Pool
from scheduler.queueing.config import QueueSet
from scheduler.queueing.quota import demand_milli, held_milli
from scheduler.queueing.types import PendingJob, RunningJob


@dataclass(frozen=True)
class PoolUsage:
    """One row: a quota entry of the queue, or a pool it uses without one (nominal None)."""

    vendor: str
    model: str  # "" for every model of the vendor
    nominal: int | None  # None: unlimited
    borrowing_limit: int | None  # None: whatever the cohort leaves (0 outside a cohort)
    in_use: float  # devices
    pending_devices: float
    pending_jobs: int

    @property
    def selector(self) -> str:
        return f"{self.vendor} {self.model}" if self.model else f"{self.vendor} (all models)"


@dataclass(frozen=True)
class QueueUsage:
    name: str
    weight: float
    cohort: str | None
    known: bool  # False for a queue jobs still name but the config no longer has
    rows: tuple[PoolUsage, ...]
    in_use: float
    running_jobs: int
    pending_devices: float
    pending_jobs: int


def queue_usage(
    running: Sequence[RunningJob],
    queues: QueueSet,
    cluster: ClusterState,
    pending: Sequence[PendingJob] = (),
) -> list[QueueUsage]:
    """A pending job counts in every row covering a pool of the cluster it accepts, since
    which pool it gets is not decided until it is placed; the queue totals count it once."""
    pools = cluster.pools
    seen = {r.queue for r in running} | {j.queue for j in pending}
    names = queues.names + sorted(seen - set(queues.names))
    out: list[QueueUsage] = []
    for name in names:
        spec = queues.get(name)
        mine = [r for r in running if r.queue == name]
        waiting = [j for j in pending if j.queue == name]
        used: dict[Pool, int] = {}
        for r in mine:
            used[r.pool] = used.get(r.pool, 0) + held_milli(r)
        rows: list[PoolUsage] = []
        selectors: list[tuple[str, str | None, int | None, int | None]] = []
        if spec is not None:
            for e in spec.quotas:
                limit = e.borrowing_limit if spec.cohort is not None else 0
                selectors.append((e.vendor, e.model, e.nominal, limit))
        covered = {p for p in used if any(_matches(v, m, p) for v, m, _, _ in selectors)}
        selectors += [(p[0], p[1], None, None) for p in sorted(used) if p not in covered and p[0]]
        for vendor, model, nominal, limit in selectors:
            row_pools = [p for p in (*pools, *used) if _matches(vendor, model, p)]
            row_jobs = [j for j in waiting if any(j.request.accepts_pool(p) for p in row_pools)]
            rows.append(
                PoolUsage(
                    vendor=vendor,
                    model=model or "",
                    nominal=nominal,
                    borrowing_limit=limit,
                    in_use=sum(m for p, m in used.items() if _matches(vendor, model, p)) / WHOLE,
                    pending_devices=sum(demand_milli(j.request) for j in row_jobs) / WHOLE,
                    pending_jobs=len(row_jobs),
                )
            )
        out.append(
            QueueUsage(
                name=name,
                weight=queues.weight(name),
                cohort=spec.cohort if spec is not None else None,
                known=spec is not None,
                rows=tuple(rows),
                in_use=sum(used.values()) / WHOLE,
                running_jobs=len(mine),
                pending_devices=sum(demand_milli(j.request) for j in waiting) / WHOLE,
                pending_jobs=len(waiting),
            )
        )
    return out


def _matches(vendor: str, model: str | None, pool: Pool) -> bool:
    return pool[0] == vendor and (model is None or model_key(pool[1]) == model_key(model))
