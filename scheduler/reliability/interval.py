"""Checkpoint interval: how often a job should checkpoint, from the failures the cluster sees.

Pure: the live control plane and the ETTR simulator (benchmarks/ettr.py) call the same code.

Cost model (Young 1974; Daly 2006, "A higher order estimate of the optimum checkpoint interval
for restart dumps", FGCS 22): a job checkpoints after every `interval` seconds of work; each
checkpoint blocks it for C seconds; failures arrive as a Poisson process with mean time between
failures M (of the whole gang); after each failure the job is down R seconds (detect, restart,
reload) and loses the work since its last complete checkpoint.

Intervals here are seconds of *work* between the end of one checkpoint and the start of the
next (Daly's τ), so a checkpoint period is `interval + C`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

HOUR_S = 3600.0

# Prior for an unseen (device model, gang size): 1 failure per 50,000 device-hours, worth one
# observed failure. Public fleets sit near this: Llama 3's 16,384 H100s saw one unexpected
# interruption per ~51,000 GPU-hours, Meta's RSC clusters project about one per 30,000. A
# prior worth a single failure is overruled by a large gang's own data within hours, yet keeps
# a new small job from checkpointing as if hardware never failed (no data ⇒ rate 0 ⇒ never).
DEFAULT_PRIOR_FAILURES = 1.0
DEFAULT_PRIOR_DEVICE_HOURS = 50_000.0


def young_interval(checkpoint_cost_s: float, mtbf_s: float) -> float:
    """Young's first-order optimum √(2CM)."""
    _check(checkpoint_cost_s, mtbf_s)
    return math.sqrt(2.0 * checkpoint_cost_s * mtbf_s)


def optimal_interval(checkpoint_cost_s: float, mtbf_s: float, restart_s: float = 0.0) -> float:
    """Seconds of work between checkpoints that maximise expected progress.

    Daly's higher-order estimate √(2CM)·[1 + ⅓√(C/2M) + ⅑(C/2M)] − C where it is valid
    (C < 2M); beyond, Daly's own answer M (Young's √(2CM) would exceed 2M there, where its
    first-order assumption C ≪ M has long failed). For C ≪ M both agree with Young's √(2CM).

    `restart_s` does not move the optimum: with exponential failures the restart cost scales
    the expected run time by a constant e^{R/M} whatever the interval (Daly, eq. 18); it is
    accepted so callers hand over the whole cost model and is checked, nothing more."""
    _check(checkpoint_cost_s, mtbf_s)
    if restart_s < 0:
        raise ValueError(f"restart cost must be ≥ 0 (got {restart_s})")
    c, m = checkpoint_cost_s, mtbf_s
    if c == 0:
        return 0.0
    if c >= 2.0 * m:
        return m
    x = c / (2.0 * m)
    return math.sqrt(2.0 * c * m) * (1.0 + math.sqrt(x) / 3.0 + x / 9.0) - c


def ettr_bound(checkpoint_cost_s: float, mtbf_s: float, restart_s: float) -> float:
    """First-order ETTR at the optimum interval: 1 − √(2C/M) − R/M, clamped at 0.

    An approximation, not a ceiling: the exact periodic optimum (`ettr_optimum`) is slightly
    higher when C is not small against M, since the first-order waste C/τ + τ/2M overstates
    the loss once a failure during a checkpoint is counted properly."""
    _check(checkpoint_cost_s, mtbf_s)
    return max(0.0, 1.0 - math.sqrt(2.0 * checkpoint_cost_s / mtbf_s) - restart_s / mtbf_s)


def ettr_periodic(interval_s: float, checkpoint_cost_s: float, mtbf_s: float, restart_s: float) -> float:
    """Expected ETTR of checkpointing every `interval_s` of work under Daly's exact model
    (exponential failures, which may also strike during checkpoints and restarts):
    τ / (M·e^{R/M}·(e^{(τ+C)/M} − 1))."""
    _check(checkpoint_cost_s, mtbf_s)
    if interval_s <= 0:
        return 0.0
    m = mtbf_s
    return interval_s / (m * math.exp(restart_s / m) * math.expm1((interval_s + checkpoint_cost_s) / m))


def ettr_optimum(checkpoint_cost_s: float, mtbf_s: float, restart_s: float) -> float:
    """ETTR of periodic checkpointing at Daly's optimum interval, exact model."""
    tau = optimal_interval(checkpoint_cost_s, mtbf_s, restart_s)
    return ettr_periodic(tau, checkpoint_cost_s, mtbf_s, restart_s)


def _check(checkpoint_cost_s: float, mtbf_s: float) -> None:
    if checkpoint_cost_s < 0:
        raise ValueError(f"checkpoint cost must be ≥ 0 (got {checkpoint_cost_s})")
    if not mtbf_s > 0:
        raise ValueError(f"mean time between failures must be > 0 (got {mtbf_s})")


