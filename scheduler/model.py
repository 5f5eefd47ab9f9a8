"""Plain records the control plane keeps in memory and the store persists.

They carry no I/O, so decision functions take them (or views of them) as their snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scheduler.jobstate import JobState


class WorkerPhase(StrEnum):
    PLACED = "placed"  # start sent, not yet confirmed
    RUNNING = "running"
    EXITED = "exited"  # ended by itself or by a stop; exit_code/signal say how
    FAILED_TO_START = "failed_to_start"

    @property
    def holds_devices(self) -> bool:
        return self in (WorkerPhase.PLACED, WorkerPhase.RUNNING)


@dataclass
class DeviceRecord:
    node_name: str
    index: int
    vendor: str
    model: str
    uuid: str = ""
    memory_bytes: int = 0
    power_limit_min_w: float = 0.0
    power_limit_max_w: float = 0.0
    power_limit_default_w: float = 0.0
    power_limit_settable: bool = False
    bus_id: str = ""
    peer_indices: list[int] = field(default_factory=list)
    interconnect: str = ""
    simulated: bool = False
    visibility_env: str = ""
    health: str = "HEALTHY"
    board_id: str = ""  # chips of one board share it (see common.proto Device.board_id)
    source: str = ""  # how the agent reads the device: nvml, library, cli, simulated, recorded


@dataclass
class NodeRecord:
    name: str
    first_seen: float
    last_seen: float
    address: str = ""
    hostname: str = ""
    backend: str = ""
    simulated: bool = False
    agent_version: str = ""
    instance_id: str = ""
    cpu_count: int = 0
    memory_bytes: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    cordoned: bool = False
    cordon_reason: str = ""
    draining: bool = False
    devices: list[DeviceRecord] = field(default_factory=list)


@dataclass
class WorkerRecord:
    workload_id: str
    job_id: str
    attempt: int
    rank: int
    node_name: str
    device_indices: list[int]
    phase: WorkerPhase = WorkerPhase.PLACED
    exit_code: int | None = None
    signal: int | None = None
    message: str = ""
    progress_step: int = 0
    checkpoint_step: int = 0
    checkpoint_path: str = ""
    checkpoint_at: float | None = None  # when the control plane heard of it; not persisted
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.phase is WorkerPhase.EXITED and self.exit_code == 0 and not self.signal


@dataclass
class AttemptRecord:
    job_id: str
    number: int
    started_at: float
    ended_at: float | None = None
    outcome: str = ""
    master_addr: str = ""
    master_port: int = 0
    workers: list[WorkerRecord] = field(default_factory=list)
    # Set when the attempt ends in a failure (fault-tolerance): what was seen and whose fault.
    cause: str = ""
    blame: str = ""  # "hardware", "job", "unknown"; "" when it did not fail
    failed_at: float | None = None  # when the control plane learned of the failure
    lost_s: float = 0.0  # wall time of work redone: failure minus the checkpoint resumed from
    detect_s: float = 0.0  # failure observed by an agent -> the control plane's decision
    restart_s: float = 0.0  # decision -> every worker of the next attempt running
    # Where this attempt started from: the job's latest complete checkpoint when placed.
    resumed_from_step: int = 0
    resume_path: str = ""

    @property
    def all_exited(self) -> bool:
        return all(not w.phase.holds_devices for w in self.workers)


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint a worker reported. Only `complete` ones are resumed from."""

    job_id: str
    attempt: int
    rank: int
    step: int
    path: str
    at: float
    size_bytes: int = 0
    duration_s: float = 0.0
    complete: bool = False
    trigger: str = ""


@dataclass
class JobRecord:
    id: str
    name: str
    spec: dict[str, Any]  # the validated JobSpec, dumped
    state: JobState
    created_at: float
    updated_at: float
    owner: str = ""
    reason: str = ""
    queue: str = "default"
    priority: int = 0
    restarts: int = 0
    hardware_restarts: int = 0  # restarts after hardware-blamed failures: not the job's budget
    attempts: list[AttemptRecord] = field(default_factory=list)
    lost_device_s: float = 0.0  # device-seconds lost to failures: redone work plus restarts

    @property
    def current_attempt(self) -> AttemptRecord | None:
        return self.attempts[-1] if self.attempts else None


def workload_id(job_id: str, attempt: int, rank: int) -> str:
    return f"{job_id}.{attempt}.{rank}"
