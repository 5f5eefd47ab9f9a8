"""One scheduling pass: which pending jobs start now, which running ones make way, and why
every other job waits.

Jobs are tried once each, in weighted-DRF order across queues (see fairshare). For each:
the pools its queue's quota still allows; the engine, restricted to those pools; if it does
not fit, the cheapest set of running jobs whose stopping would make room (strictly lower
priority, or a cohort peer borrowing quota this queue is entitled to); failing that, the
first such gang in the pass gets a reservation. Nodes a preemptor will land on and reserved
nodes are hidden (marked unschedulable) from the jobs after it until the pass ends, then
restored, so the cluster comes back holding exactly the placements made.

Pure: no clock (the caller passes `now`), no I/O, no randomness; every tie is broken by a
name, so the same inputs give the same result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from scheduler.placement.cluster import ClusterState
from scheduler.placement.engine import PlacementDecision, SpeedOf, place
from scheduler.placement.policies import Policy
from scheduler.placement.request import PlacementRequest, Pool
from scheduler.placement.speedup import RateBaseline
from scheduler.power.admission import PowerGate
from scheduler.queueing.config import QueueSet
from scheduler.queueing.fairshare import fair_order
from scheduler.queueing.preemption import choose_victims, lost_work
from scheduler.queueing.quota import Ledger, Usage, demand_milli, held_milli, pool_capacity
from scheduler.queueing.reservation import choose_reservation, is_gang
from scheduler.queueing.types import PassResult, PendingJob, Preemption, RunningJob


class _Hidden:
    """Nodes kept from the rest of the pass, and how to give them back."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster
        self.ids: list[int] = []

    def hide(self, ids: Iterable[int]) -> None:
        for i in sorted(set(ids)):
            node = self.cluster.nodes[i]
            if node.schedulable:
                self.cluster.update(node, schedulable=False)
                self.ids.append(i)

    def restore(self) -> None:
        for i in reversed(self.ids):
            self.cluster.update(self.cluster.nodes[i], schedulable=True)
        self.ids.clear()


