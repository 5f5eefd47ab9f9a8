"""What to do when an agent (re)connects and reports the workloads it holds.

Pure: it compares the agent's report with the control plane's records for that node and
returns actions; the control plane applies them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from corral.v1 import common_pb2

from scheduler.model import WorkerPhase, WorkerRecord

_PHASE = common_pb2.WorkloadPhase


class ActionKind(StrEnum):
    RESEND_START = "resend_start"  # start never confirmed: the command may have been lost
    STOP = "stop"  # the agent runs something the control plane no longer wants
    RECORD = "record"  # apply the reported status (idempotent)
    LOST = "lost"  # confirmed running, but the agent no longer knows it


@dataclass(frozen=True)
class ReconcileAction:
    kind: ActionKind
    workload_id: str
    reason: str = ""
    status: common_pb2.WorkloadStatus | None = None


def reconcile_node(
    reported: Sequence[common_pb2.WorkloadStatus],
    expected: Sequence[WorkerRecord],
    wanted: Mapping[str, bool],
) -> list[ReconcileAction]:
    """`expected`: the workers the store places on this node that still hold devices;
    `wanted[workload_id]`: whether that worker's attempt should keep running."""
    actions: list[ReconcileAction] = []
    reported_ids = {s.workload_id for s in reported}
    for status in reported:
        actions.append(ReconcileAction(ActionKind.RECORD, status.workload_id, status=status))
        alive = status.phase in (_PHASE.WORKLOAD_PHASE_STARTING, _PHASE.WORKLOAD_PHASE_RUNNING)
        if alive and not wanted.get(status.workload_id, False):
            actions.append(
                ReconcileAction(ActionKind.STOP, status.workload_id, "not wanted by the control plane")
            )
    for worker in expected:
        if worker.workload_id in reported_ids or not worker.phase.holds_devices:
            continue
        if not wanted.get(worker.workload_id, False):
            # Being torn down and the agent has no trace of it: it is gone.
            actions.append(ReconcileAction(ActionKind.LOST, worker.workload_id, "stopped while unreported"))
        elif worker.phase is WorkerPhase.PLACED:
            actions.append(ReconcileAction(ActionKind.RESEND_START, worker.workload_id))
        else:
            actions.append(
                ReconcileAction(
                    ActionKind.LOST, worker.workload_id, "the agent no longer reports this worker"
                )
            )
    return actions
