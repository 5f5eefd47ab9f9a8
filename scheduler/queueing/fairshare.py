"""The order a pass tries pending jobs in: weighted dominant-resource fairness across
queues, priority then age within a queue.

A queue's share is its largest fraction of any pool (device-equivalents over the pool's
capacity) divided by its weight; the next job comes from the queue with the lowest share.
Shares are read afresh before every pick, so a queue that just placed a job drops back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from scheduler.placement.request import Pool
from scheduler.queueing.quota import Ledger
from scheduler.queueing.types import PendingJob


def within_queue_key(job: PendingJob) -> tuple[int, float, str]:
    return (-job.priority, job.submitted_at, job.job_id)


def fair_order(
    pending: Sequence[PendingJob], ledger: Ledger, capacity: dict[Pool, int]
) -> Iterator[PendingJob]:
    """Yield every pending job once. The caller updates `ledger` between picks; ties between
    queues go to the queue name, so the order is the same for the same inputs.

    Jobs that running work was already preempted for come first, whatever their queue's
    share: the room was made for them, and letting another queue take it would waste the
    preemption (and preempt again)."""
    for job in sorted((j for j in pending if j.made_room), key=within_queue_key):
        yield job
    by_queue: dict[str, list[PendingJob]] = {}
    rest = (j for j in pending if not j.made_room)
    for job in sorted(rest, key=within_queue_key, reverse=True):  # pop() from the end
        by_queue.setdefault(job.queue, []).append(job)
    while by_queue:
        queue = min(by_queue, key=lambda q: (ledger.dominant_share(q, capacity), q))
        jobs = by_queue[queue]
        yield jobs.pop()
        if not jobs:
            del by_queue[queue]
