"""The jobs part of benchmarks/dashboard_seed.py: every row and event a job's history leaves.

Jobs are sized 1 device to 512 × 8 (40% one worker of 1-8 devices, 40% 2-8 workers, 18%
16-64, 2% 128-512, 8 devices a worker beyond the first class); 62% succeeded, 12% failed, 6%
cancelled, 14% running (on healthy, uncordoned nodes, no two gangs sharing a device; a job that
finds no room waits instead), 6% pending. Attempts fail at one interruption per 20,000
device-hours (the order of Llama 3's one per 50,000 GPU-hours for hardware, plus the jobs' own
errors), with causes weighted like that paper's Table 5. Each failure is written as
recovery.py writes one: the attempt's cause, blame, lost/detect/restart seconds, a failures row
with the classified signals, the failure and recovery events, and before them the health or
node events that detected it. Checkpoints: ranks 0-7 of each gang report one every 30 min (gangs
of 16 and more) or hour, the last 12 of each attempt kept.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from corral.v1 import common_pb2
from google.protobuf import json_format

from benchmarks.dashboard_seed_fleet import (
    DAY_S,
    DBE,
    DEVICES_PER_NODE,
    FAILURE_CAUSES,
    HOUR_S,
    RACK_MODELS,
    DeviceModel,
    HealthReport,
    NodePlan,
    weighted,
)
from scheduler.reliability.signals import Kind, Observation, Signal, classify, from_health_event
from scheduler.server.faults.health import describe_health_event
from scheduler.server.faults.recovery import signal_to_dict
from scheduler.spec import parse_spec, spec_to_proto

INTERRUPTIONS_PER_DEVICE_HOUR = 1 / 20_000
MAX_FAILURES_PER_JOB = 15
CHECKPOINT_RANKS = 8
CHECKPOINTS_KEPT_PER_ATTEMPT = 12
NODE_GRACE_S = 30.0
HANG_TIMEOUT_S = 600.0
EXIT_CODES = (1, 1, 1, 2, 134, 137, 139)
OWNERS = ("ana", "bo", "chen", "dara", "eli", "fang", "gus", "hana", "ivan", "jun")
JOB_NAMES = (
    "llm-pretrain",
    "llm-sft",
    "vit-train",
    "diffusion",
    "rl-policy",
    "asr-conformer",
    "recsys",
    "moe",
)
QUEUES = ("prod", "research", "batch")
STATES = ((62, "SUCCEEDED"), (12, "FAILED"), (6, "CANCELLED"), (14, "RUNNING"), (6, "PENDING"))

# (at, kind, job_id, node_name, state, message, data): an events row without its id.
Event = tuple[float, str, str | None, str | None, str | None, str, dict[str, Any]]
Gang = list[tuple[NodePlan, list[int]]]


@dataclass(frozen=True)
class SizeClass:
    workers: tuple[int, ...]
    devices_per_worker: tuple[int, ...]
    hours: tuple[float, float]  # duration range, drawn log-uniform


SIZES = (  # (weight, size class)
    (40, SizeClass((1,), (1, 2, 4, 8), (0.5, 48))),
    (40, SizeClass((2, 4, 8), (8,), (4, 96))),
    (18, SizeClass((16, 32, 64), (8,), (12, 240))),
    (2, SizeClass((128, 256, 512), (8,), (48, 600))),
)


@dataclass
class JobRows:
    jobs: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    placements: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class Allocator:
    """Healthy, uncordoned nodes of each model for running gangs, rack by rack, no overlaps;
    single workers of fewer than 8 devices share nodes."""

    def __init__(self, nodes: list[NodePlan]) -> None:
        self.free: dict[str, list[NodePlan]] = {}
        for n in reversed(nodes):  # pop() from the end takes racks in order
            if n.placeable:
                self.free.setdefault(n.model.model, []).append(n)
        self.partial: dict[str, tuple[NodePlan, list[int]]] = {}

    def take(self, model: str, workers: int, per_worker: int) -> Gang | None:
        pool = self.free.get(model, [])
        if per_worker < DEVICES_PER_NODE:
            node, left = self.partial.get(model, (None, []))
            if node is None or len(left) < per_worker:
                if not pool:
                    return None
                node, left = pool.pop(), list(range(DEVICES_PER_NODE))
            self.partial[model] = (node, left[per_worker:])
            return [(node, left[:per_worker])]
        if len(pool) < workers:
            return None
        return [(pool.pop(), list(range(DEVICES_PER_NODE))) for _ in range(workers)]


@dataclass
class Run:
    """One job being written: what its attempts need to know about it."""

    row: dict[str, Any]
    model: DeviceModel
    workers: int
    per_worker: int
    interval_s: float
    steps_per_s: float
    step: int = 0


class JobHistory:
    def __init__(self, rng: random.Random, nodes: list[NodePlan], now: float, days: float) -> None:
        self.rng = rng
        self.now = now
        self.start = now - days * DAY_S
        self.by_model: dict[str, list[NodePlan]] = {}
        for n in nodes:
            self.by_model.setdefault(n.model.model, []).append(n)
        self.allocator = Allocator(nodes)
        self.out = JobRows()
        self._specs: dict[tuple[str, int, int, str, str], dict[str, Any]] = {}
        self._ids: set[str] = set()

    # --- one job ---------------------------------------------------------------------

    def add(self) -> None:
        rng = self.rng
        size: SizeClass = weighted(rng, SIZES)
        model = rng.choice(RACK_MODELS)
        if model.model not in self.by_model:  # a small fleet may lack some models
            model = self.by_model[rng.choice(sorted(self.by_model))][0].model
        workers = min(rng.choice(size.workers), max(1, len(self.by_model[model.model]) // 2))
        per_worker = rng.choice(size.devices_per_worker)
        hours = math.exp(rng.uniform(math.log(size.hours[0]), math.log(size.hours[1])))
        duration = min(hours * HOUR_S, (self.now - self.start) * 0.8)
        state: str = weighted(rng, STATES)
        placed = self.allocator.take(model.model, workers, per_worker) if state == "RUNNING" else None
        if state == "RUNNING" and placed is None:
            state = "PENDING"
        name = f"{rng.choice(JOB_NAMES)}-{rng.randrange(1000):03d}"
        queue, owner = rng.choice(QUEUES), rng.choice(OWNERS)
        if state == "PENDING":
            start = end = created = self.now - rng.uniform(60, 12 * HOUR_S)
        elif state == "RUNNING":
            start, end = self.now - rng.uniform(0.05, 1.0) * duration, self.now
            created = start - rng.uniform(5, 1800)
        else:
            end = rng.uniform(self.start + duration + 1800, self.now - 600)
            start = end - duration
            created = start - rng.uniform(5, 1800)
        job_id = self._job_id()
        row: dict[str, Any] = {
            "id": job_id,
            "name": name,
            "owner": owner,
            "spec": self._spec(name, workers, per_worker, model, queue),
            "state": state,
            "reason": "waiting for placement: no free devices of the requested model",
            "queue": queue,
            "priority": 100 if queue == "prod" else 0,
            "restarts": 0,
            "hardware_restarts": 0,
            "lost_device_s": 0.0,
            "current_attempt": 0,
            "created_at": created,
            "updated_at": end,
        }
        self.out.jobs.append(row)
        self.out.events.append((created, "state", job_id, None, "PENDING", f"submitted by {owner}", {}))
        if state != "PENDING":
            run = Run(
                row, model, workers, per_worker, 1800.0 if workers >= 16 else 3600.0, rng.uniform(0.2, 2)
            )
            self._attempts(run, start, end, placed)

    def _job_id(self) -> str:
        while (job_id := f"j-{self.rng.getrandbits(32):08x}") in self._ids:
            pass
        self._ids.add(job_id)
        return job_id

    def _spec(
        self, name: str, workers: int, per_worker: int, model: DeviceModel, queue: str
    ) -> dict[str, Any]:
        """The validated spec as the control plane stores it (MessageToDict of the JobSpec)."""
        key = (name, workers, per_worker, model.model, queue)
        if key not in self._specs:
            spec = parse_spec(
                {
                    "name": name,
                    "command": "python train.py --config configs/run.yaml",
                    "workers": workers,
                    "devices_per_worker": per_worker,
                    "accelerator": {"vendors": [model.vendor], "models": [model.model]},
                    "topology": {"pack": "block" if workers >= 16 else "rack"},
                    "queue": queue,
                    "priority": 100 if queue == "prod" else 0,
                    "max_restarts": 10,
                    "checkpoint_dir": f"/ckpt/{name}",
                    "checkpoint_interval": "auto",
                    "hang_timeout": "10m",
                }
            )
            self._specs[key] = json_format.MessageToDict(
                spec_to_proto(spec), preserving_proto_field_name=True
            )
        return self._specs[key]

    def _failure_times(self, run: Run, start: float, end: float) -> list[float]:
        devices = run.workers * run.per_worker
        expected = devices * (end - start) / HOUR_S * INTERRUPTIONS_PER_DEVICE_HOUR
        count = min(MAX_FAILURES_PER_JOB, poisson(self.rng, expected))
        if run.row["state"] == "FAILED":
            count = max(1, count)
        times, earliest = [], start + 300
        for t in sorted(self.rng.uniform(start + 300, end - 60) for _ in range(count)):
            t = max(t, earliest)
            if t >= end - 60:
                break
            times.append(t)
            earliest = t + 180  # room for detection, backoff and a restart
        return times

    def _attempts(self, run: Run, start: float, end: float, placed: Gang | None) -> None:
        row, state = run.row, run.row["state"]
        fail_times = self._failure_times(run, start, end)
        if state == "FAILED" and not fail_times:
            row["state"] = state = "CANCELLED"  # too short to have failed; cancelled instead
        begin, avoid = start, set[str]()
        attempts = len(fail_times) + (0 if state == "FAILED" else 1)
        ending = {"SUCCEEDED": "succeeded", "CANCELLED": "cancelled"}.get(state, "")
        for number in range(1, attempts + 1):
            last = number == attempts
            failing = number <= len(fail_times)
            live = last and state == "RUNNING"
            gang = placed if live and placed else self._gang(run, avoid)
            until = fail_times[number - 1] if failing else end
            self._attempt(run, number, gang, begin, until, live, "" if failing else ending)
            if failing:
                gives_up = last and state == "FAILED"
                begin, failed_node = self._failure(run, number, gang, until, gives_up)
                avoid.add(failed_node)
                row["updated_at"] = begin
        current = row["current_attempt"]
        outcome = {"SUCCEEDED": "all workers exited 0", "CANCELLED": f"cancelled by {row['owner']}"}
        if state in outcome:
            row["reason"], row["updated_at"] = outcome[state], end
            self.out.events.append((end, "state", row["id"], None, state, row["reason"], {}))
        elif state == "FAILED":
            row["reason"] = f"attempt {current} failed and no restarts are left"
            self.out.events.append(
                (row["updated_at"] + 0.01, "state", row["id"], None, state, row["reason"], {})
            )
        else:
            row["reason"] = f"attempt {current}: all {run.workers} workers started"

    def _gang(self, run: Run, avoid: set[str]) -> Gang:
        """A finished attempt's gang: consecutive nodes of the model from a random rack, past the
        nodes it failed on (finished attempts may share nodes: they ran at other times)."""
        pool = self.by_model[run.model.model]
        first = self.rng.randrange(len(pool))
        gang: Gang = []
        for i in range(first, first + len(pool)):
            node = pool[i % len(pool)]
            if node.name not in avoid:
                gang.append((node, list(range(run.per_worker))))
                if len(gang) == run.workers:
                    break
        return gang

    # --- one attempt -----------------------------------------------------------------

    def _attempt(
        self, run: Run, number: int, gang: Gang, begin: float, until: float, live: bool, outcome: str
    ) -> None:
        """Attempt `number` from `begin` to `until`; `outcome` for one that ends the job well
        ("succeeded", "cancelled"); a failing one gets its outcome from _failure."""
        rng, row, ev = self.rng, run.row, self.out.events
        job_id = row["id"]
        row["current_attempt"] = number
        succeeded = outcome == "succeeded"
        where = ", ".join(f"rank {r}→{n.name}{idx}" for r, (n, idx) in enumerate(gang[:4]))
        more = f", … ({len(gang)} workers)" if len(gang) > 4 else ""
        ev.append((begin, "state", job_id, None, "PLACED", f"attempt {number} placed: {where}{more}", {}))
        started = begin + rng.uniform(1, 20)
        resume = run.step
        self.out.attempts.append(
            {
                "job_id": job_id,
                "number": number,
                "started_at": begin,
                "ended_at": None if live else until + 2,
                "outcome": outcome,
                "master_addr": gang[0][0].address.rsplit(":", 1)[0],
                "master_port": 29500 + rng.randrange(1000),
                "cause": "",
                "blame": "",
                "failed_at": None,
                "lost_s": 0.0,
                "detect_s": 0.0,
                "restart_s": 0.0,
                "resumed_from_step": resume,
                "resume_path": f"/ckpt/{row['name']}/step-{resume:08d}" if resume else "",
            }
        )
        for rank, (node, indices) in enumerate(gang):
            pid = rng.randrange(1000, 4_000_000)
            ev.append(
                (started + rng.uniform(0, 2), "worker", job_id, node.name, None,
                 f"rank {rank} running on {node.name} (pid {pid})", {})
            )  # fmt: skip
            if outcome:
                message, data = (
                    (f"rank {rank} on {node.name} exited with code 0", {"exit_code": 0, "signal": None})
                    if succeeded
                    else (
                        f"rank {rank} on {node.name} was killed by SIGTERM",
                        {"exit_code": None, "signal": 15},
                    )
                )
                ev.append((until + rng.uniform(0.5, 3), "worker", job_id, node.name, None, message, data))
            self.out.placements.append(
                {
                    "workload_id": f"{job_id}.{number}.{rank}",
                    "job_id": job_id,
                    "attempt": number,
                    "rank": rank,
                    "node_name": node.name,
                    "device_indices": indices,
                    "phase": "running" if live else "exited",
                    "exit_code": 0 if succeeded else None,
                    "signal": None if live or succeeded else 15,
                    "message": "",
                    "progress_step": run.step + int((until - started) * run.steps_per_s),
                    "checkpoint_step": 0,
                    "checkpoint_path": "",
                    "started_at": started,
                    "ended_at": None if live else until + 1,
                }
            )
        running_at = started + 2.5
        ev.append(
            (
                running_at,
                "state",
                job_id,
                None,
                "RUNNING",
                f"attempt {number}: all {len(gang)} workers started",
                {},
            )
        )
        if number > 1:
            self._recovered(run, number, gang, running_at)
        self._checkpoints(run, number, gang, started, until)

    def _recovered(self, run: Run, number: int, gang: Gang, running_at: float) -> None:
        previous = self.out.attempts[-2]
        previous["restart_s"] = running_at - previous["failed_at"]
        run.row["lost_device_s"] += previous["restart_s"] * sum(len(i) for _, i in gang)
        self.out.events.append(
            (
                running_at,
                "recovery",
                run.row["id"],
                None,
                None,
                f"attempt {number} running {previous['restart_s']:.2f} s after attempt {number - 1} "
                f"failed ({previous['cause']})",
                {
                    "attempt": number,
                    "restart_s": previous["restart_s"],
                    "detect_s": previous["detect_s"],
                    "resumed_from_step": self.out.attempts[-1]["resumed_from_step"],
                },
            )
        )

    def _checkpoints(self, run: Run, number: int, gang: Gang, started: float, until: float) -> None:
        rng, job_id, name = self.rng, run.row["id"], run.row["name"]
        base = run.step
        count = int((until - started) // run.interval_s)
        for k in range(max(0, count - CHECKPOINTS_KEPT_PER_ATTEMPT), count):
            at = started + (k + 1) * run.interval_s
            step = base + int((at - started) * run.steps_per_s)
            path = f"/ckpt/{name}/step-{step:08d}"
            size = rng.choice((2, 8, 40, 160)) * 2**30
            took = size / 2**30 * rng.uniform(0.2, 0.6)
            fields = {"step": step, "path": path, "size_bytes": size, "duration_s": took, "complete": True}
            for rank, (node, _) in enumerate(gang[:CHECKPOINT_RANKS]):
                stamp = at + rank * 0.05
                self.out.checkpoints.append(
                    {
                        "job_id": job_id,
                        "attempt": number,
                        "rank": rank,
                        "at": stamp,
                        "trigger": "periodic",
                        **fields,
                    }
                )
                self.out.events.append(
                    (stamp, "checkpoint", job_id, node.name, None,
                     f"rank {rank} checkpoint at step {step} ({size} B in {took:.3g} s, periodic)",
                     {"attempt": number, "rank": rank, "trigger": "periodic", **fields})
                )  # fmt: skip
            run.step = step

    # --- one failure -----------------------------------------------------------------

    def _failure(
        self, run: Run, number: int, gang: Gang, observed_at: float, gives_up: bool
    ) -> tuple[float, str]:
        """The failure that ends attempt `number`; returns when the next attempt is placed and
        the node the failure was on."""
        rng, row, ev = self.rng, run.row, self.out.events
        job_id = row["id"]
        rank = rng.randrange(len(gang))
        node, indices = gang[rank]
        kind = "exit" if gives_up else weighted(rng, FAILURE_CAUSES)
        if isinstance(kind, HealthReport) and run.model.vendor != "nvidia" and kind.cause.startswith("xid"):
            kind = DBE  # no XIDs outside NVIDIA
        cause, signals, hardware, detect_s = self._detected(
            kind, run, gang, rank, rng.choice(indices), observed_at
        )
        blame = signals[0].blame.value
        failed_at = observed_at + detect_s
        attempt = self.out.attempts[-1]
        lost_s = min(failed_at - attempt["started_at"], rng.uniform(0, run.interval_s))
        attempt.update(
            outcome=f"failed: {cause}",
            cause=cause,
            blame=blame,
            failed_at=failed_at,
            detect_s=detect_s,
            lost_s=lost_s,
            ended_at=failed_at + rng.uniform(1, 10),
        )
        row["lost_device_s"] += lost_s * run.workers * run.per_worker
        backoff = 0.0 if gives_up else float(min(60, 2 ** rng.randrange(0, 4)))
        self.out.failures.append(
            {
                "job_id": job_id,
                "attempt": number,
                "at": failed_at,
                "blame": blame,
                "cause": cause,
                "hardware": hardware,
                "hardware_healthy": blame != "hardware",
                "nodes": hardware,
                "signals": [signal_to_dict(s) for s in signals],
            }
        )
        action = "job FAILED" if gives_up else f"restart in {backoff:.3g} s"
        ev.append(
            (failed_at, "failure", job_id, min(hardware), None,
             f"attempt {number} failed: {cause}; blame {blame}; {action}",
             {"cause": cause, "blame": blame, "attempt": number, "action": "fail" if gives_up else "restart",
              "nodes": sorted({n.name for n, _ in gang}), "hardware": hardware,
              "signals": [s.reason for s in signals], "lost_s": lost_s, "backoff_s": backoff,
              "detect_s": detect_s, "observed_at": observed_at})
        )  # fmt: skip
        row["hardware_restarts" if blame == "hardware" else "restarts"] += 0 if gives_up else 1
        if not gives_up:
            ev.append(
                (failed_at + 0.01, "state", job_id, None, "RECOVERING",
                 f"{blame} failure: restart after {backoff:.3g} s", {})
            )  # fmt: skip
        for r, (n, _) in enumerate(gang):
            if r == rank and kind in ("exit", "signal"):
                continue  # its own exit was the failure, written by _detected
            ev.append(
                (failed_at + rng.uniform(0.5, 5), "worker", job_id, n.name, None,
                 f"rank {r} on {n.name} was killed by SIGTERM", {"exit_code": None, "signal": 15})
            )  # fmt: skip
        placed_at = failed_at + backoff + rng.uniform(0.05, 2.0)
        if not gives_up:
            ev.append(
                (placed_at, "recovery", job_id, None, None,
                 f"attempt {number + 1} placed {placed_at - failed_at:.2f} s after the failure"
                 + (f", resuming from step {run.step}" if run.step else ""),
                 {"attempt": number + 1, "spares": [], "resumed_from_step": run.step,
                  "waited_s": placed_at - failed_at})
            )  # fmt: skip
        return placed_at, node.name

    def _detected(
        self, kind: HealthReport | str, run: Run, gang: Gang, rank: int, device: int, observed_at: float
    ) -> tuple[str, list[Signal], list[str], float]:
        """The events that saw the failure; its cause, signals, hardware and detection time."""
        rng, ev, job_id = self.rng, self.out.events, run.row["id"]
        node = gang[rank][0]
        if isinstance(kind, HealthReport):
            event = common_pb2.HealthEvent()
            event.CopyFrom(kind.event)
            event.device_index = device
            signal = classify(from_health_event(event))
            ev.append((observed_at, "health", None, node.name, None, describe_health_event(node.name, event),
                       kind.data(device)))  # fmt: skip
            ev.append(
                (observed_at + 0.01, "health", None, node.name, None,
                 f"device {device} on {node.name}: HEALTHY → UNHEALTHY: {signal.reason}",
                 {"device": device, "from": "HEALTHY", "to": "UNHEALTHY", "reason": signal.reason,
                  "cause": kind.cause})
            )  # fmt: skip
            return kind.cause, [signal], [node.name], rng.uniform(0.05, 1.5)
        if kind == "heartbeat":
            silent = NODE_GRACE_S + rng.uniform(0.3, 1.5)
            silence = f"node {node.name} silent for 10 s (heartbeat timeout 10 s)"
            ev.append((observed_at + 10.2, "node", None, node.name, None, silence, {"silent_s": 10.2}))
            why = f"node {node.name} lost: no contact for {silent:.0f} s (grace period {NODE_GRACE_S:g} s)"
            ev.append((observed_at + silent, "node", None, node.name, None, why, {"silent_s": silent}))
            signal = classify(Observation(Kind.HEARTBEAT_LOST, message=why))
            return f"heartbeat lost: {why}", [signal], [node.name], silent
        if kind == "hang":
            silent = HANG_TIMEOUT_S + rng.uniform(0, 30)
            signal = classify(Observation(Kind.HANG, message=f"no progress for {silent:.0f} s"))
            return f"hang: no progress for {silent:.0f} s", [signal], sorted({n.name for n, _ in gang}), 0.3
        if kind == "exit":
            code = rng.choice(EXIT_CODES)
            cause = f"rank {rank} on {node.name} exited with code {code}"
            signal, data = classify(Observation(Kind.EXIT, code)), {"exit_code": code, "signal": None}
        else:
            cause = f"rank {rank} on {node.name} was killed by SIGKILL"
            signal, data = classify(Observation(Kind.SIGNAL, 9)), {"exit_code": None, "signal": 9}
        ev.append((observed_at, "worker", job_id, node.name, None, cause, data))
        return cause, [signal], [node.name], rng.uniform(0.05, 0.5)


def poisson(rng: random.Random, mean: float) -> int:
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
