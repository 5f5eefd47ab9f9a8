#!/usr/bin/env python3
"""Effective training time ratio (ETTR) of a 16,384-device job under Llama 3's failure mix.

A gang of 2,048 nodes × 8 devices (plus a pool of hot spare nodes) trains for 54 simulated
days. Unexpected interruptions arrive as a Poisson process at 1.97e-5 per device-hour (Llama 3:
419 in 54 days on 16,384 H100s); each one's cause is drawn from the counts in
../shared/traces/failures/llama3_405b_interruptions.csv and mapped to a category:

  device    GPU faults (HBM, SRAM, GSP, thermal, …): the node is swapped for a hot spare
  host      NIC, PSU, SSD, CPU, … and unplanned host maintenance: the node is swapped
  network   switch or cable: the gang restarts on the same nodes once the link is routed around
  software  software bugs and dependencies: restart in place
  hang      NCCL watchdog timeouts and silent data corruption: no signal; seen only when the
            job stops reporting progress (or its own checks trip), after --hang-detect-s

Failures go through the live control plane's code, not a model of it: each cause becomes the
observation the agents would report (CAUSE_OBSERVATIONS) and is classified by
scheduler/reliability/signals.py against xid.yaml; the signal moves device and node health in a
HealthBook (health_state.py); recovery.decide_recovery judges the attempt (blame.py inside:
hardware, job or unknown; give up on a job that fails the same way on different healthy
hardware) and sets the backoff (tenacity); a node the signal implicates is swapped for the
nearest hot spare (spares.py choose_spares/rank_spares), goes to repair for --repair-h and comes
back through a passing health check. Early warnings are classified too; the proactive checkpoint
fires when one turns a device SUSPECT in the HealthBook.

After a failure the job is down for the detection latency (the no-progress window for hangs),
the backoff, the control plane's re-placement, any wait for a spare, and the job's restart cost
R (load the checkpoint, re-initialise collectives), and loses the work since its last complete
checkpoint. Detection and re-placement latencies come from the live recovery benchmark's
results (benchmarks/results/recovery.json) when it has run, else from the defaults below, and
the run says which. Failures may also strike during a checkpoint or a restart. The simulation
steps from event to event (failures, warnings, checkpoints), not through time.

Per blocking checkpoint cost C, every policy faces the same failures (same seeds):

  fixed_30min     a checkpoint after every 30 min of work;
  bound           no simulation: the first-order optimum 1 − √(2C/M) − R/M with the true job
                  MTBF M known and R the mean downtime per failure (detection, backoff,
                  re-placement and restart);
  auto            scheduler/reliability/interval.py's IntervalPolicy("auto"): Daly's optimum
                  from a FailureRateEstimator that starts from its prior and learns the rate
                  from the failures the job sees, and the measured checkpoint cost;
  auto_proactive  auto, plus a checkpoint when a device turns SUSPECT: a fraction p of the
                  device and host failures is preceded by an early-warning signal --warn-lead-s
                  ahead.

    python -m benchmarks.ettr                                 # the full run, 32 seeds
    python -m benchmarks.ettr --days 4 --nodes 16 --rate 2e-3 --seeds 2 --json /tmp/e.json
"""

from __future__ import annotations

import argparse
import csv
import functools
import heapq
import json
import math
import os
import platform
import random
import shlex
import signal as posix
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.reporting import write_reports
from scheduler.reliability.blame import AttemptFailure
from scheduler.reliability.health_state import Health, HealthBook, HistoryEntry
from scheduler.reliability.interval import (
    DEFAULT_PRIOR_DEVICE_HOURS,
    DEFAULT_PRIOR_FAILURES,
    HOUR_S,
    FailureRateEstimator,
    IntervalPolicy,
    ettr_bound,
    ettr_optimum,
    optimal_interval,
)
from scheduler.reliability.recovery import RecoveryPolicy, backoff_s, decide_recovery
from scheduler.reliability.signals import Blame, Kind, Observation, Signal, classify, packaged_table
from scheduler.reliability.spares import (
    BLOCK,
    RACK,
    SpareCandidate,
    SparePolicy,
    choose_spares,
    distance,
    rank_spares,
)

HERE = Path(__file__).resolve().parent
TRACE = HERE.parent.parent / "shared" / "traces" / "failures" / "llama3_405b_interruptions.csv"
LIVE_RESULTS = HERE / "results" / "recovery.json"


def _shown(path: str) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(HERE.parent))
    except ValueError:
        return path


# Without live figures: 5 s to see a failure (an XID or a worker's exit reaches the control
# plane within a telemetry interval) and 2 s for the control plane to place and start the
# replacement gang (issue 7's goal for its share at p99).
DEFAULT_DETECT_S = 5.0
DEFAULT_CONTROL_PLANE_S = 2.0
DEVICE_MODEL = "H100"
POLICIES = ("fixed_30min", "bound", "auto", "auto_proactive")
CATEGORY = {
    "GPU": "device",
    "Host": "host",
    "Unplanned maintenance": "host",
    "Network": "network",
    "Dependency": "software",
    "Unknown": "hang",
}
# Corrupted results raise no signal either: the job's own checks find them, like a hang.
COMPONENT_CATEGORY = {"Silent data corruption": "hang"}
WARNABLE = ("device", "host")  # the failures early-warning signals (ECC, XID 92/94, thermal) can precede


@dataclass(frozen=True)
class Cause:
    component: str
    category: str
    count: int


@dataclass(frozen=True)
class Failure:
    at: float  # seconds from the start
    cause: Cause
    warned: bool
    slot: int  # the gang position whose node it strikes
    device: int  # the device of that node