@dataclass
class FailureRateEstimator:
    """Failures per device-hour, Gamma–Poisson: the posterior mean
    (prior_failures + failures) / (prior_device_hours + device_hours).

    Failures of a gang are modelled as a Poisson process whose rate is proportional to its
    device count, so exposure is counted in device-hours and one estimator serves every job of
    a (device model, gang-size bucket). The conjugate update is exact, needs no history and
    costs nothing per observation, which the control plane can afford on every checkpoint.

    `warned` counts failures that a warning (a device turning SUSPECT) preceded; the share of
    failures that come *without* warning is estimated with a prior of "none are warned"
    (Beta(0, 1)), so a job counts on warnings only once the cluster has seen them work."""

    prior_failures: float = DEFAULT_PRIOR_FAILURES
    prior_device_hours: float = DEFAULT_PRIOR_DEVICE_HOURS
    failures: int = 0
    warned: int = 0
    device_hours: float = 0.0

    def __post_init__(self) -> None:
        if self.prior_failures <= 0 or self.prior_device_hours <= 0:
            raise ValueError("the prior needs a positive failure count and exposure")

    def observe(self, device_hours: float, failures: int = 0, warned: int = 0) -> None:
        if device_hours < 0 or failures < 0 or not 0 <= warned <= failures:
            raise ValueError(
                f"bad observation: {device_hours} device-hours, {failures} failures, {warned} warned"
            )
        self.device_hours += device_hours
        self.failures += failures
        self.warned += warned

    def rate_per_device_hour(self) -> float:
        return (self.prior_failures + self.failures) / (self.prior_device_hours + self.device_hours)

    def unwarned_share(self) -> float:
        return (self.failures - self.warned + 1) / (self.failures + 1)

    def job_mtbf_s(self, devices: int, unwarned_only: bool = False) -> float:
        """Mean time between failures of a gang of `devices`, in seconds; with `unwarned_only`,
        between the failures no warning announces (those periodic checkpoints must cover)."""
        if devices < 1:
            raise ValueError(f"a gang has at least one device (got {devices})")
        rate = self.rate_per_device_hour() * devices
        if unwarned_only:
            rate *= self.unwarned_share()
        return HOUR_S / rate


def gang_bucket(devices: int) -> int:
    """Gang sizes pooled together: the next power of two. Per-device rates differ with gang
    size (a large gang also fails on network and collective software a small one never uses),
    but neighbouring sizes behave alike and pooling them gathers data faster."""
    if devices < 1:
        raise ValueError(f"a gang has at least one device (got {devices})")
    return 1 << (devices - 1).bit_length()


@dataclass
class FailureRates:
    """The cluster's estimators, one per (device model, gang-size bucket), created on first use
    from the same prior."""

    prior_failures: float = DEFAULT_PRIOR_FAILURES
    prior_device_hours: float = DEFAULT_PRIOR_DEVICE_HOURS
    estimators: dict[tuple[str, int], FailureRateEstimator] = field(default_factory=dict)

    def estimator(self, device_model: str, devices: int) -> FailureRateEstimator:
        key = (device_model, gang_bucket(devices))
        est = self.estimators.get(key)
        if est is None:
            est = self.estimators[key] = FailureRateEstimator(self.prior_failures, self.prior_device_hours)
        return est

    def observe(
        self, device_model: str, devices: int, hours: float, failures: int = 0, warned: int = 0
    ) -> None:
        """A gang of `devices` ran `hours` (wall time holding its devices) and failed `failures`
        times."""
        self.estimator(device_model, devices).observe(devices * hours, failures, warned)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * HOUR_S:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / HOUR_S:.1f} h"


