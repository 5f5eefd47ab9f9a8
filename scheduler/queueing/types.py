"""What one scheduling pass takes and gives: pure data, no I/O.

The live control plane builds these from its records each pass; the simulator from its
virtual jobs. Both call `scheduler.queueing.admission.schedule_pass` with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.placement.cluster import Allocation
from scheduler.placement.engine import PlacementDecision
from scheduler.placement.request import PlacementRequest, Pool


@dataclass(frozen=True)
class PendingJob:
    job_id: str
    queue: str
    priority: int
    submitted_at: float  # orders jobs of equal priority: oldest first
    request: PlacementRequest
    made_room: bool = False  # running jobs were preempted for it: it goes first until placed
    # Some of those are still stopping: their devices are about to free, so preempting more
    # now would take more than it needs.
    victims_stopping: bool = False


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    queue: str
    priority: int
    started_at: float
    pool: Pool  # ("", "") for CPU-only gangs
    allocations: tuple[Allocation, ...]  # what it holds now, as the cluster snapshot has it
    devices: int  # whole-device equivalents it holds (milli / 1000 summed)
    # Work lost if it were stopped now: seconds since its last complete checkpoint (or since
    # it started) times its devices. Victims are chosen to lose the least of it.
    seconds_since_checkpoint: float = 0.0
    preemptible: bool = True


@dataclass(frozen=True)
class Preemption:
    victim_job_id: str
    for_job_id: str
    reason: str  # one line, for the victim's event log
    checkpoint_first: bool = True  # the fault-tolerance issue makes the agent checkpoint before stopping


@dataclass
class PassResult:
    placed: list[tuple[str, PlacementDecision]] = field(default_factory=list)  # in placement order
    preemptions: list[Preemption] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # job id -> one-line reason
    reserved_for: str | None = None  # the head-of-line gang holding a reservation, if any
    reserved_nodes: tuple[str, ...] = ()  # the nodes kept clear for it this pass