# What the live system would observe for each cause of the trace: the failure itself, and for
# warnable causes the early warning that may precede it. Classified by signals.classify through
# xid.yaml, so the table, not this file, says who is blamed and what it does to health.
_XID_OR_KIND = tuple[str, int | None]
CAUSE_OBSERVATIONS: dict[str, tuple[_XID_OR_KIND, _XID_OR_KIND | None]] = {
    "Faulty GPU": ((Kind.XID, 79), (Kind.XID, 92)),  # fallen off the bus; high single-bit ECC rate
    "GPU HBM3 memory": ((Kind.XID, 48), (Kind.ROW_REMAP_PENDING, None)),  # double-bit ECC
    "GPU SRAM memory": ((Kind.XID, 95), (Kind.XID, 94)),  # uncontained after contained ECC
    "GPU system processor": ((Kind.XID, 119), (Kind.XID, 61)),  # GSP timeout after firmware warning
    "GPU thermal interface + sensor": ((Kind.THERMAL_SHUTDOWN, None), (Kind.THERMAL_SLOWDOWN, None)),
    # No signal: the job stops reporting progress (or its own checks stop it).
    "Silent data corruption": ((Kind.HANG, None), None),
    "NCCL watchdog timeouts": ((Kind.HANG, None), None),
    # NCCL aborts every rank when a link of the fabric goes: nothing names a node.
    "Network switch/cable": ((Kind.SIGNAL, int(posix.SIGABRT)), None),
    "Software bug": ((Kind.EXIT, 1), None),
    "Dependency": ((Kind.EXIT, 1), None),
}
# Host faults (NIC, PSU, SSD, CPU, board, memory, unplanned maintenance) take the node and its
# agent down. The table has no node-level early warning, so the warning that precedes some of
# them is modelled as thermal throttling of a device (a failing fan, PSU or chassis shows so).
HOST_OBSERVATIONS: tuple[_XID_OR_KIND, _XID_OR_KIND | None] = (
    (Kind.HEARTBEAT_LOST, None),
    (Kind.THERMAL_SLOWDOWN, None),
)


def cause_observations(cause: Cause) -> tuple[_XID_OR_KIND, _XID_OR_KIND | None]:
    if cause.component in CAUSE_OBSERVATIONS:
        return CAUSE_OBSERVATIONS[cause.component]
    if cause.category == "host":
        return HOST_OBSERVATIONS
    raise ValueError(f"cause {cause.component!r} ({cause.category}) has no observation: add it")


@functools.cache
def signal_for(kind: str, code: int | None, device: int | None, hang_window_s: float) -> Signal:
    """classify() of one observation. Cached: the same observation always means the same, and
    the simulator sees the same few hundred thousand times."""
    value = hang_window_s if kind == Kind.HANG else None
    # A lost node names no device; everything else is reported by the device it concerns.
    index = None if kind == Kind.HEARTBEAT_LOST else device
    return classify(Observation(kind, code, value, device_index=index))


def load_causes(path: Path = TRACE) -> list[Cause]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        Cause(
            r["component"], COMPONENT_CATEGORY.get(r["component"], CATEGORY[r["category"]]), int(r["count"])
        )
        for r in rows
    ]


def draw_failures(
    rng: random.Random,
    causes: list[Cause],
    rate_per_s: float,
    horizon_s: float,
    warn_fraction: float,
    nodes: int,
    devices_per_node: int,
    where: random.Random,
) -> list[Failure]:
    """Failure times and causes from `rng`; where they strike from `where`, a second stream, so
    that the times and causes do not depend on the size of the gang."""
    weights = [c.count for c in causes]
    out: list[Failure] = []
    t = rng.expovariate(rate_per_s)
    while t < horizon_s:
        cause = rng.choices(causes, weights)[0]
        # drawn for every failure, so the failure stream is the same whatever the warned fraction
        u = rng.random()
        warned = cause.category in WARNABLE and u < warn_fraction
        out.append(Failure(t, cause, warned, where.randrange(nodes), where.randrange(devices_per_node)))
        t += rng.expovariate(rate_per_s)
    return out


@dataclass
class Settings:
    devices: int
    horizon_s: float
    detect_s: float
    control_plane_s: float
    hang_detect_s: float
    restart_s: float
    warn_lead_s: float
    spares: int
    repair_s: float
    nodes: int = 0
    devices_per_node: int = 8
    nodes_per_rack: int = 16
    nodes_per_block: int = 256
    max_restarts: int = 1000
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)


@dataclass(frozen=True)
class Handled:
    """One failure as the control plane handled it."""

    at: float
    downtime_s: float  # until the gang runs again, unless another failure strikes first; inf: FAILED
    spare_wait_s: float
    warned: bool  # its device was SUSPECT when it failed
    device: str  # "node/index": what IntervalPolicy.warn/resolve track


@dataclass(frozen=True)
class Suspect:
    """A device of the gang turned SUSPECT in the HealthBook: the proactive checkpoint's cue."""

    at: float
    device: str
    failure: int  # index of the failure it announces


@dataclass
class Timeline:
    failures: list[Handled]
    suspects: list[Suspect]
    stats: dict[str, Any]


