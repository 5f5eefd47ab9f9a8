"""Comparative advantage: rank a model first only for the jobs it speeds up most.

A request's `rates` (model -> relative speed) tier the engine's pools, fastest first. Taken
raw, every job ranks the fastest model first, so a CNN that gains 1.2× on an H100 takes one
that an LLM would run 3× faster on. Gavel (Narayanan et al., OSDI'20) shows that throughput
comes from giving fast devices to the jobs they speed up the most. `RateBaseline` keeps a
running mean, per model, of the rates jobs declare, and `relative` divides a request's rates by
it: a model then ranks first for a job only when the job gains more there than the typical job
does. The engine still tries every tier in turn, so a job whose first choice is full takes the
fast model rather than wait, and nothing idles.

The baseline sees only jobs that have arrived (observe each once, at submission): no oracle
over future jobs. Until it has seen `min_jobs` jobs declaring each of a request's models, that
request keeps its raw rates: a mean over one or two jobs would rank by noise (a lone job divided
by itself gets 1.0 everywhere and its tiers collapse). Relative and raw rates are never mixed in
one request, since they are in different units.

The mean is over jobs, not work: a few long LLM runs would otherwise set the bar so high that
even a transformer gaining 2× would rank the H100 below the A100. Rates are assumed to share a
unit across jobs (e.g. relative to one reference model), as `PlacementRequest.rates` asks.

Pure: no clock, no I/O; `relative` does not change the baseline.
"""

from __future__ import annotations

from dataclasses import replace

from scheduler.catalog import model_key
from scheduler.placement.request import PlacementRequest

MIN_JOBS = 5  # jobs declaring a model before its mean is trusted


class RateBaseline:
    """A running per-model mean of the rates jobs declare."""

    def __init__(self, min_jobs: int = MIN_JOBS) -> None:
        if min_jobs < 1:
            raise ValueError(f"min_jobs must be ≥ 1 (got {min_jobs})")
        self.min_jobs = min_jobs
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._jobs = 0

    def __len__(self) -> int:
        """Jobs observed (those that declared no rates included)."""
        return self._jobs

    def count(self, model: str) -> int:
        """Jobs observed that declared a rate for `model` (any alias)."""
        return self._counts.get(model_key(model), 0)

    def mean(self, model: str) -> float | None:
        """The mean declared rate on `model`, or None until `min_jobs` jobs declared one."""
        key = model_key(model)
        n = self._counts.get(key, 0)
        if n < self.min_jobs:
            return None
        m = self._sums[key] / n
        return m if m > 0 else None

    def observe(self, request: PlacementRequest) -> None:
        """Count one job's declared rates; call once per job, when it is submitted."""
        self._jobs += 1
        seen: set[str] = set()
        for model, rate in request.rates:
            key = model_key(model)
            if key in seen:  # an alias declared twice: the first wins, as in the engine
                continue
            seen.add(key)
            self._sums[key] = self._sums.get(key, 0.0) + rate
            self._counts[key] = self._counts.get(key, 0) + 1

    def relative(self, request: PlacementRequest) -> PlacementRequest:
        """`request` with each declared rate divided by the baseline's mean on that model;
        unchanged when it declares none or the baseline does not yet know one of them."""
        if not request.rates:
            return request
        rates = []
        for model, rate in request.rates:
            m = self.mean(model)
            if m is None:
                return request
            rates.append((model, round(rate / m, 9)))  # float noise must not split a tier
        return replace(request, rates=tuple(rates))
