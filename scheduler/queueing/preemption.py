"""Choosing running jobs to stop so a pending one fits, losing as little work as possible.

Candidates are tried cheapest first — lowest priority, then fewest device-seconds since
their last checkpoint — as a trial on the live cluster state: release their allocations,
ask the engine, then put everything back exactly. Trials are what cost, so: one trial with
every candidate released settles whether preemption can help at all; a binary search finds
the shortest cheapest-first prefix that makes room; victims off the nodes the job would
land on are dropped; a last sweep drops any remaining victim the job fits without (the most
expensive first). That is O(log n + k) engine calls for n candidates and k victims near
the landing place, instead of one per candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scheduler.placement.cluster import ClusterState
from scheduler.placement.engine import PlacementDecision
from scheduler.placement.request import PlacementRequest
from scheduler.queueing.types import RunningJob

Place = Callable[[PlacementRequest], PlacementDecision]


def lost_work(job: RunningJob) -> float:
    return job.seconds_since_checkpoint * max(job.devices, 1)


def victim_order(job: RunningJob) -> tuple[int, float, str]:
    return (job.priority, lost_work(job), job.job_id)


def _trial(
    request: PlacementRequest, victims: Sequence[RunningJob], cluster: ClusterState, place: Place
) -> PlacementDecision | None:
    """Where `request` would go were `victims` stopped; the cluster is left as it was."""
    released = []
    try:
        for v in victims:
            for a in v.allocations:
                cluster.release(a)
                released.append(a)
        decision = place(request)
        if decision.placed:
            for a in reversed(decision.allocations):
                cluster.release(a)
        return decision if decision.placed else None
    finally:
        for a in reversed(released):
            cluster.allocate(
                cluster.nodes[a.node_id], a.device_indices, a.device_milli, a.cpu_milli, a.memory_mib
            )


def choose_victims(
    request: PlacementRequest, candidates: Sequence[RunningJob], cluster: ClusterState, place: Place
) -> tuple[list[RunningJob], PlacementDecision] | None:
    """A small, cheap set of `candidates` whose stopping lets `request` fit, and the
    placement it would then get (already undone); None when even all of them do not."""
    ordered = sorted(candidates, key=victim_order)
    if not ordered:
        return None
    decision = _trial(request, ordered, cluster, place)
    if decision is None:
        return None
    lo, hi = 1, len(ordered)  # the prefix of length hi fits; `decision` is its placement
    while lo < hi:
        mid = (lo + hi) // 2
        found = _trial(request, ordered[:mid], cluster, place)
        if found is not None:
            hi, decision = mid, found
        else:
            lo = mid + 1
    victims = ordered[:hi]
    # Victims with nothing on the nodes the job would use are not needed: those nodes look
    # the same with them running. Dropping them untried keeps the sweep below short when
    # the prefix spans many nodes (a big worker needing one node emptied, say).
    used = {a.node_id for a in decision.allocations}
    near = [v for v in victims if any(a.node_id in used for a in v.allocations)]
    if len(near) < len(victims) and (found := _trial(request, near, cluster, place)) is not None:
        victims, decision = near, found
    for v in reversed(list(victims)):
        rest = [x for x in victims if x is not v]
        if rest and (found := _trial(request, rest, cluster, place)) is not None:
            victims, decision = rest, found
    return victims, decision
