"""A discrete-event simulator: the placement engine and the queueing pass under a virtual clock.

Events (arrival, completion, and failure for the fault-tolerance work) sit in a heap ordered by
time; all events of one instant are applied, then one scheduling pass runs. A placed job runs
for `work / (devices × speed)` where speed is the job's own rate on the chosen model relative to
the reference model (A100 80GB), else the catalog's dense-TFLOPS ratio, else 1.

The pass is incremental, because a naive one (retry every pending job on every event) is
quadratic: jobs with identical requests are grouped, and a group that failed is *blocked*
until a release could have made room for it. Only the nodes that got capacity back can: before
the release nothing fitted. So a blocked single-worker group is retried only when one of
those nodes could host its worker, and a gang bound to a node, rack or block only when such a
node's domain now has enough free worker slots (both memoised per node state). A gang free to
spread over any nodes is retried after any release in a pool it accepts. Within a pass the
first failure of a group stops the group: its later jobs ask the same of a fuller cluster.

`run_pass` is the one place the pass is chosen: the queueing package's `schedule_pass` (the
code the live control plane runs: fair order, quota, preemption, reservations), or, where a
run asks for `greedy_pass`, a priority-then-FIFO pass over `engine.place` that skips what
does not fit (backfilling behind a blocked job) — a faster stand-in for very large runs.

Declared rates are ranked by comparative advantage (`scheduler.placement.speedup`): the
simulator keeps a `RateBaseline`, observes each job once at its arrival, and both passes place
each job with its rates relative to the typical job's. `relative_rates=False` ranks raw rates
(every job tries its fastest model first).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from scheduler.placement.cluster import ANY_POOL, ClusterState, NodeState
from scheduler.placement.engine import PlacementDecision, SpeedOf, place
from scheduler.placement.fit import device_options, worker_slots
from scheduler.placement.policies import DEFAULT_POLICY, Policy, make_policy
from scheduler.placement.request import WHOLE, PlacementRequest, Pool, TopologyLevel
from scheduler.placement.speedup import RateBaseline
from scheduler.placement.taskmix import TaskMix
from scheduler.queueing.admission import schedule_pass
from scheduler.queueing.config import QueueSet
from scheduler.queueing.quota import held_milli
from scheduler.queueing.types import PendingJob, RunningJob

REFERENCE: Pool = ("nvidia", "A100 80GB")
_DOMAINS = (TopologyLevel.NODE, TopologyLevel.RACK, TopologyLevel.BLOCK)


class EventKind(IntEnum):
    """Order of events at one instant: capacity comes back before anything asks for it."""

    COMPLETION = 0
    FAILURE = 1  # the fault-tolerance work handles these through `Simulator.on_failure`
    ARRIVAL = 2


@dataclass(frozen=True)
class SimJob:
    job_id: str
    submit_time: float
    request: PlacementRequest
    # Device-seconds at reference speed: a job of 8 devices and work 80 runs 10 s on A100s.
    # A fractional job counts its fraction (0.5 of a device, work 50: 100 s); a CPU-only job
    # counts as one device at speed 1. `SimJob.of_duration` converts from a trace's duration.
    work: float
    queue: str = "default"
    priority: int = 0
    # model -> throughput relative to the reference model; beats request.rates and the catalog
    speed: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.work < 0:
            raise ValueError(f"job {self.job_id}: work must be ≥ 0 (got {self.work})")
        rates = [*(self.speed or {}).values(), *(r for _, r in self.request.rates)]
        if any(r <= 0 for r in rates):
            raise ValueError(f"job {self.job_id}: speeds must be > 0 (got {rates})")

    @property
    def units(self) -> float:
        s = self.request.shape
        if s.devices == 0:
            return 1.0
        return self.request.workers * s.devices * s.device_milli / WHOLE

    @classmethod
    def of_duration(cls, job_id: str, submit_time: float, request: PlacementRequest, duration: float,
                    **kw: Any) -> SimJob:  # fmt: skip
        """A job that runs `duration` seconds on the reference model."""
        probe = cls(job_id, submit_time, request, 0.0)
        return cls(job_id, submit_time, request, duration * probe.units, **kw)


@dataclass
class JobRecord:
    job: SimJob
    start: float = -1.0
    end: float = -1.0
    pool: Pool = ANY_POOL
    speed: float = 1.0
    placements: int = 0  # >1 once preemption or failure restarted it
    current: SimJob | None = None  # what runs now: `job` with the work still left

    @property
    def jct(self) -> float:
        return self.end - self.job.submit_time

    @property
    def queueing_delay(self) -> float:
        return self.start - self.job.submit_time


@dataclass
class SimResult:
    jobs: list[JobRecord]  # finished jobs, in completion order
    unplaced: list[tuple[str, str]]  # (job id, last reason) for jobs still waiting at the end
    makespan: float  # first submission to last completion
    mean_allocation: float  # time-weighted share of device capacity allocated, over the makespan
    pool_allocation: dict[str, float]  # the same per pool ("vendor model")
    timeline: list[tuple[float, float]]  # (time, allocated share), at every change
    placements: int
    passes: int
    place_calls: int
    wall_s: float

    @property
    def placements_per_s(self) -> float:
        return self.placements / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self, timeline_points: int = 50) -> dict[str, Any]:
        jcts = sorted(r.jct for r in self.jobs)
        delays = sorted(r.queueing_delay for r in self.jobs)
        return {
            "jobs_finished": len(self.jobs),
            "jobs_unplaced": len(self.unplaced),
            "jct_mean_s": sum(jcts) / len(jcts) if jcts else 0.0,
            "jct_p50_s": percentile(jcts, 50),
            "jct_p95_s": percentile(jcts, 95),
            "jct_p99_s": percentile(jcts, 99),
            "queueing_delay_mean_s": sum(delays) / len(delays) if delays else 0.0,
            "queueing_delay_p95_s": percentile(delays, 95),
            "makespan_s": self.makespan,
            "mean_allocation": self.mean_allocation,
            "pool_allocation": self.pool_allocation,
            "allocation_timeline": downsample(self.timeline, timeline_points),
            "placements": self.placements,
            "passes": self.passes,
            "place_calls": self.place_calls,
            "wall_s": self.wall_s,
            "placements_per_wall_s": self.placements_per_s,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def downsample(points: Sequence[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    if len(points) <= n:
        return list(points)
    step = (len(points) - 1) / (n - 1)
    return [points[round(i * step)] for i in range(n)]


def catalog_speed_of() -> SpeedOf:
    """The engine's tiering input: the catalog's dense TFLOPS per pool (None where unknown)."""
    from scheduler.catalog import DeviceCatalog

    catalog = DeviceCatalog.load()
    cache: dict[Pool, float | None] = {}

    def speed_of(pool: Pool) -> float | None:
        if pool not in cache:
            m = catalog.get(*pool)
            cache[pool] = m.dense_tflops if m is not None else None
        return cache[pool]

    return speed_of


def catalog_relative_speed(reference: Pool = REFERENCE) -> Callable[[Pool], float | None]:
    from scheduler.catalog import DeviceCatalog

    catalog = DeviceCatalog.load()
    cache: dict[Pool, float | None] = {}

    def relative(pool: Pool) -> float | None:
        if pool not in cache:
            cache[pool] = catalog.relative_speed(pool[0], pool[1], reference)
        return cache[pool]

    return relative


def mix_of(jobs: Iterable[SimJob]) -> TaskMix:
    """The request mix of a trace, for the fragmentation-aware policy."""
    return TaskMix.from_requests((j.request.shape, j.request.models) for j in jobs)


# ----------------------------------------------------------------------------- pending groups


@dataclass(eq=False)
class _Group:
    """Pending jobs whose requests are identical but for the job id."""

    request: PlacementRequest  # the first job's; same shape for all
    neg_priority: int  # higher priority first; then submission order
    jobs: deque[tuple[float, int, SimJob]] = field(default_factory=deque)  # (submit, seq, job)
    pools: frozenset[Pool] = frozenset()
    # Whether "cannot fit" can be undone only through the nodes that got capacity back (true
    # for all but gangs allowed to spread over any nodes, whose capacity adds up cluster-wide).
    gated: bool = False
    domain: bool = False  # a gang that must fit in one node, rack or block
    trigger: list[NodeState] | None = None  # the released nodes that unblocked it
    fits_memo: dict[Any, bool] = field(default_factory=dict)
    blocked: bool = False
    blocked_at: int = 0  # release counter when it was blocked (gangs)
    reason: str = ""
    key: tuple[Any, ...] = ()

    def head_key(self) -> tuple[int, float, int]:
        submit, seq, _ = self.jobs[0]
        return (self.neg_priority, submit, seq)


def _group_key(job: SimJob) -> tuple[Any, ...]:
    return (dataclasses.replace(job.request, job_id=""), job.priority, job.queue)


PassFn = Callable[["Simulator"], None]


class Simulator:
    """One run: `Simulator(cluster, jobs, policy).run()`. The cluster is changed in place."""

    def __init__(
        self,
        cluster: ClusterState,
        jobs: Iterable[SimJob],
        policy: Policy | None = None,
        speed_of: SpeedOf | None = None,
        *,
        true_speed: Callable[[Pool], float | None] | None = None,
        pass_fn: PassFn | None = None,
        on_failure: Callable[[Simulator, Any], None] | None = None,
        queues: QueueSet | None = None,
        relative_rates: bool = True,
    ) -> None:
        """`speed_of` is what the scheduler believes (it orders the engine's pool tiers);
        `true_speed` is how fast a pool really runs a job with no rate of its own, relative to
        the reference. Both default to the catalog; they differ when a run compares a
        model-blind scheduler against the same physics. `relative_rates`: rank declared rates
        against the running baseline of the jobs arrived so far (else raw rates)."""
        self.cluster = cluster
        self.jobs = sorted(jobs, key=lambda j: j.submit_time)
        self.policy = policy or make_policy(DEFAULT_POLICY, mix_of(self.jobs))
        self.speed_of: SpeedOf = speed_of or catalog_speed_of()
        self.true_speed = true_speed or catalog_relative_speed()
        self.pass_fn = pass_fn or run_pass
        self.on_failure = on_failure
        self.queues = queues or QueueSet.default()
        self.baseline: RateBaseline | None = RateBaseline() if relative_rates else None
        self.running_view: dict[str, RunningJob] = {}  # what `schedule_pass` is told runs
        self.queue_usage: dict[str, dict[Pool, int]] = {}  # the same, summed per queue and pool
        self.preemptions = 0
        self.now = 0.0
        self._events: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self.records: dict[str, JobRecord] = {}
        self.running: dict[str, JobRecord] = {}
        self._allocations: dict[str, PlacementDecision] = {}
        self.finished: list[JobRecord] = []
        self.groups: dict[tuple[Any, ...], _Group] = {}
        self._releases = 0
        self._pool_released: dict[Pool, int] = {}
        self._dirty_nodes: set[int] = set()
        # device capacity, for allocation shares
        self.capacity_milli = sum(WHOLE for n in cluster.nodes for _ in n.devices) or 1
        self.pool_capacity: dict[Pool, int] = {}
        for n in cluster.nodes:
            for d in n.devices:
                self.pool_capacity[d.pool] = self.pool_capacity.get(d.pool, 0) + WHOLE
        self.allocated_milli = 0
        self.pool_allocated: dict[Pool, int] = dict.fromkeys(self.pool_capacity, 0)
        self._area = 0.0
        self._pool_area: dict[Pool, float] = dict.fromkeys(self.pool_capacity, 0.0)
        self._last_t: float | None = None
        self.timeline: list[tuple[float, float]] = []
        self.placements = 0
        self.passes = 0
        self.place_calls = 0
        for job in self.jobs:
            self.schedule(job.submit_time, EventKind.ARRIVAL, job)

    # ------------------------------------------------------------------ events

    def schedule(self, at: float, kind: EventKind, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, int(kind), self._seq, payload))

    def run(self, until: float | None = None) -> SimResult:
        t0 = time.perf_counter()
        events = self._events
        while events:
            at = events[0][0]
            if until is not None and at > until:
                break
            self._advance(at)
            while events and events[0][0] == at:
                _, kind, _, payload = heapq.heappop(events)
                if kind == EventKind.COMPLETION:
                    self._complete(payload)
                elif kind == EventKind.ARRIVAL:
                    self._arrive(payload)
                else:
                    if self.on_failure is None:
                        raise NotImplementedError("failure events need an on_failure handler")
                    self.on_failure(self, payload)
            self.passes += 1
            self.pass_fn(self)
        return self._result(time.perf_counter() - t0)

    def _advance(self, at: float) -> None:
        if self._last_t is not None and at > self._last_t:
            dt = at - self._last_t
            self._area += self.allocated_milli * dt
            for p, m in self.pool_allocated.items():
                if m:
                    self._pool_area[p] += m * dt
        self._last_t = at
        self.now = at

    def _arrive(self, job: SimJob) -> None:
        if job.job_id in self.records:
            raise ValueError(f"job id {job.job_id!r} appears twice")
        self.records[job.job_id] = JobRecord(job)
        if self.baseline is not None:
            self.baseline.observe(job.request)
        self.enqueue(job)

    def enqueue(self, job: SimJob) -> None:
        """Add `job` to the pending set (on arrival, or again after a failure stopped it)."""
        key = _group_key(job)
        g = self.groups.get(key)
        if g is None:
            req = job.request
            if req.shape.devices == 0:
                pools = frozenset({ANY_POOL})
            else:
                pools = frozenset(p for p in self.cluster.pools if req.accepts_pool(p))
            single = req.workers == 1 and req.topology.level in (TopologyLevel.NONE, TopologyLevel.ISLAND)
            domain = not single and req.topology.required and req.topology.level in _DOMAINS
            g = self.groups[key] = _Group(
                req, -job.priority, pools=pools, gated=single or domain, domain=domain, key=key
            )
        self._seq += 1
        g.jobs.append((job.submit_time, self._seq, job))

    def _complete(self, key: tuple[str, int]) -> None:
        job_id, placement = key
        rec = self.running.get(job_id)
        if rec is None or rec.placements != placement:
            return  # it was stopped (preempted, failed) before this completion came due
        del self.running[job_id]
        self.finished.append(rec)
        self.stop(job_id)

    def stop(self, job_id: str) -> None:
        """Give back what `job_id` holds (completion, failure or preemption)."""
        decision = self._allocations.pop(job_id)
        if (view := self.running_view.pop(job_id, None)) is not None:
            self._count_usage(view, -1)
        for a in decision.allocations:
            self.cluster.release(a)
            self._dirty_nodes.add(a.node_id)
        self._releases += 1
        self._pool_released[decision.pool] = self._releases
        self._pool_released[ANY_POOL] = self._releases
        milli = sum(len(a.device_indices) * a.device_milli for a in decision.allocations)
        self.allocated_milli -= milli
        if decision.pool in self.pool_allocated:
            self.pool_allocated[decision.pool] -= milli
        self.timeline.append((self.now, self.allocated_milli / self.capacity_milli))

    def _count_usage(self, view: RunningJob, sign: int) -> None:
        if view.pool == ANY_POOL:
            return
        per_pool = self.queue_usage.setdefault(view.queue, {})
        per_pool[view.pool] = per_pool.get(view.pool, 0) + sign * held_milli(view)

    def start(self, job: SimJob, decision: PlacementDecision) -> None:
        """Record a placement the pass made (the cluster already holds it) and time its end."""
        rec = self.records[job.job_id]
        speed = self.job_speed(job, decision.pool)
        rec.start, rec.pool, rec.speed = self.now, decision.pool, speed
        rec.placements += 1
        self.running[job.job_id] = rec
        self._allocations[job.job_id] = decision
        milli = sum(len(a.device_indices) * a.device_milli for a in decision.allocations)
        self.running_view[job.job_id] = RunningJob(
            job.job_id, job.queue, job.priority, self.now, decision.pool, decision.allocations,
            round(milli / WHOLE),
        )  # fmt: skip
        self._count_usage(self.running_view[job.job_id], +1)
        self.allocated_milli += milli
        if decision.pool in self.pool_allocated:
            self.pool_allocated[decision.pool] += milli
        self.timeline.append((self.now, self.allocated_milli / self.capacity_milli))
        self.placements += 1
        rec.current = job
        rec.end = self.now + job.work / (job.units * speed)
        self.schedule(rec.end, EventKind.COMPLETION, (job.job_id, rec.placements))

    def preempt(self, job_id: str, reason: str = "") -> None:
        """Stop a running job and queue it again with the work it has done kept: the
        victim checkpoints before it stops."""
        rec = self.running.pop(job_id)
        job = rec.current
        assert job is not None
        done = (self.now - rec.start) * job.units * rec.speed
        self.stop(job_id)
        self.preemptions += 1
        rec.end = -1.0
        self.enqueue(dataclasses.replace(job, work=max(job.work - done, 0.0)))

    def job_speed(self, job: SimJob, pool: Pool) -> float:
        if job.request.shape.devices == 0:
            return 1.0
        model = pool[1].lower()
        if job.speed:
            for m, rate in job.speed.items():
                if m.lower() == model:
                    return rate
        for m, rate in job.request.rates:
            if m.lower() == model:
                return rate
        return self.true_speed(pool) or 1.0

    # ------------------------------------------------------------------ incremental pending set

    def _fits_node(self, g: _Group, node: NodeState) -> bool:
        """Could `node` host one worker of `g` now (islands included)? Memoised per node state."""
        memo = g.fits_memo
        hit = memo.get(node.signature) if node.schedulable else False
        if hit is None:
            if len(memo) > 10_000:
                memo.clear()
            req = g.request
            pools = (ANY_POOL,) if req.shape.devices == 0 else [p for p in node.pools if p in g.pools]
            hit = memo[node.signature] = any(
                device_options(node, p, req.shape, req.min_memory_bytes) for p in pools
            )
        return hit

    def _domain_fits(self, g: _Group, node: NodeState) -> bool:
        """Could the domain `node` is in hold the whole gang, counting free worker slots?"""
        req = g.request
        level = req.topology.level
        nodes = self.cluster.nodes
        if level is TopologyLevel.RACK:
            ids = self.cluster.racks[node.rack]
        elif level is TopologyLevel.BLOCK:
            ids = self.cluster.blocks[node.block]
        else:
            ids = [node.id]
        pools = (ANY_POOL,) if req.shape.devices == 0 else [p for p in node.pools if p in g.pools]
        for p in pools:
            slots = 0
            for i in ids:
                n = nodes[i]
                if n.schedulable:
                    slots += worker_slots(n, p, req.shape, req.min_memory_bytes)
                    if slots >= req.workers:
                        return True
        return False

    def may_fit(self, g: _Group, candidates: Iterable[NodeState]) -> list[NodeState]:
        """The nodes among `candidates` (those that got capacity back since `g` failed) that
        could make `g` fit now; empty means trying `g` is certain to fail."""
        out = [n for n in candidates if self._fits_node(g, n)]
        if out and g.domain:
            out = [n for n in out if self._domain_fits(g, n)]
        return out

    def retriable(self) -> list[_Group]:
        """Groups worth trying now. A blocked group is unblocked when a node released since its
        failure could help it; those nodes become its `trigger`, re-checked before each try
        because an earlier job of the same pass may take them."""
        dirty = [self.cluster.nodes[i] for i in self._dirty_nodes]
        self._dirty_nodes.clear()
        out = []
        for g in self.groups.values():
            if not g.jobs:
                continue
            if g.blocked:
                if not dirty:
                    continue
                if g.gated:
                    trigger = self.may_fit(g, dirty)
                    if not trigger:
                        continue
                    g.trigger = trigger
                elif not any(self._pool_released.get(p, 0) > g.blocked_at for p in g.pools):
                    continue
                g.blocked = False
            out.append(g)
        return out

    def block(self, g: _Group, reason: str) -> None:
        g.blocked, g.blocked_at, g.reason, g.trigger = True, self._releases, reason, None

    def prune(self) -> None:
        for key in [k for k, g in self.groups.items() if not g.jobs]:
            del self.groups[key]

    def _result(self, wall_s: float) -> SimResult:
        first = min((j.submit_time for j in self.jobs), default=0.0)
        last = max((r.end for r in self.finished), default=first)
        span = last - first
        mean = self._area / self.capacity_milli / span if span > 0 else 0.0
        pools = {
            f"{p[0]} {p[1]}": (self._pool_area[p] / self.pool_capacity[p] / span if span > 0 else 0.0)
            for p in sorted(self.pool_capacity)
        }
        unplaced = [(j.job_id, g.reason) for g in self.groups.values() for _, _, j in g.jobs]
        return SimResult(
            jobs=self.finished,
            unplaced=unplaced,
            makespan=span,
            mean_allocation=mean,
            pool_allocation=pools,
            timeline=self.timeline,
            placements=self.placements,
            passes=self.passes,
            place_calls=self.place_calls,
            wall_s=wall_s,
        )


# ----------------------------------------------------------------------------- passes


def greedy_pass(sim: Simulator) -> None:
    """Priority, then submission order; a job that does not fit is skipped, not waited for."""
    heap = [(g.head_key(), id(g), g) for g in sim.retriable()]
    heapq.heapify(heap)
    emptied = False
    while heap:
        _, _, g = heapq.heappop(heap)
        _, _, job = g.jobs[0]
        if g.trigger is not None:
            g.trigger = sim.may_fit(g, g.trigger)
            if not g.trigger:
                sim.block(g, g.reason)
                continue
        sim.place_calls += 1
        request = job.request if sim.baseline is None else sim.baseline.relative(job.request)
        decision = place(request, sim.cluster, sim.policy, sim.speed_of)
        if not decision.placed:
            sim.block(g, decision.reason)
            continue
        g.jobs.popleft()
        sim.start(job, decision)
        if g.jobs:
            heapq.heappush(heap, (g.head_key(), id(g), g))
        else:
            emptied = True
    if emptied:
        sim.prune()


def admission_pass(sim: Simulator) -> None:
    """The control plane's own pass (`schedule_pass`: fair order across queues, quota,
    preemption, reservations) over the pending jobs worth trying.

    Handing it every job of every hopeful group would make one pass cost as much as the
    backlog, so each group offers its first job, and a group whose offered jobs all started
    offers twice as many in the next round of the same instant; a group with a job left
    waiting is blocked like in the greedy pass. Preempted jobs stop at once and are queued
    again with the work they had done kept (the victim checkpoints first); their preemptors
    start in the round after, at the same virtual instant.
    """
    batch: dict[int, int] = {}
    hopeful = sim.retriable()
    rounds = 0
    while hopeful:
        rounds += 1
        offered: dict[str, _Group] = {}
        pending: list[PendingJob] = []
        for g in hopeful:
            if g.trigger is not None:
                g.trigger = sim.may_fit(g, g.trigger)
                if not g.trigger:
                    sim.block(g, g.reason)
                    continue
            n = batch.setdefault(id(g), 1)
            for i, (_, _, job) in enumerate(g.jobs):
                if i == n:
                    break
                offered[job.job_id] = g
                pending.append(PendingJob(job.job_id, job.queue, job.priority, job.submit_time, job.request))
        if not pending:
            break
        sim.place_calls += len(pending)
        result = schedule_pass(
            pending,
            list(sim.running_view.values()),
            sim.cluster,
            sim.queues,
            sim.policy,
            sim.speed_of,
            sim.now,
            baseline=sim.baseline,
            usage=sim.queue_usage,
        )
        started: set[str] = set()
        for job_id, decision in result.placed:
            started.add(job_id)
            g = offered[job_id]
            job = next(j for _, _, j in g.jobs if j.job_id == job_id)
            sim.start(job, decision)
        for g in {id(g): g for g in offered.values()}.values():
            if started:
                g.jobs = deque(e for e in g.jobs if e[2].job_id not in started)
        for victim in result.preemptions:
            sim.preempt(victim.victim_job_id, victim.reason)
        again: dict[int, _Group] = {}
        for job_id, g in offered.items():
            if job_id in result.waiting:
                sim.block(g, result.waiting[job_id])
                again.pop(id(g), None)
            elif not g.blocked and g.jobs:
                again[id(g)] = g
        for gid in again:
            batch[gid] *= 2
        # after preemptions the victims' nodes are free: let everything blocked look again
        hopeful = sim.retriable() if result.preemptions else [g for g in again.values() if not g.blocked]
        if rounds > 64:
            break
    sim.prune()


def run_pass(sim: Simulator) -> None:
    """The scheduling pass the simulator runs after each instant's events: the control
    plane's `schedule_pass`."""
    admission_pass(sim)


def simulate(
    cluster: ClusterState,
    jobs: Iterable[SimJob],
    policy: Policy | str | None = None,
    speed_of: SpeedOf | None = None,
    **kw: Any,
) -> SimResult:
    """Run `jobs` on `cluster` to the end and report."""
    jobs = list(jobs)
    if isinstance(policy, str):
        policy = make_policy(policy, mix_of(jobs))
    return Simulator(cluster, jobs, policy, speed_of, **kw).run()