class Cluster:
    """The gang's nodes, the hot spare pool and the nodes in repair, with a HealthBook. Nodes
    are named n0000…; the gang takes every node the spare pool does not."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        total = s.nodes + s.spares
        self.names = [f"n{i:04d}" for i in range(total)]
        self.labels = {
            n: {RACK: f"r{i // s.nodes_per_rack:03d}", BLOCK: f"b{i // s.nodes_per_block:02d}"}
            for i, n in enumerate(self.names)
        }
        self.book = HealthBook()
        self.policy = SparePolicy(per_model=s.spares)
        self.gang: list[str] = []
        self.in_gang: set[str] = set()
        self.repairs: list[tuple[float, str]] = []  # heap of (back at, node)
        self.in_repair: set[str] = set()
        self.candidates = {n: self._candidate(n) for n in self.names}
        self.spares = choose_spares(list(self.candidates.values()), frozenset(), self.policy)
        self.gang = [n for n in self.names if n not in self.spares][: s.nodes]
        self.in_gang = set(self.gang)
        self.slot_of = {n: i for i, n in enumerate(self.gang)}
        for n in self.gang:
            self._update(n)
        self._gang_set: frozenset[str] | None = None

    def _candidate(self, node: str) -> SpareCandidate:
        healthy = self.book.node(node).state is Health.HEALTHY and all(
            self.book.device_health(node, i) is Health.HEALTHY for i in range(self.s.devices_per_node)
        )
        return SpareCandidate(
            node,
            DEVICE_MODEL,
            self.s.devices_per_node,
            idle=node not in self.in_gang,
            healthy=healthy,
            schedulable=node not in self.in_repair,
            labels=self.labels[node],
        )

    def _update(self, node: str) -> None:
        self.candidates[node] = self._candidate(node)

    def gang_set(self) -> frozenset[str]:
        if self._gang_set is None:
            self._gang_set = frozenset(self.in_gang)
        return self._gang_set

    def gang_healthy(self) -> bool:
        book = self.book
        return not any(
            n in self.in_gang and r.state is not Health.HEALTHY for n, r in book.nodes.items()
        ) and (
            not any(n in self.in_gang and r.state is not Health.HEALTHY for (n, _), r in book.devices.items())
        )

    def node_healthy(self, node: str) -> bool:
        return self.candidates[node].healthy

    def observe(self, node: str, signal: Signal, now: float) -> list[HistoryEntry]:
        entries = self.book.observe(node, signal, now)
        if entries:
            self._update(node)
        return entries

    def repair_until(self, now: float) -> bool:
        """Nodes whose repair is done by `now` pass their health check and become usable;
        whether any did."""
        repaired = bool(self.repairs) and self.repairs[0][0] <= now
        while self.repairs and self.repairs[0][0] <= now:
            at, node = heapq.heappop(self.repairs)
            self.in_repair.discard(node)
            self.book.check_passed(node, None, at, "repaired")
            for i in range(self.s.devices_per_node):
                self.book.check_passed(node, i, at, "repaired")
            self._update(node)
        return repaired

    def swap(self, node: str, now: float) -> tuple[float, int]:
        """Send `node` to repair and put the nearest spare (else free node, else the first one
        back from repair) in its slot. Returns (seconds waited, topological distance)."""
        slot = self.slot_of.pop(node)
        self.in_gang.discard(node)
        self.in_repair.add(node)
        heapq.heappush(self.repairs, (now + self.s.repair_s, node))
        self._update(node)
        self._gang_set = None
        waited, at = 0.0, now
        while True:
            if self.repair_until(at):
                self.spares = choose_spares(list(self.candidates.values()), self.spares, self.policy)
            # Only the pool's own records: rank_spares looks at no other.
            pool = [self.candidates[n] for n in sorted(self.spares)]
            ranked = rank_spares(self.spares, pool, DEVICE_MODEL, self.labels[node])
            if not ranked:
                # The pool is empty: any free healthy node will do.
                free = [c for c in self.candidates.values() if c.usable]
                ranked = rank_spares(frozenset(c.node for c in free), free, DEVICE_MODEL, self.labels[node])
            if ranked:
                break
            # Nothing free: the gang waits for the first node back from repair.
            waited += self.repairs[0][0] - at
            at = self.repairs[0][0]
        take = ranked[0]
        self.gang[slot] = take
        self.slot_of[take] = slot
        self.in_gang.add(take)
        self._update(take)
        self.spares = choose_spares(list(self.candidates.values()), self.spares - {take}, self.policy)
        return waited, distance(self.labels[take], self.labels[node])


def handle_failures(failures: list[Failure], s: Settings) -> Timeline:
    """Play the failures through the live system's code: each cause's observation is classified
    (signals.classify), moves health in a HealthBook, is judged by recovery.decide_recovery
    (blame.decide inside), waits its backoff, and has its implicated node replaced by a hot
    spare chosen by choose_spares/rank_spares; repaired nodes come back by a passing health
    check. Early warnings are classified too and, when they turn a device SUSPECT, become the
    cue for a proactive checkpoint.

    None of this depends on when the job checkpoints, so it is played once per failure stream
    and every checkpoint policy faces the same handled failures."""
    cluster = Cluster(s)
    table_hang = s.hang_detect_s
    handled: list[Handled] = []
    suspects: list[Suspect] = []
    history: list[AttemptFailure] = []
    restarts = hardware_restarts = consecutive = 0
    ready = -math.inf  # when the gang runs again after the latest failure
    dead = False
    blames: Counter[str] = Counter()
    distances: Counter[int] = Counter()
    transitions: Counter[str] = Counter()
    swaps = 0
    end_reason = ""
    # Early warnings precede their failure by the lead time; health sees events in time order.
    events: list[tuple[float, int, int]] = [(f.at, 1, k) for k, f in enumerate(failures)]
    events += [(f.at - s.warn_lead_s, 0, k) for k, f in enumerate(failures) if f.warned]
    events.sort()
    warned_node: dict[int, str] = {}
    for at, is_failure, k in events:
        f = failures[k]
        if dead:
            break
        warning = cause_observations(f.cause)[1]
        if not is_failure:
            if at < 0 or warning is None:
                continue
            node = cluster.gang[f.slot]
            warned_node[k] = node
            entries = cluster.observe(node, signal_for(*warning, f.device, table_hang), at)
            transitions.update(f"{e.from_state}->{e.to_state}" for e in entries)
            if any(e.to_state is Health.SUSPECT for e in entries):
                suspects.append(Suspect(at, f"{node}/{f.device}", k))
            continue
        # The warned device, if it is still in the gang; else whatever node holds the slot now.
        node = warned_node.get(k, cluster.gang[f.slot])
        if node not in cluster.in_gang:
            node = cluster.gang[f.slot]
        signal = signal_for(*cause_observations(f.cause)[0], f.device, table_hang)
        warned = cluster.book.device_health(node, f.device) is Health.SUSPECT
        implicated = frozenset({node}) if signal.blame is Blame.HARDWARE else frozenset()
        # The hardware the failure is pinned to: the node a hardware signal names, else the
        # whole gang (a crash or hang of one rank brings down all, and names no culprit).
        hardware = implicated or cluster.gang_set()
        healthy = cluster.node_healthy(node) if implicated else cluster.gang_healthy()
        entries = cluster.observe(node, signal, at)
        transitions.update(f"{e.from_state}->{e.to_state}" for e in entries)
        history.append(AttemptFailure(len(history) + 1, (signal,), hardware, healthy, at))
        # A failure before the gang ran again (during its restart) is one more in a row.
        consecutive = consecutive + 1 if at < ready else 1
        decision = decide_recovery(
            history,
            restarts_used=restarts,
            hardware_restarts_used=hardware_restarts,
            max_restarts=s.max_restarts,
            consecutive_failures=consecutive,
            policy=s.recovery,
            implicated_nodes=implicated,
        )
        blames[decision.blame.value] += 1
        # A hang is seen only when the no-progress window runs out; everything else at once.
        detect = s.hang_detect_s if cause_observations(f.cause)[0][0] == Kind.HANG else s.detect_s
        key = f"{node}/{f.device}"
        if not decision.restart:
            dead = True
            end_reason = f"t={at / HOUR_S:.1f} h: FAILED: {decision.reason}"
            handled.append(Handled(at, math.inf, 0.0, warned, key))
            break
        restarts += decision.counts_as_restart
        hardware_restarts += not decision.counts_as_restart
        place_at = at + detect + decision.delay_s
        wait = 0.0
        for bad in sorted(decision.exclude_nodes & cluster.in_gang):
            waited, dist = cluster.swap(bad, place_at)
            wait = max(wait, waited)
            distances[dist] += 1
            swaps += 1
        down = detect + decision.delay_s + wait + s.control_plane_s + s.restart_s
        handled.append(Handled(at, down, wait, warned, key))
        ready = at + down
    stats = {
        "failures": len(handled),
        "blame": dict(sorted(blames.items())),
        "restarts_counted": restarts,
        "hardware_restarts": hardware_restarts,
        "swaps": swaps,
        "replacement_distance": {
            name: distances[d] for d, name in enumerate(("same_rack", "same_block", "elsewhere"))
        },
        "health_transitions": dict(sorted(transitions.items())),
        "suspect_cues": len(suspects),
        "ended_failed": dead,
        "end_reason": end_reason,
    }
    return Timeline(handled, suspects, stats)


@dataclass
class Outcome:
    productive_s: float = 0.0
    lost_s: float = 0.0
    checkpoint_s: float = 0.0
    down_s: float = 0.0
    spare_wait_s: float = 0.0
    failures: int = 0
    checkpoints: int = 0
    proactive_checkpoints: int = 0
    final_interval_s: float = 0.0
    final_why: str = ""


def simulate(timeline: Timeline, s: Settings, c: float, policy: IntervalPolicy, proactive: bool) -> Outcome:
    """One job over the horizon under `policy`; the accounting sums to the horizon."""
    out = Outcome()
    est = policy.estimator
    observed_until = 0.0
    failures = timeline.failures

    def observe(now: float, failed: int, warned: int) -> None:
        nonlocal observed_until
        if est is not None:
            est.observe(s.devices * (now - observed_until) / HOUR_S, failed, warned)
        observed_until = now

    # latest first, so the next one pops off the end
    warnings = sorted(timeline.suspects if proactive else [], key=lambda w: w.at, reverse=True)
    i, n = 0, len(failures)
    seg = 0.0  # start of the work not yet covered by a complete checkpoint
    horizon = s.horizon_s
    while seg < horizon:
        # SUSPECT turns while the job was down or checkpointing: nothing to save, but the
        # device is SUSPECT from now on
        while warnings and warnings[-1].at <= seg:
            w = warnings.pop()
            if failures[w.failure].at > seg:
                policy.warn(w.device, w.at)
        ckpt_at = seg + policy.interval_s(seg)
        proactive_now = False
        if warnings and warnings[-1].at < ckpt_at:
            w = warnings[-1]
            f_next = failures[i].at if i < n else math.inf
            if w.at < f_next and w.at < horizon:
                warnings.pop()
                policy.warn(w.device, w.at)
                ckpt_at, proactive_now = w.at, True
        end = ckpt_at + c
        f_at = failures[i].at if i < n else math.inf
        if f_at < end and f_at < horizon:
            out.lost_s += f_at - seg
            ready = f_at
            while i < n and failures[i].at <= ready and failures[i].at < horizon:
                f = failures[i]
                out.failures += 1
                out.spare_wait_s += f.spare_wait_s
                observe(f.at, 1, int(f.warned))
                policy.resolve(f.device)
                # a failure during the restart starts the restart over
                ready = f.at + f.downtime_s
                i += 1
            out.down_s += min(ready, horizon) - f_at
            seg = ready
            continue
        if end > horizon:
            # the horizon falls in this segment: work until then counts (it was not lost)
            out.productive_s += min(ckpt_at, horizon) - seg
            out.checkpoint_s += max(0.0, horizon - ckpt_at)
            break
        out.productive_s += ckpt_at - seg
        out.checkpoint_s += c
        out.checkpoints += 1
        out.proactive_checkpoints += proactive_now
        policy.report_checkpoint(c)
        observe(end, 0, 0)
        seg = end
    if est is not None:
        observe(horizon, 0, 0)
    out.final_interval_s = policy.interval_s(horizon)
    out.final_why = policy.why(horizon)
    return out


def make_policy(
    name: str, s: Settings, prior_failures: float, prior_device_hours: float
) -> tuple[IntervalPolicy, bool]:
    if name == "fixed_30min":
        return IntervalPolicy.fixed(1800.0), False
    proactive = name == "auto_proactive"
    est = FailureRateEstimator(prior_failures, prior_device_hours)
    policy = IntervalPolicy.auto(
        est,
        s.devices,
        DEVICE_MODEL,
        restart_s=s.restart_s,
        proactive=proactive,
        warning_lead_s=s.warn_lead_s,
    )
    return policy, proactive


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    causes = load_causes(Path(args.trace))
    total = sum(c.count for c in causes)
    devices = args.nodes * args.devices_per_node
    s = Settings(
        devices=devices,
        horizon_s=args.days * 86400.0,
        detect_s=args.detect_s,
        control_plane_s=args.control_plane_s,
        hang_detect_s=args.hang_detect_s,
        restart_s=args.restart_s,
        warn_lead_s=args.warn_lead_s,
        spares=args.spares,
        repair_s=args.repair_h * HOUR_S,
        nodes=args.nodes,
        devices_per_node=args.devices_per_node,
        nodes_per_rack=args.nodes_per_rack,
        nodes_per_block=args.nodes_per_block,
        max_restarts=args.max_restarts,
        recovery=RecoveryPolicy(hardware_restart_limit=args.hardware_restart_limit),
    )
    rate_per_s = args.rate * devices / HOUR_S
    mtbf_s = 1.0 / rate_per_s
    hang_share = sum(c.count for c in causes if cause_observations(c)[0][0] == Kind.HANG) / total
    # R in the bound: what a lone failure costs before the gang runs again (spare waits aside)
    mean_downtime = (
        args.restart_s
        + args.control_plane_s
        + backoff_s(1, s.recovery)
        + args.detect_s
        + hang_share * (args.hang_detect_s - args.detect_s)
    )
    seeds = list(range(args.seed, args.seed + args.seeds))
    streams = {
        seed: draw_failures(
            random.Random(seed),
            causes,
            rate_per_s,
            s.horizon_s,
            args.warn_fraction,
            args.nodes,
            args.devices_per_node,
            random.Random(f"where-{seed}"),
        )
        for seed in seeds
    }
    timelines = {seed: handle_failures(streams[seed], s) for seed in seeds}
    # the extra variants only in the full report: the learning against an oracle, and against
    # priors 10× off either way
    variants: dict[str, tuple[str, float, float, Callable[[float], IntervalPolicy] | None]] = {
        "fixed_30min": ("fixed_30min", DEFAULT_PRIOR_FAILURES, args.prior_device_hours, None),
        "auto": ("auto", DEFAULT_PRIOR_FAILURES, args.prior_device_hours, None),
        "auto_proactive": ("auto_proactive", DEFAULT_PRIOR_FAILURES, args.prior_device_hours, None),
    }
    if not args.quick:
        variants |= {
            "oracle_periodic": (
                "oracle",
                0.0,
                0.0,
                lambda c: IntervalPolicy.fixed(optimal_interval(c, mtbf_s, mean_downtime)),
            ),
            "auto_prior_10x_optimistic": ("auto", DEFAULT_PRIOR_FAILURES, args.prior_device_hours * 10, None),
            "auto_prior_10x_pessimistic": (
                "auto",
                DEFAULT_PRIOR_FAILURES,
                args.prior_device_hours / 10,
                None,
            ),
        }
    by_cost: dict[str, Any] = {}
    for c in args.cost_list:
        key = f"{c:g}"
        row: dict[str, Any] = {
            "bound": ettr_bound(c, mtbf_s, mean_downtime),
            "exact_periodic_optimum": ettr_optimum(c, mtbf_s, mean_downtime),
            "optimal_interval_s": optimal_interval(c, mtbf_s, mean_downtime),
        }
        detail: dict[str, Any] = {}
        for vname, (kind, pf, pdh, factory) in variants.items():
            outs = []
            for seed in seeds:
                if factory is not None:
                    policy, proactive = factory(c), False
                else:
                    policy, proactive = make_policy(kind, s, pf, pdh)
                outs.append(simulate(timelines[seed], s, c, policy, proactive))
            ettrs = [o.productive_s / s.horizon_s for o in outs]
            mean = sum(ettrs) / len(ettrs)
            sd = math.sqrt(sum((e - mean) ** 2 for e in ettrs) / max(1, len(ettrs) - 1))
            row[vname] = mean
            detail[vname] = {
                "ettr_mean": mean,
                "ettr_sd_across_seeds": sd,
                "ettr_per_seed": ettrs,
                "failures_mean": sum(o.failures for o in outs) / len(outs),
                "checkpoints_mean": sum(o.checkpoints for o in outs) / len(outs),
                "proactive_checkpoints_mean": sum(o.proactive_checkpoints for o in outs) / len(outs),
                "share_of_wall": {
                    part: sum(getattr(o, f"{part}_s") for o in outs) / (len(outs) * s.horizon_s)
                    for part in ("productive", "checkpoint", "lost", "down")
                },
                "spare_wait_s_mean": sum(o.spare_wait_s for o in outs) / len(outs),
                "final_interval_s_mean": sum(o.final_interval_s for o in outs) / len(outs),
                "final_why_seed0": outs[0].final_why,
            }
        row["detail"] = detail
        by_cost[key] = row
    failures_seen = [len(v) for v in streams.values()]
    categories: dict[str, int] = {}
    for c_ in causes:
        categories[c_.category] = categories.get(c_.category, 0) + c_.count
    return {
        "benchmark": "ettr",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            k: v
            for k, v in vars(args).items()
            if k not in ("json", "md", "report", "cost_list", "trace", "latency_source", "live_results")
        },
        "job": {
            "nodes": args.nodes,
            "devices": devices,
            "spare_nodes": args.spares,
            "rate_per_device_hour": args.rate,
            "job_mtbf_h": mtbf_s / HOUR_S,
            "mean_downtime_per_failure_s": mean_downtime,
            "first_backoff_s": backoff_s(1, s.recovery),
        },
        "causes": {"categories": categories, "trace": Path(args.trace).name},
        "seeds": seeds,
        "failures_per_seed": failures_seen,
        "warned_per_seed": [sum(f.warned for f in v) for v in streams.values()],
        "by_cost": by_cost,
        "mapping": {k: {p: v[p] for p in POLICIES} for k, v in by_cost.items()},
        "latency_source": args.latency_source,
        "recovery_per_seed": [t.stats for t in timelines.values()],
        "recovery": recovery_summary([t.stats for t in timelines.values()]),
        "goals": goals(by_cost),
    }


def recovery_summary(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds of what the shared recovery code decided."""
    n = len(stats)

    def mean_of(key: str, sub: str | None = None) -> float:
        return sum(float(st[key] if sub is None else st[key].get(sub, 0)) for st in stats) / n

    blames = sorted({b for st in stats for b in st["blame"]})
    trans = sorted({t for st in stats for t in st["health_transitions"]})
    return {
        "failures_mean": mean_of("failures"),
        "blame_mean": {b: mean_of("blame", b) for b in blames},
        "restarts_counted_mean": mean_of("restarts_counted"),
        "hardware_restarts_mean": mean_of("hardware_restarts"),
        "swaps_mean": mean_of("swaps"),
        "replacement_distance_mean": {
            d: mean_of("replacement_distance", d) for d in ("same_rack", "same_block", "elsewhere")
        },
        "health_transitions_mean": {t: mean_of("health_transitions", t) for t in trans},
        "suspect_cues_mean": mean_of("suspect_cues"),
        "runs_ended_failed": sum(bool(st["ended_failed"]) for st in stats),
        "end_reasons": sorted({st["end_reason"] for st in stats if st["end_reason"]}),
    }


