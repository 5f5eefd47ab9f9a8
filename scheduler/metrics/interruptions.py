"""Interruption and recovery counters, advanced a little at every scrape.

Counters count what happened during this control plane's life (from `started_at`), as
Prometheus expects of a process's counters; history is the report's and the store's job.

- Interruptions: failed attempts, read from the `failures` table by id — each scrape reads only
  the rows written since the last one (at most READ_BATCH, the rest the next time) — plus
  attempts moved off their nodes (drains, preemptions; they are not failures and have no row),
  found in memory. Each is classified once by `interruptions.classify_interruption`.
- Recoveries: when a failed attempt's successor has every worker running (`restart_s` set),
  its phase durations go into one histogram per phase, as `report.recovery_phases`
  defines them; a job that ends instead counts as a recovery that failed.

Attempts are walked with a cursor per job, so a scrape looks at each attempt's end once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Engine, select

from scheduler.metrics.histogram import Histogram
from scheduler.model import AttemptRecord, JobRecord
from scheduler.reliability.interruptions import classify_interruption
from scheduler.reliability.report import PHASES
from scheduler.store.schema import failures

READ_BATCH = 5_000
# Seconds: a fast restart takes a second or two, a gang waiting for devices can take hours.
RECOVERY_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
INTERRUPTION_LABELS = ["cause", "component", "detected_by", "blame"]
RECOVERY_RESULTS = ("restarted", "ended")


def cause_label(category: str) -> str:
    """'Faulty GPU (fell off the bus)' → 'faulty_gpu_fell_off_the_bus': a label value from
    the fixed category set of scheduler/reliability/interruptions.py."""
    return re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_") or "unclassified"


def interruption_labels(cause: str, signals: Iterable[dict[str, Any]], blame: str) -> tuple[str, ...]:
    kind = classify_interruption(cause, list(signals))
    return (cause_label(kind.category), kind.component, kind.detected_by, blame or "unknown")


@dataclass(frozen=True)
class RecoveryPhases:
    detect_s: float
    reschedule_s: float
    restore_s: float
    total_s: float

    def by_phase(self) -> dict[str, float]:
        return dict(
            zip(PHASES, (self.detect_s, self.reschedule_s, self.restore_s, self.total_s), strict=True)
        )


def recovery_phases(failed: AttemptRecord, successor: AttemptRecord) -> RecoveryPhases | None:
    """The phases of one recovery that has finished (the successor runs), else None."""
    if failed.failed_at is None or failed.restart_s <= 0:
        return None
    reschedule = max(0.0, successor.started_at - failed.failed_at)
    restore = max(0.0, failed.failed_at + failed.restart_s - successor.started_at)
    return RecoveryPhases(failed.detect_s, reschedule, restore, failed.detect_s + failed.restart_s)


@dataclass
class _Cursor:
    next_attempt: int = 0  # the first attempt whose end has not been looked at


@dataclass
class InterruptionCounters:
    started_at: float
    interruptions: dict[tuple[str, ...], int] = field(default_factory=dict)
    recoveries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECOVERY_RESULTS, 0))
    phases: dict[str, Histogram] = field(
        default_factory=lambda: {p: Histogram(RECOVERY_BUCKETS_S, max_recent=1) for p in PHASES}
    )
    _last_failure_id: int | None = None
    _cursors: dict[str, _Cursor] = field(default_factory=dict)

    def count(self, labels: tuple[str, ...]) -> None:
        self.interruptions[labels] = self.interruptions.get(labels, 0) + 1

    # --- the failures table ---------------------------------------------------------------

    def read_failures(self, engine: Engine) -> int:
        """Count the failure rows written since the last call; returns how many were read."""
        query = select(failures.c.id, failures.c.cause, failures.c.blame, failures.c.signals)
        if self._last_failure_id is None:
            query = query.where(failures.c.at >= self.started_at)
        else:
            query = query.where(failures.c.id > self._last_failure_id)
        with engine.connect() as conn:
            rows = conn.execute(query.order_by(failures.c.id).limit(READ_BATCH)).all()
        for row in rows:
            self.count(interruption_labels(row.cause, row.signals or [], row.blame))
            self._last_failure_id = row.id
        return len(rows)

    # --- attempts in memory ---------------------------------------------------------------

    def scan_jobs(self, jobs: Iterable[JobRecord]) -> None:
        for job in jobs:
            cursor = self._cursors.get(job.id)
            if cursor is None:
                cursor = self._cursors[job.id] = _Cursor()
            attempts = job.attempts
            while cursor.next_attempt < len(attempts):
                i = cursor.next_attempt
                if not self._settle(job, attempts[i], attempts[i + 1] if i + 1 < len(attempts) else None):
                    break
                cursor.next_attempt += 1

    def _settle(self, job: JobRecord, attempt: AttemptRecord, successor: AttemptRecord | None) -> bool:
        """Count the attempt's end if it is over; False while there is more to come."""
        if not attempt.outcome:
            return False
        if attempt.outcome.startswith("preempted"):
            moved_at = attempt.ended_at or (successor.started_at if successor is not None else None)
            if moved_at is None and not job.state.terminal:
                return False
            if moved_at is not None and moved_at >= self.started_at:
                self.count(interruption_labels(attempt.outcome, (), ""))
            return True
        if attempt.failed_at is None:
            return True  # succeeded or cancelled: not an interruption
        phases = recovery_phases(attempt, successor) if successor is not None else None
        if phases is not None:
            if attempt.failed_at + attempt.restart_s >= self.started_at:
                for phase, seconds in phases.by_phase().items():
                    self.phases[phase].observe(seconds, 0.0)
                self.recoveries["restarted"] += 1
            return True
        if job.state.terminal:
            if attempt.failed_at >= self.started_at:
                self.recoveries["ended"] += 1
            return True
        return False  # recovering: its successor is not running yet

    # --- Prometheus -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        interruptions = CounterMetricFamily(
            "corral_job_interruptions",
            "Job attempts interrupted, by root-cause category, component class, what detected it "
            "and blame (failures and planned moves such as drains and preemptions).",
            labels=INTERRUPTION_LABELS,
        )
        for labels, n in sorted(self.interruptions.items()):
            interruptions.add_metric(list(labels), n)
        yield interruptions
        recoveries = CounterMetricFamily(
            "corral_job_recoveries",
            "Failed attempts whose gang ran again (restarted) or whose job ended instead (ended).",
            labels=["result"],
        )
        for result, n in self.recoveries.items():
            recoveries.add_metric([result], n)
        yield recoveries
        durations = HistogramMetricFamily(
            "corral_job_recovery_duration_seconds",
            "Recovery phases: detect (failure seen → decided), reschedule (decided → placed), "
            "restore (placed → every worker running), total (detect + decided → running).",
            labels=["phase"],
        )
        for phase in PHASES:
            snap = self.phases[phase].snapshot()
            buckets = [("+Inf" if b == float("inf") else repr(b), float(n)) for b, n in snap.buckets]
            durations.add_metric([phase], buckets, snap.sum_s)
        yield durations
