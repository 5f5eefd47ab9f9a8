"""Recovery latency on a live cluster: from an injected fault to every replacement worker running.

What runs (real processes, loopback only): `corral server` with a short heartbeat timeout and
node grace (and `--hot-spares 1` / `--restart-backoff 0` where the server has them), and
--nodes `corral agent --simulate h100-sxm-8` processes (8 simulated devices each). A gang of
--workers workers (examples/train.py, 8 devices each, so one worker per node, max_restarts
100) runs; faults are injected one at a time, each only once the job is RUNNING again with
all its workers running, cycling through --kinds:

  xid:79, xid:48, ecc-dbe  NodeService.InjectFault into a device one of the job's workers holds
  crash                    SIGKILL of a worker process (found by its CORRAL_WORKLOAD_ID)
  agent-kill               SIGKILL of the `corral agent` of a node running a worker; its
                           orphaned workers are killed too (the machine is gone); a fresh
                           agent for that node is started once the gang runs elsewhere
  agent-hang               SIGSTOP of such an agent (its stream stays open, silent: only the
                           heartbeat timeout finds it); SIGCONT once the gang runs elsewhere

Between rounds the faulted node is made whole again (the `clear` fault, ClearHealth,
Uncordon), so the cluster does not run out of healthy nodes.

Per fault, on one host clock (the client's for the injection, the server's event stamps for
the rest, read from JobService.Watch and ClusterService.ListEvents):
  t_inject   just before the injection
  t_observed the control plane's first event about it: a health, node, failure or worker event
  t_decided  the job's first state event after the injection that is not RUNNING
             (RECOVERING, or PENDING on control planes without it)
  t_placed   the next attempt's PLACED state event
  t_running  its RUNNING state event ("all N workers started")
and from them: inject→running (the headline), detection (inject→observed), the control
plane's share (observed→placed, minus configured waits: the failure event's `backoff_s` and,
for agent faults, the node grace period), and agent+worker start (placed→running).
Dead-agent detection is measured on its own: SIGKILL/SIGSTOP to the first node event
(stream closed / silent past the heartbeat timeout); the goal is ≤ heartbeat timeout + 1 s.

    python -m benchmarks.recovery                    # 60 faults of 6 kinds, ~5 minutes
    python -m benchmarks.recovery --quick            # 6 faults on 4 nodes, about a minute
    python -m benchmarks.recovery --faults 3 --kinds crash,agent-kill --json /tmp/r.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from corral.v1 import job_pb2, node_pb2

from benchmarks.live_cluster import (
    CORRAL,
    Api,
    ClusterError,
    Event,
    EventLog,
    LiveCluster,
    kill_groups,
    state_name,
    wait_for,
    worker_of,
)
from benchmarks.reporting import machine_info, write_reports

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEVICE_FAULTS = ("xid:79", "xid:48", "ecc-dbe")
AGENT_FAULTS = ("agent-kill", "agent-hang")
KINDS = (*DEVICE_FAULTS, "crash", *AGENT_FAULTS)
CONTROL_PLANE_GOAL_S = 2.0
AGENT_DETECT_SLACK_S = 1.0
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
# Server options this benchmark sets where the server has them: (flag, value).
WANTED_FLAGS = (("--hot-spares", "1"), ("--restart-backoff", "0"))


class BenchError(RuntimeError):
    """The benchmark could not measure (the cluster did not come up, a job never ran)."""


class JobEnded(Exception):
    """The job reached a terminal state instead of running again."""


@dataclass
class FaultRecord:
    index: int
    kind: str
    node: str
    device: int | None
    rank: int
    job_id: str
    attempt_before: int
    attempt_after: int = 0
    recovered: bool = False
    outcome: str = ""
    t_inject: float = 0.0
    t_observed: float | None = None
    t_decided: float | None = None
    t_placed: float | None = None
    t_running: float | None = None
    observed_by: str = ""  # the event that counts as observed: "kind: message"
    decided_state: str = ""
    cause: str = ""  # the failure event's cause / blame, where the control plane records them
    blame: str = ""
    backoff_s: float = 0.0
    grace_waited_s: float = 0.0
    inject_to_running_s: float | None = None
    detect_s: float | None = None
    decide_s: float | None = None  # observed -> decided
    control_plane_s: float | None = None
    start_s: float | None = None  # placed -> running
    agent_detect_s: float | None = None  # agent faults: SIGKILL/SIGSTOP -> first node event
    agent_lost_s: float | None = None  # agent faults: -> the "node ... lost" event
    new_nodes: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    s = sorted(values)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def server_flags(extra: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The server options to use, the wanted ones it lacks, and notes."""
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    help_text = subprocess.run(
        [CORRAL, "server", "--help"], capture_output=True, text=True, env=env, timeout=60
    ).stdout
    options = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
    flags, missing, notes = [], [], []
    for flag, value in WANTED_FLAGS:
        if flag in options:
            flags += [flag, value]
        else:
            missing.append(flag)
            near = sorted(o for o in options if flag.split("-")[-1].rstrip("s") in o)
            notes.append(f"`corral server` has no {flag}" + (f" (it has {', '.join(near)})" if near else ""))
    return [*flags, *extra], missing, notes


