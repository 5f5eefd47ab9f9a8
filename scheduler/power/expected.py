"""A job's expected power draw per device, learned from the telemetry of its earlier runs.

Jobs are recognised across submissions by (owner, name): the same training script submitted
again draws about what it drew before. Until a job has been seen for `min_samples` telemetry
samples, its expected draw is the device's default power limit (its TDP) times a configured
factor. Samples taken while a device is held below what it wants (capped, drawing at its cap)
are left out: they measure the cap, not the job. The control plane keeps the profiles in its
store, so what was learned survives its restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

JobKey = tuple[str, str]  # (owner, name)
DEFAULT_FACTOR = 0.9  # training steps average below TDP: 650 of 700 W on the simulated H100
MIN_SAMPLES = 10
EWMA_ALPHA = 0.05  # at 1 sample/s: the last ~20 s weigh most, and a phase does not swing it


@dataclass
class DrawProfile:
    per_device_w: float
    samples: int


@dataclass
class ExpectedDraw:
    factor: float = DEFAULT_FACTOR
    min_samples: int = MIN_SAMPLES
    profiles: dict[JobKey, DrawProfile] = field(default_factory=dict)

    def observe(self, key: JobKey, per_device_w: float) -> None:
        """One sample: the mean draw per device of the job's uncapped devices."""
        if per_device_w < 0:
            raise ValueError(f"a draw is ≥ 0 W (got {per_device_w})")
        profile = self.profiles.get(key)
        if profile is None:
            self.profiles[key] = DrawProfile(per_device_w, 1)
        elif profile.samples < self.min_samples:  # a plain mean until the estimate settles
            n = profile.samples
            profile.per_device_w = (profile.per_device_w * n + per_device_w) / (n + 1)
            profile.samples = n + 1
        else:
            profile.per_device_w += EWMA_ALPHA * (per_device_w - profile.per_device_w)
            profile.samples += 1

    def settled(self, key: JobKey) -> bool:
        profile = self.profiles.get(key)
        return profile is not None and profile.samples >= self.min_samples

    def per_device_w(self, key: JobKey, default_limit_w: float) -> float:
        profile = self.profiles.get(key)
        if profile is not None and profile.samples >= self.min_samples:
            return profile.per_device_w
        return default_limit_w * self.factor

    def source(self, key: JobKey) -> str:
        profile = self.profiles.get(key)
        if profile is not None and profile.samples >= self.min_samples:
            return f"learned from {profile.samples} samples of earlier runs"
        return f"{self.factor:g} × the device's default limit (not enough samples yet)"
