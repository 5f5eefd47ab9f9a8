"""The control plane's fault-tolerance settings (`corral server --hot-spares ...`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.reliability.lemon import LemonPolicy
from scheduler.reliability.recovery import RecoveryPolicy
from scheduler.reliability.spares import SparePolicy


@dataclass(frozen=True)
class FaultToleranceConfig:
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    spares: SparePolicy = field(default_factory=SparePolicy)
    lemons: LemonPolicy = field(default_factory=LemonPolicy)
    # How long a job asked to checkpoint before a move may take before it is moved anyway.
    checkpoint_timeout_s: float = 60.0
    # Restart cost assumed by `auto` intervals (load the checkpoint, rebuild collectives).
    restart_cost_s: float = 60.0

    def problems(self) -> list[str]:
        out = [*self.recovery.problems(), *self.spares.problems()]
        if self.checkpoint_timeout_s <= 0:
            out.append(f"checkpoint timeout {self.checkpoint_timeout_s:g} s: must be > 0")
        return out
