"""Telemetry lag statistics: how stale a sample is when the control plane handles it."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class LagSummary:
    window_s: float
    messages: int
    p50_s: float
    p99_s: float
    max_s: float


class LagTracker:
    """Keeps (receive time, lag) pairs for a sliding window; percentiles on demand.

    Appending is O(1) on the hot path; the sort happens only when someone asks.
    """

    def __init__(self, window_s: float = 10.0, max_samples: int = 500_000) -> None:
        self.window_s = window_s
        self.total = 0
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def record(self, received_at: float, sampled_at: float) -> None:
        self.total += 1
        self._samples.append((received_at, received_at - sampled_at))

    def summary(self, now: float | None = None) -> LagSummary:
        now = time.time() if now is None else now
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._samples.popleft()
        lags = sorted(lag for _, lag in self._samples)
        if not lags:
            return LagSummary(self.window_s, 0, 0.0, 0.0, 0.0)
        return LagSummary(
            self.window_s,
            len(lags),
            _percentile(lags, 0.50),
            _percentile(lags, 0.99),
            lags[-1],
        )


def _percentile(sorted_values: list[float], q: float) -> float:
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]
