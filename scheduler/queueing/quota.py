"""Device usage per queue and pool during one pass, and what each queue's quota still allows.

Everything is counted in milli-devices so a shared (fractional) worker uses a fraction of a
device of quota; quotas are written in whole devices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scheduler.placement.cluster import ANY_POOL, ClusterState
from scheduler.placement.request import WHOLE, PlacementRequest, Pool
from scheduler.queueing.config import QueueSet, QuotaSpec
from scheduler.queueing.types import RunningJob


def fmt_devices(milli: int) -> str:
    return str(milli // WHOLE) if milli % WHOLE == 0 else f"{milli / WHOLE:.2f}"


def demand_milli(request: PlacementRequest) -> int:
    return request.workers * request.shape.total_milli


def held_milli(job: RunningJob) -> int:
    from_allocations = sum(len(a.device_indices) * a.device_milli for a in job.allocations)
    return from_allocations or job.devices * WHOLE


def pool_capacity(cluster: ClusterState) -> dict[Pool, int]:
    """Healthy devices per pool, in milli, whatever their state: the yardstick for fair share."""
    return {pool: milli for pool, milli in cluster.capacity.items() if milli > 0}


Usage = Mapping[str, Mapping[Pool, int]]  # queue -> pool -> milli-devices held


class Ledger:
    def __init__(
        self, queues: QueueSet, running: Sequence[RunningJob] = (), usage: Usage | None = None
    ) -> None:
        """Usage per queue and pool: from `usage` where the caller keeps it up to date (the
        simulator, where summing every running job each pass was most of its time), else
        summed from `running`."""
        self.queues = queues
        self.usage: dict[str, dict[Pool, int]] = {}
        if usage is not None:
            self.usage = {q: dict(pools) for q, pools in usage.items()}
            return
        for job in running:
            self.add(job.queue, job.pool, held_milli(job))

    def add(self, queue: str, pool: Pool, milli: int) -> None:
        if pool == ANY_POOL or milli <= 0:
            return
        per_pool = self.usage.setdefault(queue, {})
        per_pool[pool] = per_pool.get(pool, 0) + milli

    def used(self, queue: str, entry: QuotaSpec) -> int:
        return sum(m for p, m in self.usage.get(queue, {}).items() if entry.matches(p))

    def borrowable(self, queue: str, entry: QuotaSpec) -> int:
        """How far above its nominal `queue` may go on `entry` right now: what its cohort
        peers leave unused of the same selector (net of their own borrowing), capped by
        the entry's borrowing limit."""
        peers = self.queues.cohort_peers(queue)
        if not peers:
            return 0
        lendable = sum(
            f.nominal * WHOLE - self.used(p.name, f)
            for p in peers
            for f in p.quotas
            if f.selector == entry.selector
        )
        lendable = max(lendable, 0)
        if entry.borrowing_limit is not None:
            lendable = min(lendable, entry.borrowing_limit * WHOLE)
        return lendable

    def limit(self, queue: str, entry: QuotaSpec) -> int:
        return entry.nominal * WHOLE + self.borrowable(queue, entry)

    def blocking(self, queue: str, pool: Pool, demand: int) -> str | None:
        """None when `queue` may take `demand` more milli-devices of `pool`; otherwise its
        quota state in words, for the job's waiting reason."""
        for entry in sorted(self.queues.quotas_for(queue, pool), key=lambda e: e.model is None):
            used, limit = self.used(queue, entry), self.limit(queue, entry)
            if used + demand > limit:
                text = (
                    f"queue {queue} at quota {fmt_devices(used)}/{fmt_devices(limit)} on {entry.describe()}"
                )
                q = self.queues.get(queue)
                if q is not None and q.cohort is not None:
                    borrow = fmt_devices(limit - entry.nominal * WHOLE)
                    text += f" (nominal {entry.nominal} + {borrow} borrowable in cohort {q.cohort})"
                return text
        return None

    def within_nominal(self, queue: str, pool: Pool, demand: int) -> bool:
        """Whether `demand` fits under `queue`'s own nominal quota on `pool` (no borrowing):
        the condition for reclaiming what cohort peers borrowed."""
        entries = self.queues.quotas_for(queue, pool)
        return bool(entries) and all(self.used(queue, e) + demand <= e.nominal * WHOLE for e in entries)

    def borrowed(self, queue: str, pool: Pool) -> int:
        """Milli-devices `queue` uses above its nominal on some entry covering `pool`."""
        return max(
            (self.used(queue, e) - e.nominal * WHOLE for e in self.queues.quotas_for(queue, pool)),
            default=0,
        )

    def dominant_share(self, queue: str, capacity: dict[Pool, int]) -> float:
        """The queue's largest share of any pool, divided by its weight (weighted DRF)."""
        shares = [m / capacity[p] for p, m in self.usage.get(queue, {}).items() if capacity.get(p)]
        return max(shares, default=0.0) / self.queues.weight(queue)