class Bench:
    def __init__(self, args: argparse.Namespace, cluster: LiveCluster, events: EventLog) -> None:
        self.args = args
        self.cluster = cluster
        self.events = events
        assert cluster.api is not None
        self.api: Api = cluster.api
        self.deadline = time.monotonic() + args.deadline_s
        self.records: list[FaultRecord] = []
        self.notes: list[str] = []
        self.jobs: list[str] = []
        self.dropped: dict[str, str] = {}
        self._unrecovered_in_a_row: dict[str, int] = {}
        self._clear_health_ok: bool | None = None
        self.fresh_gangs = 0  # jobs started anew: a grown restart backoff, or crashes enough to blame
        self.jobs_ended = 0  # jobs that ended (FAILED) instead of recovering

    # ------------------------------------------------------------------------- the job

    def submit(self) -> str:
        a = self.args
        ckpt = Path(self.cluster.root) / "checkpoints" / str(len(self.jobs) + 1)
        spec = job_pb2.JobSpec(
            name=f"recovery-bench-{len(self.jobs) + 1}",
            command=[
                sys.executable,
                str(REPO / "examples" / "train.py"),
                "--steps",
                "100000000",
                "--step-sleep",
                str(a.step_sleep),
                "--checkpoint-every",
                "200",
                "--log-every",
                "100000",
            ],
            workers=a.workers,
            devices_per_worker=a.devices_per_worker,
            max_restarts=100,
            checkpoint_dir=str(ckpt),
            working_dir=str(REPO),
        )
        job = self.api.jobs.Submit(job_pb2.SubmitJobRequest(spec=spec, owner="recovery-bench"), timeout=10)
        job_id: str = job.id
        self.jobs.append(job_id)
        self.wait_running(job_id, 0, timeout=90)
        return job_id

    def running(self, job_id: str, after_attempt: int) -> job_pb2.Job | None:
        """The job once RUNNING on an attempt after `after_attempt` with every worker running."""
        job = self.api.job(job_id)
        state = state_name(job.state)
        if state in TERMINAL:
            raise JobEnded(f"job ended {state}: {job.reason}")
        if state != "RUNNING" or not job.attempts:
            return None
        attempt = job.attempts[-1]
        if attempt.number <= after_attempt or not all(w.phase == "running" for w in attempt.workers):
            return None
        return job

    def wait_running(self, job_id: str, after_attempt: int, timeout: float) -> job_pb2.Job:
        return wait_for(
            lambda: self.running(job_id, after_attempt),
            timeout,
            f"job {job_id} RUNNING on an attempt after {after_attempt}",
            interval=0.05,
        )

    # ------------------------------------------------------------------------- rounds

    def run(self) -> None:
        job_id = self.submit()
        kinds = list(self.args.kind_list)
        i = crashes = 0
        while len(self.records) < self.args.faults:
            live = [k for k in kinds if k not in self.dropped]
            if not live:
                self.notes.append("every fault kind was dropped; stopped early")
                break
            if time.monotonic() + self.args.round_timeout_s > self.deadline:
                self.notes.append(
                    f"--deadline-s {self.args.deadline_s:g} reached after {len(self.records)} faults"
                )
                break
            kind = live[i % len(live)]
            i += 1
            record = self.round(len(self.records) + 1, kind, job_id)
            self.records.append(record)
            self.print_round(record)
            if record.recovered:
                self._unrecovered_in_a_row[kind] = 0
            else:
                n = self._unrecovered_in_a_row[kind] = self._unrecovered_in_a_row.get(kind, 0) + 1
                if n >= self.args.give_up_after:
                    self.dropped[kind] = f"not recovered {n} times in a row: {record.outcome}"
            crashes = crashes + 1 if kind == "crash" else crashes
            if record.outcome.startswith("job ended"):
                self.jobs_ended += 1
                job_id, crashes = self.submit(), 0  # the old one is over: carry on with a fresh gang
            elif record.backoff_s > self.args.max_backoff_s or crashes >= self.args.crashes_per_gang:
                # The restart backoff grows with consecutive failures (only a long run resets it),
                # and a job that fails the same way on several healthy hardware sets is failed
                # for good (blamed on the job): a fresh gang meets the next fault as a job that
                # ran for hours would, so no fault pays for the ones injected before it.
                self.fresh_gangs += 1
                self.cancel(job_id)
                job_id, crashes = self.submit(), 0
        self.cancel(job_id)

    def cancel(self, job_id: str) -> None:
        with contextlib.suppress(grpc.RpcError):
            req = job_pb2.CancelJobRequest(id=job_id, reason="recovery benchmark: next gang")
            self.api.jobs.Cancel(req, timeout=10)

    def round(self, index: int, kind: str, job_id: str) -> FaultRecord:
        job = self.wait_running(job_id, 0, timeout=60)
        attempt = job.attempts[-1]
        worker = attempt.workers[(index - 1) % len(attempt.workers)]
        node = worker.node_name
        device = worker.device_indices[(index - 1) % len(worker.device_indices)]
        rec = FaultRecord(
            index=index,
            kind=kind,
            node=node,
            device=device if kind in DEVICE_FAULTS else None,
            rank=worker.rank,
            job_id=job_id,
            attempt_before=attempt.number,
        )
        agent = self.cluster.agents[node]
        try:
            if kind in DEVICE_FAULTS:
                rec.t_inject = time.time()
                req = node_pb2.InjectFaultRequest(node_name=node, device_index=device, fault=kind)
                self.api.nodes.InjectFault(req, timeout=10)
            elif kind == "crash":
                proc = worker_of(agent, worker.workload_id)
                if proc is None:
                    raise BenchError(f"no process for workload {worker.workload_id} under agent {node}")
                rec.t_inject = time.time()
                os.kill(proc.pid, signal.SIGKILL)
            elif kind == "agent-kill":
                orphans = agent.workers()
                rec.t_inject = time.time()
                os.kill(agent.pid, signal.SIGKILL)
                agent.popen.wait(10)
                kill_groups(orphans)  # the machine died: its workers with it
            elif kind == "agent-hang":
                rec.t_inject = time.time()
                os.kill(agent.pid, signal.SIGSTOP)
            else:
                raise BenchError(f"unknown fault kind {kind!r}")
            try:
                after = self.wait_running(job_id, attempt.number, timeout=self.args.round_timeout_s)
            except JobEnded as exc:
                rec.outcome = str(exc)
            except ClusterError:
                rec.outcome = (
                    f"not running again within {self.args.round_timeout_s:g} s "
                    f"(state {state_name(self.api.job(job_id).state)})"
                )
            else:
                rec.recovered = True
                rec.attempt_after = after.attempts[-1].number
                rec.new_nodes = [w.node_name for w in after.attempts[-1].workers]
                rec.outcome = f"attempt {rec.attempt_before} → {rec.attempt_after}"
                self.await_event(job_id, rec)
            self.measure(rec)
        finally:
            self.restore(kind, node, device)
        return rec

    def await_event(self, job_id: str, rec: FaultRecord) -> None:
        """Wait for Watch to deliver the RUNNING event of the new attempt (it is already true)."""
        prefix = f"attempt {rec.attempt_after}:"

        def seen() -> bool:
            return any(
                e.kind == "state" and e.state == "RUNNING" and e.message.startswith(prefix)
                for e in self.events.job_events(job_id, rec.t_inject)
            )

        with contextlib.suppress(ClusterError):
            wait_for(seen, 10, "the RUNNING event", interval=0.05)

    def measure(self, rec: FaultRecord) -> None:
        job_events = self.events.job_events(rec.job_id, rec.t_inject)
        merged = {e.id: e for e in job_events}
        for e in self.events.cluster_events(rec.t_inject):
            merged[e.id] = e if e.data or e.id not in merged else merged[e.id]
        events = sorted(merged.values(), key=lambda e: e.id)
        states = [e for e in events if e.kind == "state" and e.job_id == rec.job_id]
        decided = next((e for e in states if e.state != "RUNNING"), None)
        placed = next((e for e in states if decided and e.id > decided.id and e.state == "PLACED"), None)
        running = next((e for e in states if placed and e.id > placed.id and e.state == "RUNNING"), None)

        # What the control plane heard about the fault: the agent's health report for a device,
        # the stream's end or silence for an agent (not its own note of an InjectFault call).
        node_kinds = ("node",) if rec.kind in AGENT_FAULTS else ("health",)

        def about_it(e: Event) -> bool:
            if e.kind in node_kinds and e.node_name == rec.node:
                return True
            return e.job_id == rec.job_id and e.kind in ("failure", "worker", "recovery")

        horizon = decided.at if decided else math.inf
        observed = min(
            (e for e in events if about_it(e) and e.at <= horizon),
            key=lambda e: (e.at, e.id),
            default=decided,
        )
        failure = next((e for e in events if e.kind == "failure" and e.job_id == rec.job_id), None)
        if failure is not None:
            rec.cause = str(failure.data.get("cause", "") or failure.message)
            rec.blame = str(failure.data.get("blame", ""))
            with contextlib.suppress(TypeError, ValueError):
                rec.backoff_s = float(failure.data.get("backoff_s") or 0.0)
        if rec.kind in AGENT_FAULTS:
            node_events = [e for e in events if e.kind == "node" and e.node_name == rec.node]
            if node_events:
                rec.agent_detect_s = node_events[0].at - rec.t_inject
            lost = next((e for e in node_events if " lost" in e.message), None)
            if lost is not None:
                rec.agent_lost_s = lost.at - rec.t_inject
        if observed is not None:
            rec.t_observed = observed.at
            rec.observed_by = f"{observed.kind}: {observed.message}"
            rec.detect_s = observed.at - rec.t_inject
        if decided is not None:
            rec.t_decided, rec.decided_state = decided.at, decided.state
            if rec.t_observed is not None:
                rec.decide_s = decided.at - rec.t_observed
        if placed is not None:
            rec.t_placed = placed.at
        if running is not None and rec.recovered:
            rec.t_running = running.at
            rec.inject_to_running_s = running.at - rec.t_inject
            if rec.t_placed is not None:
                rec.start_s = running.at - rec.t_placed
        if rec.t_placed is not None and rec.t_observed is not None and rec.recovered:
            if rec.kind in AGENT_FAULTS and rec.t_decided is not None:
                # The node grace period is policy, not latency: an agent back within it keeps its work.
                rec.grace_waited_s = min(self.args.node_grace_s, max(0.0, rec.t_decided - rec.t_observed))
            rec.control_plane_s = rec.t_placed - rec.t_observed - rec.backoff_s - rec.grace_waited_s

    def restore(self, kind: str, node: str, device: int) -> None:
        """Make the faulted node whole again, so the next round has the whole cluster."""
        cluster, api = self.cluster, self.api
        agent = cluster.agents[node]
        if kind == "agent-kill":
            kill_groups(agent.workers())
            cluster.start_agent(node)
        elif kind == "agent-hang":
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent.pid, signal.SIGCONT)
        elif kind in DEVICE_FAULTS:
            with contextlib.suppress(grpc.RpcError):
                req = node_pb2.InjectFaultRequest(node_name=node, device_index=device, fault="clear")
                api.nodes.InjectFault(req, timeout=10)
        try:
            api.nodes.ClearHealth(
                node_pb2.ClearHealthRequest(name=node, device_index=-1, reason="recovery benchmark"),
                timeout=10,
            )
            self._clear_health_ok = True
        except grpc.RpcError as exc:
            if self._clear_health_ok is None:
                self.notes.append(
                    f"NodeService.ClearHealth failed ({exc.code().name}): nodes stay as faulted"
                )
            self._clear_health_ok = False
        with contextlib.suppress(grpc.RpcError):
            api.nodes.Uncordon(node_pb2.NodeActionRequest(name=node, reason="recovery benchmark"), timeout=10)
        try:
            cluster.wait_ready([node], timeout=60)
        except ClusterError as exc:
            if kind != "agent-kill" or cluster.agents[node].alive():
                raise
            self.notes.append(f"a fresh agent for {node} did not start ({exc}); started another")
            cluster.start_agent(node)
            cluster.wait_ready([node], timeout=60)

    def print_round(self, r: FaultRecord) -> None:
        def f(x: float | None) -> str:
            return f"{x:6.2f}" if x is not None else "     -"

        where = f"{r.node}" + (f"[{r.device}]" if r.device is not None else "")
        print(
            f"{r.index:3d} {r.kind:<10} {where:<10} detect {f(r.detect_s)}  control plane "
            f"{f(r.control_plane_s)}  start {f(r.start_s)}  inject→running {f(r.inject_to_running_s)}  "
            f"{r.outcome}",
            flush=True,
        )