@dataclass
class IntervalPolicy:
    """The checkpoint interval in force for one job: `fixed` seconds, or `auto`.

    `auto` is Daly's optimum from the estimator's rate for this gang and the job's measured
    blocking checkpoint cost (the mean of its last `window` reported durations: storage
    contention and state size drift, so old measurements should age out), held within
    [min_s, max_s]. The floor spares shared storage from checkpoint storms when C is tiny; the
    ceiling keeps a restorable state at least every few hours whatever the estimate says.

    With `proactive`, the job checkpoints when one of its devices turns SUSPECT, so periodic
    checkpoints only need to cover the failures that come without warning (the estimator's
    unwarned share); while a device is SUSPECT its hazard 1/warning_lead_s is added, which
    tightens the interval until the device fails or the warning lapses (2 × lead)."""

    mode: Literal["fixed", "auto"] = "auto"
    fixed_s: float = 1800.0
    estimator: FailureRateEstimator | None = None
    devices: int = 1
    device_model: str = "device"
    restart_s: float = 60.0
    min_s: float = 30.0
    max_s: float = 4 * HOUR_S
    assumed_checkpoint_s: float = 30.0
    window: int = 32
    proactive: bool = False
    warning_lead_s: float = 600.0
    _costs: deque[float] = field(default_factory=deque, repr=False)
    _cost_sum: float = field(default=0.0, repr=False)
    _suspects: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("fixed", "auto"):
            raise ValueError(f"interval mode must be fixed or auto (got {self.mode!r})")
        if self.mode == "fixed" and not self.fixed_s > 0:
            raise ValueError(f"a fixed interval must be > 0 s (got {self.fixed_s})")
        if self.mode == "auto" and self.estimator is None:
            raise ValueError("an auto interval needs a failure-rate estimator")
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"need 0 < min_s ≤ max_s (got {self.min_s}, {self.max_s})")
        if self.window < 1 or self.warning_lead_s <= 0 or self.devices < 1:
            raise ValueError("window, warning lead and devices must be positive")

    @classmethod
    def fixed(cls, seconds: float) -> IntervalPolicy:
        return cls(mode="fixed", fixed_s=seconds)

    @classmethod
    def auto(
        cls, estimator: FailureRateEstimator, devices: int, device_model: str, **kw: Any
    ) -> IntervalPolicy:
        return cls(mode="auto", estimator=estimator, devices=devices, device_model=device_model, **kw)

    def report_checkpoint(self, duration_s: float) -> None:
        """A complete checkpoint took `duration_s` of blocking time."""
        if duration_s < 0:
            raise ValueError(f"checkpoint duration must be ≥ 0 (got {duration_s})")
        self._costs.append(duration_s)
        self._cost_sum += duration_s
        if len(self._costs) > self.window:
            self._cost_sum -= self._costs.popleft()

    def checkpoint_cost_s(self) -> float:
        return self._cost_sum / len(self._costs) if self._costs else self.assumed_checkpoint_s

    def warn(self, device: str, now: float) -> None:
        """A device of this gang turned SUSPECT at `now`."""
        self._suspects[device] = now + 2.0 * self.warning_lead_s

    def resolve(self, device: str) -> None:
        """The SUSPECT device failed, was replaced, or passed a health check."""
        self._suspects.pop(device, None)

    def suspects(self, now: float) -> int:
        for device in [d for d, until in self._suspects.items() if until <= now]:
            del self._suspects[device]
        return len(self._suspects)

    def mtbf_s(self, now: float = 0.0) -> float:
        """The gang's mean time between failures the interval is set against."""
        assert self.estimator is not None
        base = self.estimator.job_mtbf_s(self.devices, unwarned_only=self.proactive)
        if self.proactive and (n := self.suspects(now)):
            return 1.0 / (1.0 / base + n / self.warning_lead_s)
        return base

    def interval_s(self, now: float = 0.0) -> float:
        """Seconds of work before the next checkpoint, for a checkpoint cycle starting at `now`."""
        if self.mode == "fixed":
            return self.fixed_s
        tau = optimal_interval(self.checkpoint_cost_s(), self.mtbf_s(now), self.restart_s)
        return min(self.max_s, max(self.min_s, tau))

    def why(self, now: float = 0.0) -> str:
        """What `corral job ID` shows: the interval in force and what it came from."""
        if self.mode == "fixed":
            return f"fixed: every {_duration(self.fixed_s)} (set by the job)"
        assert self.estimator is not None
        est = self.estimator
        interval = self.interval_s(now)
        cost = self.checkpoint_cost_s()
        mtbf = est.job_mtbf_s(self.devices)
        if est.failures:
            source = f"1 failure per {_duration(mtbf)} observed"
        else:
            source = f"1 failure per {_duration(mtbf)} assumed (prior; none observed yet)"
        measured = (
            f"{cost:.3g} s per checkpoint"
            if self._costs
            else f"an assumed {cost:.3g} s per checkpoint (none measured yet)"
        )
        text = (
            f"auto: every {_duration(interval)} — Young/Daly from {source} for "
            f"{self.devices:,} × {self.device_model} and {measured}"
        )
        if self.proactive and est.warned:
            warned = 1 - est.unwarned_share()
            text += f"; {warned:.0%} of failures warned ahead, covered by on-warning checkpoints"
        if self.proactive and (n := self.suspects(now)):
            text += f"; tightened while {n} device{'s' if n > 1 else ''} SUSPECT"
        raw = optimal_interval(cost, self.mtbf_s(now), self.restart_s)
        if raw < self.min_s:
            text += f" (held at the {_duration(self.min_s)} minimum)"
        elif raw > self.max_s:
            text += f" (held at the {_duration(self.max_s)} maximum)"
        return text