@dataclass
class _Pass:
    running: Sequence[RunningJob]
    cluster: ClusterState
    queues: QueueSet
    policy: Policy
    speed_of: SpeedOf
    now: float
    ledger: Ledger
    start_pools: list[Pool]
    hidden: _Hidden
    baseline: RateBaseline | None = None
    power: PowerGate | None = None
    result: PassResult = field(default_factory=PassResult)
    victims: set[str] = field(default_factory=set)
    # Shapes for which preemption found nothing, keyed by the pass's `epoch`: identical
    # queued jobs then cost one trial, not one each.
    no_victims: set[tuple[object, ...]] = field(default_factory=set)
    epoch: int = 0

    def place_within(
        self, request: PlacementRequest, allowed: list[Pool], accepted: list[Pool]
    ) -> PlacementDecision:
        """`place`, kept to the `allowed` pools (those the queue's quota still permits) and,
        with a power gate, to what the racks and zones can power at the job's expected draw:
        the coolest zone first, then anywhere a budget allows."""
        if allowed != accepted:
            request = replace(request, pools=tuple(allowed))
        if self.power is None:
            return place(request, self.cluster, self.policy, self.speed_of)
        refused = ""
        decision = PlacementDecision(None, "")
        for names in self.power.tiers():
            hidden = _Hidden(self.cluster)
            if names is not None:
                hidden.hide(n.id for n in self.cluster.nodes if n.name not in names)
            try:
                decision = place(request, self.cluster, self.policy, self.speed_of)
            finally:
                hidden.restore()
            if not decision.placed:
                continue
            why = self.power.check(request.job_id, decision)
            if why is None:
                self.power.commit(request.job_id, decision)
                return decision
            refused = refused or why
            for a in decision.allocations:
                self.cluster.release(a)
            decision = PlacementDecision(None, why, largest_block=decision.largest_block)
        if refused:
            self.power.ledger.reasons[request.job_id] = refused
        return decision

    def attempt(self, job: PendingJob) -> None:
        if self.baseline is not None:  # rank models by the job's gain over the typical job's
            job = replace(job, request=self.baseline.relative(job.request))
        request = job.request
        unknown = self.queues.check_queue(job.queue)
        if unknown is not None:
            self.result.waiting[job.job_id] = f"waiting: {unknown}"
            return
        demand = demand_milli(request)
        accepted = [p for p in self.start_pools if request.accepts_pool(p)] if demand else []
        quota_notes: dict[str, None] = {}
        allowed: list[Pool] = []
        for p in accepted:
            note = self.ledger.blocking(job.queue, p, demand)
            if note is None:
                allowed.append(p)
            else:
                quota_notes.setdefault(note)
        needs = f"waiting: needs {request.describe()}"
        unit = "devices" if request.shape.devices else "workers"
        if accepted and not allowed:
            # Say what the cluster could give were it not for the quota: a dry run, undone.
            trial = place(replace(request, pools=tuple(accepted)), self.cluster, self.policy, self.speed_of)
            for a in trial.allocations:
                self.cluster.release(a)
            room = "it would fit now" if trial.placed else f"largest free block {trial.largest_block} {unit}"
            self.result.waiting[job.job_id] = "; ".join([needs, room, *quota_notes])
            return

        decision = self.place_within(request, allowed, accepted)
        if decision.placed:
            self.result.placed.append((job.job_id, decision))
            self.ledger.add(job.queue, decision.pool, demand)
            self.epoch += 1
            return
        held = self.held_nodes(accepted)
        if not accepted and decision.reason.startswith("waiting: no "):
            notes = [decision.reason]  # nothing in the cluster matches at all
        else:
            # Not the engine's words: they describe the request as narrowed for quota.
            notes = [f"{needs}; largest free block {decision.largest_block} {unit}"]
        power_note = self.power.ledger.reasons.get(job.job_id) if self.power is not None else None
        if power_note:
            # It fits the devices; only power keeps it waiting. Preempting or reserving devices
            # would not give it watts, so neither is tried.
            notes = [power_note]
        elif job.victims_stopping:
            notes.append("waiting for the jobs preempted for it to stop")
        elif not self.preempt(job, allowed, accepted, notes) and is_gang(request):
            self.reserve(job, allowed, notes)
        if held:
            notes.append(f"{held} matching node{'s' if held > 1 else ''} held for higher-ranked jobs")
        self.result.waiting[job.job_id] = "; ".join([*notes, *quota_notes])

    def held_nodes(self, accepted: list[Pool]) -> int:
        wanted = set(accepted)
        return sum(1 for i in self.hidden.ids if self.cluster.nodes[i].pools & wanted)

    def candidates(self, job: PendingJob, allowed: list[Pool]) -> dict[str, str]:
        """Running jobs that may make way for `job`, each with the reason it would be told."""
        demand = demand_milli(job.request)
        pools = set(allowed)
        hidden = set(self.hidden.ids)
        out: dict[str, str] = {}

        def eligible(r: RunningJob) -> bool:
            return (
                r.preemptible
                and r.job_id not in self.victims
                and (not demand or r.pool in pools)
                and any(a.node_id not in hidden for a in r.allocations)
            )

        for r in self.running:
            if r.priority < job.priority and eligible(r):
                out[r.job_id] = (
                    f"preempted for {job.job_id} (priority {job.priority} > {r.priority}) after "
                    f"{max(self.now - r.started_at, 0):.0f} s running; about {lost_work(r):.0f} "
                    "device-seconds since the last checkpoint"
                )
        # Kueue's reclaim: a queue within its nominal quota takes back what a cohort peer borrowed.
        for pool in allowed:
            if not self.ledger.within_nominal(job.queue, pool, demand):
                continue
            for peer in self.queues.cohort_peers(job.queue):
                borrowed = self.ledger.borrowed(peer.name, pool)
                mine = sorted(
                    (r for r in self.running if r.queue == peer.name and r.pool == pool and eligible(r)),
                    key=lambda r: (r.priority, lost_work(r), r.job_id),
                )
                for r in mine:
                    if borrowed <= 0:
                        break
                    out.setdefault(
                        r.job_id,
                        f"preempted for {job.job_id}: queue {job.queue} reclaims its nominal quota on "
                        f"{pool[0]} {pool[1]} that queue {peer.name} is borrowing",
                    )
                    borrowed -= held_milli(r)
        return out

    def preempt(self, job: PendingJob, allowed: list[Pool], accepted: list[Pool], notes: list[str]) -> bool:
        """Choose victims for `job` if any would make room; True when some were."""
        request = job.request
        key = (replace(request, job_id=""), job.queue, job.priority, tuple(allowed), self.epoch)
        if key in self.no_victims:
            return False
        reasons = self.candidates(job, allowed)
        by_id = {r.job_id: r for r in self.running if r.job_id in reasons}
        chosen = choose_victims(
            request,
            list(by_id.values()),
            self.cluster,
            lambda r: self.place_within(r, allowed, accepted),
        )
        if chosen is None:
            self.no_victims.add(key)
            return False
        victims, decision = chosen
        for v in victims:
            self.victims.add(v.job_id)
            self.result.preemptions.append(Preemption(v.job_id, job.job_id, reasons[v.job_id]))
        # The preemptor starts once the victims stop; until then keep its landing place and its quota.
        self.hidden.hide(a.node_id for a in decision.allocations)
        self.ledger.add(job.queue, decision.pool, demand_milli(request))
        self.epoch += 1
        names = ", ".join(v.job_id for v in victims)
        notes.append(f"preempting {names} to make room (they checkpoint first)")
        return True

    def reserve(self, job: PendingJob, allowed: list[Pool], notes: list[str]) -> None:
        if self.result.reserved_for is not None:
            return
        found = choose_reservation(job.request, allowed, self.cluster)
        if found is None:
            return
        self.hidden.hide(found.node_ids)
        self.epoch += 1
        self.result.reserved_for = job.job_id
        self.result.reserved_nodes = tuple(self.cluster.nodes[i].name for i in found.node_ids)
        n = len(found.node_ids)
        notes.append(f"reserved {n} node{'s' if n > 1 else ''} for it")