# ----------------------------------------------------------------------------- summary

METRICS = (
    ("inject_to_running", "inject_to_running_s"),
    ("detect", "detect_s"),
    ("control_plane", "control_plane_s"),
    ("start", "start_s"),
    ("decide", "decide_s"),
    ("backoff", "backoff_s"),
)


def stats(records: list[FaultRecord]) -> dict[str, Any]:
    ok = [r for r in records if r.recovered]
    out: dict[str, Any] = {"injected": len(records), "recovered": len(ok)}
    for name, attr in METRICS:
        values = [v for r in ok if (v := getattr(r, attr)) is not None]
        out[f"{name}_p50_s"] = round(percentile(values, 50), 4) if values else None
        out[f"{name}_p99_s"] = round(percentile(values, 99), 4) if values else None
        out[f"{name}_max_s"] = round(max(values), 4) if values else None
    return out


def summary(bench: Bench, args: argparse.Namespace, command: str, flags: dict[str, Any]) -> dict[str, Any]:
    records = bench.records
    overall = stats(records)
    by_kind = {k: stats([r for r in records if r.kind == k]) for k in args.kind_list}
    dead = [
        round(r.agent_detect_s, 4) for r in records if r.kind == "agent-kill" and r.agent_detect_s is not None
    ]
    hung = [
        round(r.agent_detect_s, 4) for r in records if r.kind == "agent-hang" and r.agent_detect_s is not None
    ]
    lost = [
        round(r.agent_lost_s, 4) for r in records if r.kind in AGENT_FAULTS and r.agent_lost_s is not None
    ]
    agent_goal = args.heartbeat_timeout_s + AGENT_DETECT_SLACK_S
    cp99 = overall["control_plane_p99_s"]
    agent_rounds = sum(r.kind in AGENT_FAULTS for r in records)
    goals = {
        "control_plane_p99_goal_s": CONTROL_PLANE_GOAL_S,
        "control_plane_p99_met": cp99 is not None and cp99 <= CONTROL_PLANE_GOAL_S,
        "agent_detect_goal_s": agent_goal,
        "agent_detect_met": (
            None
            if not agent_rounds
            else len(dead) + len(hung) == agent_rounds and all(x <= agent_goal for x in dead + hung)
        ),
        "all_recovered": bool(records) and overall["recovered"] == len(records),
    }
    return {
        "benchmark": "recovery",
        "command": command,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "quick": args.quick,
            "nodes": args.nodes,
            "devices_per_node": 8,
            "workers": args.workers,
            "devices_per_worker": args.devices_per_worker,
            "kinds": args.kind_list,
            "faults_requested": args.faults,
            "round_timeout_s": args.round_timeout_s,
            "server_flags": flags["used"],
            "server_flags_missing": flags["missing"],
        },
        "heartbeat_timeout_s": args.heartbeat_timeout_s,
        "node_grace_s": args.node_grace_s,
        "event_source": f"JobService.Watch + {bench.events.source}",
        "jobs": bench.jobs,
        "injected": overall["injected"],
        "recovered": overall["recovered"],
        **{k: v for k, v in overall.items() if k not in ("injected", "recovered")},
        "by_kind": by_kind,
        "dead_agent_detect_s": dead,
        "hung_agent_detect_s": hung,
        "agent_lost_s": lost,
        "goals": goals,
        "dropped_kinds": bench.dropped,
        "fresh_gangs": bench.fresh_gangs,
        "jobs_ended": bench.jobs_ended,
        "notes": [*flags["notes"], *bench.notes],
        "faults": [asdict(r) for r in records],
    }


