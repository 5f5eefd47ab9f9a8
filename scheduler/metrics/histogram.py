"""Bounded latency histograms: Prometheus buckets for ever, percentiles over a recent window.

Prometheus wants cumulative bucket counts (it computes quantiles itself, across processes);
the dashboard's control-plane view wants "p95 store latency now" without a Prometheus. One
`Histogram` keeps both in fixed memory: a count per bucket, and the last `window_s` seconds
of observations in a ring of at most `max_recent` entries (the oldest fall out first when
a burst overflows it, so the window is then shorter than asked, never larger in memory).

Observations may come from any thread (SQLAlchemy runs statements wherever it is called),
so every method takes the lock; an observation costs a bisect and two appends.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

# 0.5 ms to 32 s by powers of two: a store statement, a unary RPC and a scheduling pass all
# fall inside, and kube-scheduler's histograms start at 1 ms the same way.
LATENCY_BUCKETS_S: tuple[float, ...] = tuple(0.0005 * 2**i for i in range(17))
DEFAULT_WINDOW_S = 300.0
DEFAULT_MAX_RECENT = 20_000


@dataclass(frozen=True)
class HistogramSnapshot:
    """Cumulative counts per upper bound (the last bound is +Inf), their sum and count."""

    buckets: tuple[tuple[float, int], ...]
    sum_s: float
    count: int


@dataclass(frozen=True)
class WindowSummary:
    window_s: float
    count: int
    p50_s: float
    p95_s: float
    max_s: float


class Histogram:
    def __init__(
        self,
        buckets: Sequence[float] = LATENCY_BUCKETS_S,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        max_recent: int = DEFAULT_MAX_RECENT,
    ) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError(f"buckets: must be distinct and ascending (got {list(buckets)})")
        self.bounds = tuple(buckets)
        self.window_s = window_s
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._recent: deque[tuple[float, float]] = deque(maxlen=max_recent)
        self._lock = threading.Lock()

    def observe(self, value_s: float, at: float) -> None:
        """One observation of `value_s` seconds, made at `at` (a monotonic or wall clock,
        the same one `summary` is later asked with)."""
        slot = bisect.bisect_left(self.bounds, value_s)
        with self._lock:
            self._counts[slot] += 1
            self._sum += value_s
            self._recent.append((at, value_s))

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return HistogramSnapshot(tuple(cumulative), total, running)

    def summary(self, now: float) -> WindowSummary:
        """Percentiles of what was observed within the window before `now`."""
        horizon = now - self.window_s
        with self._lock:
            while self._recent and self._recent[0][0] < horizon:
                self._recent.popleft()
            values = sorted(v for _, v in self._recent)
        if not values:
            return WindowSummary(self.window_s, 0, 0.0, 0.0, 0.0)
        return WindowSummary(
            self.window_s, len(values), percentile(values, 0.50), percentile(values, 0.95), values[-1]
        )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..1)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