def schedule_pass(
    pending: Sequence[PendingJob],
    running: Sequence[RunningJob],
    cluster: ClusterState,
    queues: QueueSet,
    policy: Policy,
    speed_of: SpeedOf = lambda _: None,
    now: float = 0.0,
    *,
    baseline: RateBaseline | None = None,
    usage: Usage | None = None,
    power: PowerGate | None = None,
) -> PassResult:
    """Decide one pass. `cluster` must already hold the running jobs' allocations; it comes
    back holding the placements in `result.placed` as well, and nothing else changed.
    Preempted jobs keep their allocations: the caller stops them (checkpoint first) and a
    later pass places their preemptors. `now` only goes into the victims' reasons.

    With a `baseline`, each job's declared rates are ranked relative to the typical job's
    (`RateBaseline.relative`: fast models go first to the jobs they speed up most); the pass
    only reads it, and the caller observes each job once, when it is submitted. `usage`, where
    given, is what `running` holds per queue and pool, kept by the caller between passes.
    With a `power` gate, nothing is placed that would push a rack or zone over budget at the
    job's expected draw (scheduler/power/admission.py); the gate's ledger says who waits for
    power."""
    ledger = Ledger(queues, running, usage)
    capacity = pool_capacity(cluster)
    state = _Pass(
        running=running,
        cluster=cluster,
        queues=queues,
        policy=policy,
        speed_of=speed_of,
        now=now,
        ledger=ledger,
        start_pools=cluster.pools,
        hidden=_Hidden(cluster),
        baseline=baseline,
        power=power,
    )
    try:
        for job in fair_order(pending, ledger, capacity):
            state.attempt(job)
    finally:
        state.hidden.restore()
    return state.result
