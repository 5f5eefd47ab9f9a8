"""Lemon nodes: nodes that keep being implicated in hardware failures, with the evidence.

A node is a lemon when, within `window_s` before `now`, it is implicated in at least
`min_failures` hardware-blamed failures spanning at least `min_distinct_jobs` jobs. Each failed
attempt counts once however many of its signals name the node. Job-blamed and unknown failures
never count: a crashing job must not condemn the nodes it ran on.

Defaults: 3 failures in 7 days across at least 2 jobs. The distinct-jobs guard keeps one job
whose failures are mis-blamed from quarantining a node on its own; a cluster that runs one job
(the ETTR simulator's single 16,384-device gang) sets it to 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scheduler.reliability.signals import Blame

DAY_S = 24 * 3600.0


@dataclass(frozen=True)
class LemonPolicy:
    min_failures: int = 3
    window_s: float = 7 * DAY_S
    min_distinct_jobs: int = 2


DEFAULT_POLICY = LemonPolicy()


@dataclass(frozen=True)
class FailureRecord:
    """One attempt failure and the nodes it is pinned to (usually one: the node whose device
    raised the signal), with the reasons of the signals that blamed them."""

    at: float
    job_id: str
    attempt: int
    nodes: frozenset[str]
    blame: Blame
    signals: tuple[str, ...] = ()


@dataclass(frozen=True)
class LemonVerdict:
    node: str
    evidence: tuple[FailureRecord, ...]

    @property
    def jobs(self) -> tuple[str, ...]:
        return tuple(sorted({f.job_id for f in self.evidence}))

    def describe(self) -> str:
        lines = [
            f"{self.node}: {len(self.evidence)} hardware failures across {len(self.jobs)} jobs"
            f" ({', '.join(self.jobs)})"
        ]
        lines += [
            f"  t={f.at:g} job {f.job_id} attempt {f.attempt}: {'; '.join(f.signals) or 'no signal'}"
            for f in self.evidence
        ]
        return "\n".join(lines)


def find_lemons(
    failures: Iterable[FailureRecord], now: float, policy: LemonPolicy = DEFAULT_POLICY
) -> list[LemonVerdict]:
    """Lemon nodes as of `now`, sorted by name, each with its evidence oldest first."""
    by_node: dict[str, dict[tuple[str, int], FailureRecord]] = {}
    for f in failures:
        if f.blame is not Blame.HARDWARE or not (now - policy.window_s <= f.at <= now):
            continue
        for node in f.nodes:
            # The earliest record of an attempt stands for it.
            seen = by_node.setdefault(node, {})
            key = (f.job_id, f.attempt)
            if key not in seen or f.at < seen[key].at:
                seen[key] = f
    verdicts: list[LemonVerdict] = []
    for node in sorted(by_node):
        evidence = tuple(sorted(by_node[node].values(), key=lambda f: (f.at, f.job_id, f.attempt)))
        jobs = {f.job_id for f in evidence}
        if len(evidence) >= policy.min_failures and len(jobs) >= policy.min_distinct_jobs:
            verdicts.append(LemonVerdict(node, evidence))
    return verdicts
