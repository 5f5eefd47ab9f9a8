"""Queues, quotas, fair share, reservation, backfill and preemption: one scheduling pass as a
pure function of pending jobs, running jobs, the cluster and the queue config."""

from scheduler.queueing.admission import schedule_pass
from scheduler.queueing.config import DEFAULT_QUEUE, QueueConfigError, QueueSet, QueueSpec, QuotaSpec
from scheduler.queueing.types import PassResult, PendingJob, Preemption, RunningJob
from scheduler.queueing.usage import PoolUsage, QueueUsage, queue_usage

__all__ = [
    "DEFAULT_QUEUE",
    "PassResult",
    "PendingJob",
    "PoolUsage",
    "Preemption",
    "QueueConfigError",
    "QueueSet",
    "QueueSpec",
    "QueueUsage",
    "QuotaSpec",
    "RunningJob",
    "queue_usage",
    "schedule_pass",
]
