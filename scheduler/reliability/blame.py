"""Whose fault an attempt failure was, and when to stop retrying a job that keeps failing.

One failure is attributed from its signals, most damning first: any hardware-blamed signal
makes it the hardware's; otherwise any job-blamed signal makes it the job's; otherwise, if the
hardware it ran on was not healthy, the hardware's; otherwise unknown.

Repetition settles what one failure cannot. A job that fails the same way (the same
`failure_class`: exit status, POSIX signal, XID group) on `same_failure_limit` different
*healthy* hardware sets is the job's, whatever the single signals said, and ends FAILED instead
of looping: three disjoint sets of machines cannot all share one fault. Failures on unhealthy
hardware never count towards this, so a job is not failed for a node's sins. Health is left
alone by blame: job-blamed signals never touch it (health_state.py), so the hardware of a
job-blamed failure stays HEALTHY.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scheduler.reliability.signals import Blame, Severity, Signal

DEFAULT_SAME_FAILURE_LIMIT = 3
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True)
class AttemptFailure:
    """One failed attempt: what was seen; the hardware it is pinned to (stable names, node or
    device ids: the failing rank's, or the whole gang's when nothing narrows it); and whether
    all of that hardware was HEALTHY when it failed."""

    attempt: int
    signals: tuple[Signal, ...]
    hardware: frozenset[str]
    hardware_healthy: bool
    at: float = 0.0


@dataclass(frozen=True)
class BlameVerdict:
    blame: Blame
    give_up: bool
    reason: str
    failure_class: str = ""


def attribute(failure: AttemptFailure) -> tuple[Blame, Signal | None]:
    """The blame for one failure and the signal that decided it."""
    for wanted in (Blame.HARDWARE, Blame.JOB):
        decisive = _worst(s for s in failure.signals if s.blame is wanted)
        if decisive is not None:
            return wanted, decisive
    first = _worst(iter(failure.signals))
    return (Blame.UNKNOWN if failure.hardware_healthy else Blame.HARDWARE), first


def failure_class(failure: AttemptFailure) -> str:
    _, decisive = attribute(failure)
    return decisive.failure_class if decisive is not None and decisive.failure_class else "unknown"


def decide(
    history: Sequence[AttemptFailure], same_failure_limit: int = DEFAULT_SAME_FAILURE_LIMIT
) -> BlameVerdict:
    """The verdict on the latest failure in `history` (oldest first), given all before it."""
    if not history:
        raise ValueError("decide needs at least one failure")
    latest = history[-1]
    blame, decisive = attribute(latest)
    cls = failure_class(latest)
    what = decisive.reason if decisive is not None else "no signal"
    if blame is Blame.HARDWARE:
        where = "" if latest.hardware_healthy or decisive is not None else " (its hardware was not healthy)"
        return BlameVerdict(Blame.HARDWARE, False, f"hardware: {what}{where}", cls)

    sets = _healthy_sets_failing_as(history, cls)
    if len(sets) >= same_failure_limit:
        places = "; ".join(",".join(sorted(s)) for s in sets)
        reason = (
            f"{what}: failed the same way ({cls}) on {len(sets)} different healthy hardware sets"
            f" [{places}]; the job, not the hardware"
        )
        return BlameVerdict(Blame.JOB, True, reason, cls)
    seen = f" ({len(sets)}/{same_failure_limit} healthy hardware sets so far)"
    return BlameVerdict(blame, False, f"{blame.value}: {what}{seen}", cls)


def _healthy_sets_failing_as(history: Sequence[AttemptFailure], cls: str) -> list[frozenset[str]]:
    sets: list[frozenset[str]] = []
    for f in history:
        if not f.hardware_healthy or failure_class(f) != cls:
            continue
        # Only sets sharing nothing with those already counted: a latent fault on one shared
        # node must not pass for the job's fault three times over.
        if attribute(f)[0] is Blame.HARDWARE or any(not f.hardware.isdisjoint(s) for s in sets):
            continue
        sets.append(f.hardware)
    return sets


def _worst(signals: Iterable[Signal]) -> Signal | None:
    best: Signal | None = None
    for s in signals:
        if best is None or _SEVERITY_RANK[s.severity] > _SEVERITY_RANK[best.severity]:
            best = s
    return best
