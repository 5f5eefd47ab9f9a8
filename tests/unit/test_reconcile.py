from __future__ import annotations

from corral.v1 import common_pb2

from scheduler.model import WorkerPhase, WorkerRecord
from scheduler.reconcile import ActionKind, reconcile_node

P = common_pb2.WorkloadPhase


def w(wid: str, phase: WorkerPhase) -> WorkerRecord:
    return WorkerRecord(wid, "j", 1, 0, "n0", [0], phase=phase)


def status(wid: str, phase: int) -> common_pb2.WorkloadStatus:
    return common_pb2.WorkloadStatus(workload_id=wid, phase=phase)


def kinds(actions: list) -> set[tuple[ActionKind, str]]:  # type: ignore[type-arg]
    return {(a.kind, a.workload_id) for a in actions}


def test_unconfirmed_start_is_resent_and_confirmed_running_but_missing_is_lost() -> None:
    actions = reconcile_node(
        [], [w("a", WorkerPhase.PLACED), w("b", WorkerPhase.RUNNING)], {"a": True, "b": True}
    )
    assert kinds(actions) == {(ActionKind.RESEND_START, "a"), (ActionKind.LOST, "b")}


def test_running_but_unwanted_is_stopped_and_reports_are_recorded() -> None:
    actions = reconcile_node(
        [
            status("a", P.WORKLOAD_PHASE_RUNNING),
            status("old", P.WORKLOAD_PHASE_RUNNING),
            status("done", P.WORKLOAD_PHASE_EXITED),
        ],
        [w("a", WorkerPhase.RUNNING)],
        {"a": True, "old": False},
    )
    assert kinds(actions) == {
        (ActionKind.RECORD, "a"),
        (ActionKind.RECORD, "old"),
        (ActionKind.RECORD, "done"),
        (ActionKind.STOP, "old"),
    }


def test_reconnect_with_everything_in_order_changes_nothing() -> None:
    actions = reconcile_node(
        [status("a", P.WORKLOAD_PHASE_RUNNING)], [w("a", WorkerPhase.RUNNING)], {"a": True}
    )
    assert kinds(actions) == {(ActionKind.RECORD, "a")}