def goals(by_cost: dict[str, Any]) -> dict[str, Any]:
    auto_gap = {k: 100 * (v["auto"] - v["bound"]) for k, v in by_cost.items()}
    pro_gap = {k: 100 * (v["auto_proactive"] - v["bound"]) for k, v in by_cost.items()}
    low = min(by_cost, key=float)
    return {
        "auto_minus_bound_points": auto_gap,
        "auto_within_half_point": all(g >= -0.5 for g in auto_gap.values()),
        "proactive_minus_bound_points": pro_gap,
        "proactive_above_bound": all(g > 0 for g in pro_gap.values()),
        "lowest_cost": low,
        "auto_at_lowest_cost": by_cost[low]["auto"],
        "proactive_at_lowest_cost": by_cost[low]["auto_proactive"],
        "at_least_97_at_lowest_cost": by_cost[low]["auto"] >= 0.97,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def markdown(r: dict[str, Any]) -> str:
    j, st = r["job"], r["settings"]
    lines = [
        "# ETTR under Llama 3's failure mix: fixed, first-order bound, auto, auto + warnings",
        "",
        f"Run {r['finished_at']} with `{r['command']}`; mean of {len(r['seeds'])} seeds "
        f"({r['seeds'][0]}–{r['seeds'][-1]}), every policy facing the same failures.",
        "",
        f"Job: {j['nodes']:,} nodes × {st['devices_per_node']} = {j['devices']:,} devices, "
        f"{j['spare_nodes']} hot spare nodes (repair {st['repair_h']:g} h), {st['days']:g} days; "
        f"{j['rate_per_device_hour']:.3g} failures per device-hour ⇒ job MTBF M = {j['job_mtbf_h']:.2f} h; "
        f"failures per seed {min(r['failures_per_seed'])}–{max(r['failures_per_seed'])}, "
        f"causes by category {r['causes']['categories']}. Detection {st['detect_s']:g} s "
        f"(hangs {st['hang_detect_s']:g} s), re-placement {st['control_plane_s']:g} s, backoff after a "
        f"first failure {r['job']['first_backoff_s']:g} s, job restart cost {st['restart_s']:g} s, so "
        f"{j['mean_downtime_per_failure_s']:.1f} s down per failure on average (the R in the bound). "
        f"Warnings: {st['warn_fraction']:.0%} of device and host failures, {st['warn_lead_s']:g} s ahead.",
        "",
        "| C | fixed 30 min | bound (first order) | exact periodic optimum | auto | auto − bound "
        "| auto + warnings | − bound | oracle periodic (sim) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, v in r["by_cost"].items():
        oracle = v.get("oracle_periodic")
        lines.append(
            f"| {c} s | {_pct(v['fixed_30min'])} | {_pct(v['bound'])} | {_pct(v['exact_periodic_optimum'])} "
            f"| **{_pct(v['auto'])}** | {100 * (v['auto'] - v['bound']):+.2f} pt "
            f"| **{_pct(v['auto_proactive'])}** | {100 * (v['auto_proactive'] - v['bound']):+.2f} pt "
            f"| {_pct(oracle) if oracle is not None else '-'} |"
        )
    lines += [
        "",
        "Latencies: " + "; ".join(f"{k} {st[k]:g} s from {v}" for k, v in r["latency_source"].items()) + ".",
    ]
    g = r["goals"]
    met = {k: "met" if g[k] else "not met" for k in g if isinstance(g[k], bool)}
    spare_wait = max(d["spare_wait_s_mean"] for v in r["by_cost"].values() for d in v["detail"].values())
    lines += [
        "",
        f"Goals: auto within 0.5 points of the bound at every C: "
        f"**{met['auto_within_half_point']}**; auto + warnings above the bound: "
        f"**{met['proactive_above_bound']}**; ≥ 97% at C = {g['lowest_cost']} s: "
        f"**{met['at_least_97_at_lowest_cost']}** (auto {_pct(g['auto_at_lowest_cost'])}, "
        f"with warnings {_pct(g['proactive_at_lowest_cost'])}). "
        + (
            f"The {r['job']['spare_nodes']} hot spares ran out in some runs: up to {spare_wait:.0f} s "
            "of waiting for a repaired node per run (mean over seeds, worst variant), counted as down time."
            if spare_wait
            else f"The {r['job']['spare_nodes']} hot spares never ran out."
        ),
        "",
        "The first-order bound is an approximation, not a ceiling: Daly's exact model of periodic "
        "checkpointing (failures during checkpoints and restarts counted) gives the 'exact periodic "
        "optimum' column, which the simulated oracle (Daly's interval from the true M) matches.",
        "",
        "## Where the wall time went (mean over seeds)",
        "",
        "| C | variant | ETTR | ± sd | checkpointing | lost work | down | failures | checkpoints "
        "| on warning | final interval |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, v in r["by_cost"].items():
        for name, d in v["detail"].items():
            sh = d["share_of_wall"]
            lines.append(
                f"| {c} s | {name} | {_pct(d['ettr_mean'])} | {100 * d['ettr_sd_across_seeds']:.2f} "
                f"| {_pct(sh['checkpoint'])} | {_pct(sh['lost'])} | {_pct(sh['down'])} "
                f"| {d['failures_mean']:.0f} | {d['checkpoints_mean']:,.0f} "
                f"| {d['proactive_checkpoints_mean']:.0f} | {d['final_interval_s_mean']:.0f} s |"
            )
    rec = r["recovery"]
    dist = rec["replacement_distance_mean"]
    lines += [
        "",
        "## What the shared recovery code decided (mean per run)",
        "",
        "Each failure classified by `signals.classify` (xid.yaml), health in a `HealthBook`, judged "
        "by `recovery.decide_recovery` (blame.decide), replaced from the hot spare pool by "
        "`spares.choose_spares`/`rank_spares`; the same handled failures for every policy.",
        "",
        f"- {rec['failures_mean']:.1f} failures; blame: "
        + ", ".join(f"{b} {v:.1f}" for b, v in rec["blame_mean"].items()),
        f"- restarts spending max_restarts (job or unknown): {rec['restarts_counted_mean']:.1f}; "
        f"after hardware failures (not spending it): {rec['hardware_restarts_mean']:.1f}",
        f"- nodes swapped for a spare: {rec['swaps_mean']:.1f} (same rack {dist['same_rack']:.1f}, "
        f"same block {dist['same_block']:.1f}, elsewhere {dist['elsewhere']:.1f})",
        "- health transitions: "
        + ", ".join(f"{t} {v:.1f}" for t, v in rec["health_transitions_mean"].items()),
        f"- SUSPECT transitions that cued a proactive checkpoint: {rec['suspect_cues_mean']:.1f}",
        f"- runs that ended FAILED: {rec['runs_ended_failed']}"
        + (f" ({'; '.join(rec['end_reasons'])})" if rec["end_reasons"] else ""),
    ]
    lines += ["", "What `corral job` would show at the end (seed 0, auto + warnings):", ""]
    for c, v in r["by_cost"].items():
        lines.append(f"- C = {c} s: {v['detail']['auto_proactive']['final_why_seed0']}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--json", default=None, help="write exactly the {C: {policy: ETTR}} mapping here")
    p.add_argument(
        "--report", default=str(HERE / "results" / "ettr.json"), help="the full JSON report (+ .md beside)"
    )
    p.add_argument("--days", type=float, default=54.0)
    p.add_argument("--nodes", type=int, default=2048)
    p.add_argument("--devices-per-node", type=int, default=8)
    p.add_argument("--spares", type=int, default=32, help="hot spare nodes")
    p.add_argument("--repair-h", type=float, default=72.0, help="hours until a swapped node is a spare again")
    p.add_argument("--rate", type=float, default=419 / (16384 * 54 * 24), help="failures per device-hour")
    p.add_argument("--costs", default="1,5,60", help="blocking checkpoint costs C in seconds")
    p.add_argument(
        "--detect-s",
        type=float,
        default=None,
        help=f"failure to detection; default: detect_p99_s of {LIVE_RESULTS.name} if present, "
        f"else {DEFAULT_DETECT_S:g}",
    )
    p.add_argument(
        "--control-plane-s",
        type=float,
        default=None,
        help="detection to replacement workers started; default: control_plane_p99_s of "
        f"{LIVE_RESULTS.name} if present, else {DEFAULT_CONTROL_PLANE_S:g}",
    )
    p.add_argument("--live-results", default=str(LIVE_RESULTS), help="the live recovery benchmark's JSON")
    p.add_argument(
        "--hang-detect-s",
        type=float,
        default=None,
        help="no-progress window for hangs; default: the hang threshold of the signal table (xid.yaml)",
    )
    p.add_argument("--restart-s", type=float, default=60.0, help="job restart cost R")
    p.add_argument(
        "--max-restarts",
        type=int,
        default=1000,
        help="the job's budget for failures blamed on it or on nobody",
    )
    p.add_argument("--hardware-restart-limit", type=int, default=10_000)
    p.add_argument("--nodes-per-rack", type=int, default=16)
    p.add_argument("--nodes-per-block", type=int, default=256)
    p.add_argument("--warn-fraction", type=float, default=0.3)
    p.add_argument("--warn-lead-s", type=float, default=600.0)
    p.add_argument(
        "--prior-device-hours",
        type=float,
        default=DEFAULT_PRIOR_DEVICE_HOURS,
        help="auto's prior: 1 failure per this many device-hours",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="only the four reported policies")
    p.add_argument("--trace", default=str(TRACE))
    args = p.parse_args(argv)
    try:
        args.cost_list = [float(x) for x in args.costs.split(",") if x.strip()]
    except ValueError:
        p.error(f"--costs: expected comma-separated seconds (got {args.costs!r})")
    if not args.cost_list or min(args.cost_list) < 0:
        p.error("--costs must be ≥ 0")
    if args.days <= 0 or args.nodes < 1 or args.seeds < 1 or args.rate <= 0 or args.spares < 0:
        p.error("--days, --nodes, --seeds and --rate must be positive, --spares ≥ 0")
    if not 0 <= args.warn_fraction <= 1 or args.warn_lead_s <= 0:
        p.error("--warn-fraction in [0, 1], --warn-lead-s > 0")
    if args.nodes_per_rack < 1 or args.nodes_per_block < 1 or args.max_restarts < 0:
        p.error("--nodes-per-rack and --nodes-per-block must be ≥ 1, --max-restarts ≥ 0")
    if args.json and Path(args.json).resolve() in (
        Path(args.report).resolve(),
        Path(args.report).resolve().with_suffix(".md"),
    ):
        p.error(
            f"--json {args.json}: the full report is written there (--report); give the mapping another path"
        )
    resolve_latencies(args)
    return args


def live_latencies(path: Path) -> dict[str, float]:
    """The figures the live recovery benchmark measured, where it has run."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    found = data if isinstance(data, dict) else {}
    return {k: float(v) for k, v in found.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def resolve_latencies(args: argparse.Namespace) -> None:
    """Fill in the latencies left unset and record in `latency_source` where each came from."""
    live = live_latencies(Path(args.live_results))
    sources = {}
    for attr, key, default in (
        ("detect_s", "detect_p99_s", DEFAULT_DETECT_S),
        ("control_plane_s", "control_plane_p99_s", DEFAULT_CONTROL_PLANE_S),
    ):
        if getattr(args, attr) is not None:
            sources[attr] = "command line"
        elif key in live:
            setattr(args, attr, live[key])
            sources[attr] = f"{key} of {_shown(args.live_results)}"
        else:
            setattr(args, attr, default)
            where = "has no " + key if live else "not found"
            sources[attr] = f"default ({_shown(args.live_results)} {where})"
    if args.hang_detect_s is None:
        threshold = packaged_table().observations[Kind.HANG].threshold
        args.hang_detect_s = float(threshold) if threshold is not None else 600.0
        sources["hang_detect_s"] = "the hang threshold of xid.yaml"
    else:
        sources["hang_detect_s"] = "command line"
    args.latency_source = sources


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.ettr", *(sys.argv[1:] if argv is None else argv)])
    t0 = time.perf_counter()
    result = run(args, command)
    result["wall_s"] = time.perf_counter() - t0
    report = Path(args.report)
    write_reports(result, report, report.with_suffix(".md"), markdown)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result["mapping"], indent=2) + "\n")
    j = result["job"]
    for attr, source in result["latency_source"].items():
        print(f"{attr} = {getattr(args, attr):g} s from {source}")
    rec = result["recovery"]
    print(
        f"recovery (mean per run): {rec['failures_mean']:.0f} failures, blame {rec['blame_mean']}, "
        f"{rec['swaps_mean']:.0f} nodes swapped for spares, {rec['suspect_cues_mean']:.0f} SUSPECT cues, "
        f"{rec['runs_ended_failed']} runs ended FAILED"
    )
    print(
        f"{j['devices']:,} devices, job MTBF {j['job_mtbf_h']:.2f} h, "
        f"R = {j['mean_downtime_per_failure_s']:.1f} s down per failure, "
        f"{len(result['seeds'])} seeds, {result['wall_s']:.1f} s"
    )
    for c, v in result["by_cost"].items():
        print(
            f"C = {c:>3} s: fixed_30min {_pct(v['fixed_30min'])}  bound {_pct(v['bound'])} "
            f"(1 − √(2C/M) − R/M; exact {_pct(v['exact_periodic_optimum'])})  auto {_pct(v['auto'])}  "
            f"auto_proactive {_pct(v['auto_proactive'])}"
        )
    g = result["goals"]
    print(
        f"goals: auto within 0.5 pt of bound {g['auto_within_half_point']}; proactive above bound "
        f"{g['proactive_above_bound']}; ≥ 97% at C = {g['lowest_cost']} s {g['at_least_97_at_lowest_cost']}"
    )
    print(f"wrote {report} and {report.with_suffix('.md')}" + (f", {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
