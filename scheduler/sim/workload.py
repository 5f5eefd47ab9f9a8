"""A seeded heterogeneous workload (Gavel-style job classes) and ways to tell the engine about
each job's speed per model.

Gavel (Narayanan et al., OSDI'20) measured that models gain very differently from newer
accelerators: large language/transformer models several times, small CNNs and recommendation
models barely. The classes below use speedups of that kind relative to A100 80GB (our
reference); the Ascend figures are placeholders for "roughly A100-class", not measurements.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from scheduler.placement.request import PlacementRequest, Topology, TopologyLevel, WorkerShape
from scheduler.sim.engine import SimJob


@dataclass(frozen=True)
class JobClass:
    name: str
    weight: float  # share of arrivals
    devices: tuple[int, ...]  # total devices, chosen uniformly; > 8 means workers of 8
    mean_hours: float  # mean duration on the reference model (exponential)
    speed: Mapping[str, float]  # model -> throughput relative to A100 80GB
    nvidia_only: float = 0.0  # share of its jobs that run only on CUDA


GAVEL_CLASSES: tuple[JobClass, ...] = (
    JobClass("llm", 0.15, (8, 16), 3.0, {"H100 80GB": 3.0, "A100 80GB": 1.0, "Ascend 910B": 1.1}),
    JobClass("transformer", 0.25, (2, 4), 1.0, {"H100 80GB": 2.0, "A100 80GB": 1.0, "Ascend 910B": 0.9}),
    JobClass("cnn", 0.40, (1, 1, 2), 0.5, {"H100 80GB": 1.2, "A100 80GB": 1.0, "Ascend 910B": 0.9}, 0.3),
    JobClass("recsys", 0.20, (1,), 0.5, {"H100 80GB": 1.1, "A100 80GB": 1.0, "Ascend 910B": 0.8}, 0.5),
)


def gavel_jobs(
    n: int, devices: int, load: float, seed: int, classes: Sequence[JobClass] = GAVEL_CLASSES
) -> list[SimJob]:
    """`n` jobs arriving as a Poisson process sized so that, at reference speed, they would ask
    for `load` × `devices` devices on average. Jobs carry their true speeds (`SimJob.speed`)
    but no rates in their requests: `with_rates` adds those for a scheduler that uses them."""
    rng = random.Random(seed)
    total_w = sum(c.weight for c in classes)
    mean_demand = sum(
        c.weight / total_w * (sum(c.devices) / len(c.devices)) * c.mean_hours * 3600 for c in classes
    )
    rate = load * devices / mean_demand  # arrivals per second
    t = 0.0
    jobs: list[SimJob] = []
    for i in range(n):
        t += rng.expovariate(rate)
        c = rng.choices(classes, weights=[x.weight for x in classes])[0]
        total = rng.choice(c.devices)
        workers, per = (total // 8, 8) if total > 8 else (1, total)
        models = tuple(sorted(c.speed))
        if rng.random() < c.nvidia_only:
            models = tuple(m for m in models if not m.startswith("Ascend"))
        topology = Topology(TopologyLevel.RACK, required=True) if workers > 1 else Topology()
        job_id = f"{c.name}-{i:05d}"
        request = PlacementRequest(
            job_id, workers, WorkerShape(per, 1000, 8000 * per, 65536 * per), models=models, topology=topology
        )
        duration = rng.expovariate(1 / (c.mean_hours * 3600))
        jobs.append(SimJob.of_duration(job_id, t, request, duration, speed=dict(c.speed)))
    return jobs


def with_rates(
    jobs: Sequence[SimJob], rates: Mapping[str, Mapping[str, float]] | None = None
) -> list[SimJob]:
    """The same jobs with their speeds declared in the request, so the engine tries the pools
    in that order; `rates` (job id -> model -> rate) overrides what is declared."""
    out = []
    for j in jobs:
        declared = (rates or {}).get(j.job_id) or j.speed or {}
        req = replace(j.request, rates=tuple(sorted(declared.items())))
        out.append(replace(j, request=req))
    return out


def mixed_jobs(n: int, devices: int, load: float, seed: int, mean_s: float = 3600.0) -> list[SimJob]:
    """`n` jobs for a throughput run on the mixed fleet: shared (¼ or ½ device), 1, 2, 4 and
    8-device jobs and a few rack-bound gangs of 2-8 nodes; a few CPU and memory sizes; some
    tied to one model or two; exponential durations on the reference model; Poisson arrivals
    sized to `load` × `devices` at reference speed."""
    rng = random.Random(seed)
    drafts: list[tuple[PlacementRequest, float, float]] = []  # request, duration, devices
    for i in range(n):
        u = rng.random()
        cpu, mem = rng.choice((2000, 4000, 8000, 16000)), rng.choice((8192, 16384, 65536))
        workers, topology = 1, Topology()
        if u < 0.25:
            shape, demand = WorkerShape(1, rng.choice((250, 500)), cpu, mem), 0.4
        elif u < 0.65:
            shape, demand = WorkerShape(1, 1000, cpu, mem), 1.0
        elif u < 0.85:
            k = rng.choice((2, 4))
            shape, demand = WorkerShape(k, 1000, cpu, mem), float(k)
        elif u < 0.95:
            shape, demand = WorkerShape(8, 1000, cpu, mem), 8.0
        else:
            workers = rng.choice((2, 4, 8))
            shape, demand = WorkerShape(8, 1000, cpu, mem), 8.0 * workers
            topology = Topology(TopologyLevel.RACK, required=True)
        models = rng.choice(((), (), (), ("H100 80GB", "A100 80GB"), ("Ascend 910B",)))
        request = PlacementRequest(f"m{i:06d}", workers, shape, models=models, topology=topology)
        drafts.append((request, rng.expovariate(1 / mean_s), demand))
    mean_demand = sum(d for _, _, d in drafts) / max(len(drafts), 1)
    rate = load * devices / (mean_demand * mean_s)
    t = 0.0
    jobs = []
    for request, duration, _ in drafts:
        t += rng.expovariate(rate)
        jobs.append(SimJob.of_duration(request.job_id, t, request, duration))
    return jobs
