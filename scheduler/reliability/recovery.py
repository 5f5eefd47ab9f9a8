"""What to do after a gang's attempt failed: restart it (where, after how long) or end it FAILED.

Pure: the live control plane and the ETTR simulator (benchmarks/ettr.py) hand in the job's
failure history and counters and act on the `RecoveryDecision`.

- Blame (blame.py) decides first. A job that failed the same way on `same_failure_limit`
  different healthy hardware sets ends FAILED with blame's reason, whatever restarts are left.
- Failures blamed on the job, or on nobody yet, spend the job's own `max_restarts` (the
  owner's budget for their code's faults). Hardware-blamed failures do not: the platform broke,
  not the job. They spend `hardware_restart_limit` instead, which exists only so that nothing
  loops forever on a fleet that keeps failing.
- Where: hardware-implicated nodes are excluded outright; after a job or unknown failure the
  nodes it ran on are only avoided (placed elsewhere if possible), so that a failure that
  repeats does so on different hardware, which is the evidence blame needs to tell a job's
  bug from a latent hardware fault.
- When: backoff between attempts, computed by tenacity's wait strategies on the count of
  failures since the job last made progress, so a gang that dies at once on restart does not
  hammer the cluster.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import tenacity

from scheduler.reliability.blame import DEFAULT_SAME_FAILURE_LIMIT, AttemptFailure, decide
from scheduler.reliability.signals import Blame


@dataclass(frozen=True)
class RecoveryPolicy:
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_multiplier: float = 2.0
    backoff_jitter_s: float = 0.0
    same_failure_limit: int = DEFAULT_SAME_FAILURE_LIMIT
    hardware_restart_limit: int = 100

    def problems(self) -> list[str]:
        out = []
        if self.backoff_initial_s < 0:
            out.append(f"backoff_initial_s {self.backoff_initial_s:g}: must be ≥ 0")
        if self.backoff_max_s < self.backoff_initial_s:
            out.append(
                f"backoff_max_s {self.backoff_max_s:g}: must be ≥ backoff_initial_s "
                f"({self.backoff_initial_s:g})"
            )
        if self.backoff_multiplier < 1:
            out.append(f"backoff_multiplier {self.backoff_multiplier:g}: must be ≥ 1 (backoff never shrinks)")
        if self.backoff_jitter_s < 0:
            out.append(f"backoff_jitter_s {self.backoff_jitter_s:g}: must be ≥ 0")
        if self.same_failure_limit < 1:
            out.append(f"same_failure_limit {self.same_failure_limit}: must be ≥ 1")
        if self.hardware_restart_limit < 0:
            out.append(f"hardware_restart_limit {self.hardware_restart_limit}: must be ≥ 0")
        return out


DEFAULT_POLICY = RecoveryPolicy()

# RetryCallState needs a Retrying to point at; the wait strategies never look at it.
_RETRYING = tenacity.Retrying()


class _wait_random_from(tenacity.wait_random):
    """tenacity's wait_random, drawing from a caller's generator so a seeded simulation (and a
    test) gets the same jitter every run; tenacity's own draws from the module-level one."""

    def __init__(self, low: float, high: float, rng: random.Random) -> None:
        super().__init__(low, high)
        self._rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return float(
            self.wait_random_min + self._rng.random() * (self.wait_random_max - self.wait_random_min)
        )


def backoff_s(
    consecutive_failures: int, policy: RecoveryPolicy = DEFAULT_POLICY, rng: random.Random | None = None
) -> float:
    """Seconds to wait before the next attempt after `consecutive_failures` failures in a row:
    initial × multiplier^(n−1), capped at max, plus uniform jitter in [0, jitter]; 0 for none."""
    if consecutive_failures <= 0:
        return 0.0
    strategy: tenacity.wait.wait_base = tenacity.wait_exponential(
        multiplier=policy.backoff_initial_s,
        exp_base=policy.backoff_multiplier,
        min=policy.backoff_initial_s,
        max=policy.backoff_max_s,
    )
    if policy.backoff_jitter_s > 0:
        jitter = (
            tenacity.wait_random(0, policy.backoff_jitter_s)
            if rng is None
            else _wait_random_from(0, policy.backoff_jitter_s, rng)
        )
        strategy = strategy + jitter
    state = tenacity.RetryCallState(_RETRYING, None, (), {})
    state.attempt_number = consecutive_failures
    return float(strategy(state))


@dataclass(frozen=True)
class RecoveryDecision:
    restart: bool  # False: the job ends FAILED with `reason`
    blame: Blame
    reason: str  # one line, shown by `corral job`
    counts_as_restart: bool  # spends one of the job's max_restarts
    delay_s: float
    avoid_nodes: frozenset[str]  # soft: place elsewhere if the cluster can
    exclude_nodes: frozenset[str]  # hard: never in the next placement
    failure_class: str


def _duration(seconds: float) -> str:
    return f"{seconds:.3g} s"


def decide_recovery(
    history: Sequence[AttemptFailure],
    *,
    restarts_used: int,
    hardware_restarts_used: int,
    max_restarts: int,
    consecutive_failures: int,
    policy: RecoveryPolicy = DEFAULT_POLICY,
    implicated_nodes: frozenset[str] = frozenset(),
    rng: random.Random | None = None,
) -> RecoveryDecision:
    """The decision on the latest failure in `history` (oldest first). `implicated_nodes`: the
    nodes hardware-blamed signals of this failure point at; `consecutive_failures` counts this
    one; `rng` only feeds the backoff jitter."""
    verdict = decide(history, policy.same_failure_limit)
    latest = history[-1]
    cls = verdict.failure_class

    def failed(reason: str, blame: Blame) -> RecoveryDecision:
        return RecoveryDecision(False, blame, reason, False, 0.0, frozenset(), frozenset(), cls)

    if verdict.give_up:
        return failed(verdict.reason, verdict.blame)
    if verdict.blame is Blame.HARDWARE:
        if hardware_restarts_used >= policy.hardware_restart_limit:
            return failed(
                f"{verdict.reason}; {hardware_restarts_used} restarts after hardware failures "
                f"(hardware_restart_limit {policy.hardware_restart_limit} used)",
                Blame.HARDWARE,
            )
        delay = backoff_s(consecutive_failures, policy, rng)
        # With nothing named, the hardware was merely unhealthy somewhere in the set: moving
        # off all of it is preferable but not worth waiting for.
        avoid = frozenset() if implicated_nodes else latest.hardware
        without = f" without {', '.join(sorted(implicated_nodes))}" if implicated_nodes else ""
        return RecoveryDecision(
            True,
            Blame.HARDWARE,
            f"{verdict.reason}; restarting in {_duration(delay)}{without} (hardware restart "
            f"{hardware_restarts_used + 1}/{policy.hardware_restart_limit}, not counted against "
            "max_restarts)",
            False,
            delay,
            avoid,
            implicated_nodes,
            cls,
        )
    if restarts_used >= max_restarts:
        limit = f" (max_restarts {max_restarts} used)" if max_restarts else ""
        return failed(f"{verdict.reason}{limit}", verdict.blame)
    delay = backoff_s(consecutive_failures, policy, rng)
    return RecoveryDecision(
        True,
        verdict.blame,
        f"{verdict.reason}; restarting ({restarts_used + 1}/{max_restarts}) in {_duration(delay)}",
        True,
        delay,
        latest.hardware | implicated_nodes,
        frozenset(),
        cls,
    )
