"""Alibaba's openb trace (cluster-trace-gpu-v2023, as shipped with the FGD artifact).

Node list columns: sn, cpu_milli, memory_mib, gpu, model. Pod list columns: name, cpu_milli,
memory_mib, num_gpu, gpu_milli, and optionally gpu_spec (allowed models, `|`-separated),
qos, pod_phase, creation_time, deletion_time, scheduled_time. A bad row is refused with the
file, line and column named.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from scheduler.placement.cluster import DeviceState, NodeState
from scheduler.placement.request import WHOLE, WorkerShape

# The trace's G1-G3 are undisclosed models; the rest are NVIDIA's.
UNDISCLOSED = ("G1", "G2", "G3")


class TraceError(ValueError):
    pass


@dataclass(frozen=True)
class TraceTask:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    gpu_spec: tuple[str, ...]
    creation_time: int | None = None
    deletion_time: int | None = None

    @property
    def total_milli(self) -> int:
        return self.num_gpu * self.gpu_milli if self.num_gpu else 0

    @property
    def shape(self) -> WorkerShape:
        if self.num_gpu == 0:
            return WorkerShape(0, WHOLE, self.cpu_milli, self.memory_mib)
        if self.num_gpu == 1:
            return WorkerShape(1, self.gpu_milli, self.cpu_milli, self.memory_mib)
        return WorkerShape(self.num_gpu, WHOLE, self.cpu_milli, self.memory_mib)


def vendor_of(model: str) -> str:
    return "undisclosed" if model in UNDISCLOSED else "nvidia"


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise TraceError(
                    f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                    f"{', '.join(required)} (got {', '.join(header) or 'nothing'})"
                )
            return [(n + 2, row) for n, row in enumerate(reader)]
    except OSError as e:
        raise TraceError(f"{path}: cannot read it ({e.strerror})") from e


def _int(
    path: Path, line: int, row: dict[str, str], column: str, *, lo: int = 0, hi: int | None = None
) -> int:
    raw = (row.get(column) or "").strip()
    try:
        value = int(float(raw))
    except ValueError:
        raise TraceError(f"{path}:{line}: {column} must be a whole number (got {raw!r})") from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"≥ {lo}"
        raise TraceError(f"{path}:{line}: {column} must be {bound} (got {value})")
    return value


def load_nodes(path: Path) -> list[NodeState]:
    """GPU nodes (rows with gpu > 0); CPU-only rows are skipped, as in the FGD experiments."""
    nodes: list[NodeState] = []
    seen: set[str] = set()
    for line, row in _rows(path, ("sn", "cpu_milli", "memory_mib", "gpu", "model")):
        name = (row["sn"] or "").strip()
        if not name:
            raise TraceError(f"{path}:{line}: sn is empty; every node needs a name")
        if name in seen:
            raise TraceError(f"{path}:{line}: node {name!r} appears twice")
        seen.add(name)
        gpus = _int(path, line, row, "gpu", hi=64)
        if gpus == 0:
            continue
        model = (row["model"] or "").strip()
        if not model:
            raise TraceError(f"{path}:{line}: model is empty for a node with {gpus} GPUs")
        pool = (vendor_of(model), model)
        nodes.append(
            NodeState(
                name=name,
                cpu_milli=_int(path, line, row, "cpu_milli", lo=1),
                memory_mib=_int(path, line, row, "memory_mib", lo=1),
                devices=[DeviceState(index=i, pool=pool) for i in range(gpus)],
            )
        )
    if not nodes:
        raise TraceError(f"{path}: no node with gpu > 0")
    return nodes


def load_tasks(path: Path) -> list[TraceTask]:
    tasks: list[TraceTask] = []
    for line, row in _rows(path, ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")):
        num_gpu = _int(path, line, row, "num_gpu", hi=64)
        gpu_milli = _int(path, line, row, "gpu_milli", hi=WHOLE)
        if num_gpu and not gpu_milli:
            raise TraceError(f"{path}:{line}: gpu_milli must be 1..1000 when num_gpu is {num_gpu} (got 0)")
        if num_gpu > 1 and gpu_milli != WHOLE:
            raise TraceError(
                f"{path}:{line}: gpu_milli must be 1000 when num_gpu is {num_gpu} "
                f"(only single-GPU tasks share a GPU; got {gpu_milli})"
            )
        spec = tuple(s.strip() for s in (row.get("gpu_spec") or "").split("|") if s.strip())
        created = (row.get("creation_time") or "").strip()
        deleted = (row.get("deletion_time") or "").strip()
        tasks.append(
            TraceTask(
                name=(row["name"] or "").strip() or f"line-{line}",
                cpu_milli=_int(path, line, row, "cpu_milli"),
                memory_mib=_int(path, line, row, "memory_mib"),
                num_gpu=num_gpu,
                gpu_milli=gpu_milli if num_gpu else 0,
                gpu_spec=spec,
                creation_time=_int(path, line, row, "creation_time") if created else None,
                deletion_time=_int(path, line, row, "deletion_time") if deleted else None,
            )
        )
    if not tasks:
        raise TraceError(f"{path}: no tasks")
    return tasks