def _s(x: float | None) -> str:
    return f"{x:.2f} s" if x is not None else "-"


def table_rows(r: dict[str, Any]) -> list[str]:
    rows = [
        "| fault | recovered | inject→running p50 | p99 | detection p50 | p99 | control plane p50 | p99 "
        "| agent+worker start p50 | p99 | restart backoff p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, s in [*r["by_kind"].items(), ("**all**", r)]:
        if not s["injected"]:
            continue
        rows.append(
            f"| {kind} | {s['recovered']}/{s['injected']} | {_s(s['inject_to_running_p50_s'])} "
            f"| {_s(s['inject_to_running_p99_s'])} | {_s(s['detect_p50_s'])} | {_s(s['detect_p99_s'])} "
            f"| {_s(s['control_plane_p50_s'])} | {_s(s['control_plane_p99_s'])} | {_s(s['start_p50_s'])} "
            f"| {_s(s['start_p99_s'])} | {_s(s['backoff_p50_s'])} |"
        )
    return rows


def verdicts(r: dict[str, Any]) -> str:
    g = r["goals"]

    def word(v: bool | None) -> str:
        return "not measured" if v is None else "met" if v else "NOT met"

    agents = r["dead_agent_detect_s"] + r["hung_agent_detect_s"]
    worst = f"worst {max(agents):.2f} s" if agents else "no agent faults"
    return (
        f"Control plane's share p99 ≤ {g['control_plane_p99_goal_s']:g} s: "
        f"{word(g['control_plane_p99_met'])} ({_s(r['control_plane_p99_s'])}). Dead/hung-agent detection "
        f"≤ heartbeat timeout {r['heartbeat_timeout_s']:g} s + {AGENT_DETECT_SLACK_S:g} s: "
        f"{word(g['agent_detect_met'])} ({worst})."
    )


def markdown(r: dict[str, Any]) -> str:
    m, st = r["machine"], r["settings"]
    lines = [
        "# Recovery latency (live cluster)",
        "",
        f"Run {r['finished_at']} with `{r['command']}` on {m['nproc']} × {m['cpu_model']}, "
        f"Python {m['python']}.",
        "",
        f"{st['nodes']} simulated nodes × {st['devices_per_node']} devices, a {st['workers']}-worker gang "
        f"({st['devices_per_worker']} devices each) of examples/train.py; heartbeat timeout "
        f"{r['heartbeat_timeout_s']:g} s, node grace {r['node_grace_s']:g} s, server flags "
        f"`{' '.join(st['server_flags']) or '(none)'}`. Events from {r['event_source']}.",
        "",
        *table_rows(r),
        "",
        "Detection: injection → the control plane's first event about it. Control plane: that event → "
        "the next attempt PLACED, minus configured waits (restart backoff, and for agent faults the node "
        "grace period). Start: PLACED → RUNNING (every worker started). Injection → running includes "
        "the restart backoff the control plane reported in its failure event. A fresh gang takes the "
        "next fault after a round with a backoff above --max-backoff-s or after --crashes-per-gang "
        "crash faults (a job that fails the same way on several healthy hardware sets is failed, "
        f"blamed on the job): {r['fresh_gangs']} fresh gangs here, {r['jobs_ended']} jobs ended "
        "instead of recovering.",
        "",
        verdicts(r),
        "",
        f"Dead agents (SIGKILL → first node event): {r['dead_agent_detect_s']}; hung agents (SIGSTOP → "
        f"silent past the timeout): {r['hung_agent_detect_s']}; either → the node declared lost: "
        f"{r['agent_lost_s']}. A worker counts as started when its agent has spawned the process "
        "(not when the script has loaded its checkpoint).",
    ]
    if r["dropped_kinds"]:
        lines += ["", "Dropped kinds: " + "; ".join(f"{k}: {v}" for k, v in r["dropped_kinds"].items())]
    if r["notes"]:
        lines += ["", "Notes: " + "; ".join(r["notes"]) + "."]
    lines += [
        "",
        "| # | fault | node[dev] | decided as | detect | control plane | start | inject→running | outcome |",
        "|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for f in r["faults"]:
        where = f["node"] + (f"[{f['device']}]" if f["device"] is not None else "")
        lines.append(
            f"| {f['index']} | {f['kind']} | {where} | {f['decided_state'] or '-'} | {_s(f['detect_s'])} "
            f"| {_s(f['control_plane_s'])} | {_s(f['start_s'])} | {_s(f['inject_to_running_s'])} "
            f"| {f['outcome']} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--faults", type=int, default=None, help="faults to inject (default 60; --quick: 6)")
    p.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated, cycled (default {','.join(KINDS)})"
    )
    p.add_argument("--nodes", type=int, default=None, help="simulated 8-device nodes (default 6; --quick: 4)")
    p.add_argument("--workers", type=int, default=2, help="workers in the gang")
    p.add_argument("--devices-per-worker", type=int, default=8)
    p.add_argument("--step-sleep", type=float, default=0.05, help="the training script's sleep per step")
    p.add_argument("--heartbeat-timeout-s", type=float, default=3.0)
    p.add_argument("--node-grace-s", type=float, default=3.0)
    p.add_argument("--server-arg", action="append", default=[], help="extra `corral server` argument")
    p.add_argument(
        "--round-timeout-s",
        type=float,
        default=None,
        help="wait this long for the job to run again (default: grace + timeout + 20 s)",
    )
    p.add_argument(
        "--max-backoff-s",
        type=float,
        default=0.0,
        help="start a fresh gang after a round whose restart backoff exceeded this (default 0: after any)",
    )
    p.add_argument(
        "--crashes-per-gang",
        type=int,
        default=2,
        help="start a fresh gang after this many crash faults (a job crashing the same way on 3 healthy "
        "hardware sets is failed, blamed on the job)",
    )
    p.add_argument(
        "--give-up-after", type=int, default=2, help="drop a kind after this many unrecovered faults in a row"
    )
    p.add_argument(
        "--deadline-s", type=float, default=None, help="stop injecting after this (600; quick 240)"
    )
    p.add_argument("--json", default=str(HERE / "results" / "recovery.json"), help="report path (.md beside)")
    p.add_argument("--keep-dir", action="store_true", help="keep the cluster's temporary directory")
    p.add_argument("--quick", action="store_true", help="6 faults on 4 nodes: a smoke run")
    args = p.parse_args(argv)
    args.faults = args.faults if args.faults is not None else 6 if args.quick else 60
    args.nodes = args.nodes if args.nodes is not None else 4 if args.quick else 6
    args.deadline_s = args.deadline_s if args.deadline_s is not None else 240.0 if args.quick else 600.0
    if args.round_timeout_s is None:
        args.round_timeout_s = args.heartbeat_timeout_s + args.node_grace_s + 20.0
    args.kind_list = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in args.kind_list if k not in KINDS]
    if unknown or not args.kind_list:
        p.error(f"--kinds: unknown {unknown}; choose from {', '.join(KINDS)}")
    if min(args.faults, args.workers, args.give_up_after, args.crashes_per_gang) < 1:
        p.error("--faults, --workers, --give-up-after and --crashes-per-gang must be ≥ 1")
    if args.nodes < args.workers + 1:
        p.error("--nodes: need at least one node more than --workers, to move a worker to")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.recovery", *(sys.argv[1:] if argv is None else argv)])

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return run(args, command)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, command: str) -> int:
    used, missing, notes = server_flags(args.server_arg)
    flags = {"used": used, "missing": missing, "notes": notes}
    for note in notes:
        print(f"note: {note}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="corral-recovery-"))
    server = [
        "--heartbeat-timeout",
        str(args.heartbeat_timeout_s),
        "--node-grace",
        str(args.node_grace_s),
        *used,
    ]
    code = 0
    try:
        with LiveCluster(root, server) as cluster:
            cluster.start_server()
            nodes = [f"rb-{i:02d}" for i in range(args.nodes)]
            for name in nodes:
                cluster.start_agent(name)
            cluster.wait_ready(nodes, timeout=120)
            assert cluster.api is not None
            events = EventLog(cluster.api, cluster.data_dir)
            bench = Bench(args, cluster, events)
            try:
                bench.run()
            except KeyboardInterrupt:
                bench.notes.append("interrupted")
                code = 1
            except (ClusterError, BenchError, grpc.RpcError) as exc:
                bench.notes.append(f"harness error: {exc}")
                print(f"harness error: {exc}", file=sys.stderr)
                code = 1
            finally:
                events.close()
    finally:
        if args.keep_dir:
            print(f"cluster directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result = summary(bench, args, command, flags)
    json_path = Path(args.json)
    write_reports(result, json_path, json_path.with_suffix(".md"), markdown)
    print()
    print("\n".join(table_rows(result)))
    print()
    print(verdicts(result))
    print(f"dead-agent detection: {result['dead_agent_detect_s']}; hung: {result['hung_agent_detect_s']}")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"wrote {json_path} and {json_path.with_suffix('.md')}")
    return code if bench.records else 1


if __name__ == "__main__":
    sys.exit(main())
