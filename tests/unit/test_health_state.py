"""Device and node health transitions, flapping, operator clears and persistence."""

from __future__ import annotations

import json

import pytest

from scheduler.reliability.health_state import (
    FlapPolicy,
    Health,
    HealthBook,
    HealthRecord,
    apply_signal,
    health_check_passed,
    operator_clear,
    quarantine,
)
from scheduler.reliability.signals import Observation, Signal, classify, from_worker_exit

H, S, U, Q = Health.HEALTHY, Health.SUSPECT, Health.UNHEALTHY, Health.QUARANTINED


def xid(code: int, index: int | None = 0) -> Signal:
    return classify(Observation("xid", code, device_index=index))


@pytest.mark.parametrize(
    ("start", "signal", "end"),
    [
        (H, xid(13), H),  # the job's fault: the device stays HEALTHY
        (H, xid(31), H),
        (H, classify(from_worker_exit(0, signal=11)), H),
        (H, classify(from_worker_exit(137, oom=True)), H),
        (H, classify(Observation("hang", value=900)), H),  # unknown: left to blame.py
        (H, xid(92), S),  # early warning
        (H, xid(94), S),
        (H, classify(Observation("row_remap_pending")), S),
        (H, classify(Observation("thermal_slowdown")), S),
        (H, xid(48), U),
        (H, xid(79), U),
        (S, xid(79), U),
        (S, xid(92), S),  # no change, no entry
        (U, xid(92), U),  # signals never make things better
        (Q, xid(79), Q),
        (H, classify(Observation("ecc_correctable_rate", value=1)), H),  # below threshold
    ],
)
def test_apply_signal(start: Health, signal: Signal, end: Health) -> None:
    record, entry = apply_signal(HealthRecord(start), signal, now=10.0)
    assert record.state is end
    if end is start:
        assert entry is None
    else:
        assert entry is not None
        assert (entry.at, entry.from_state, entry.to_state, entry.reason) == (10.0, start, end, signal.reason)


def test_back_to_healthy_only_by_check_or_operator() -> None:
    record, _ = apply_signal(HealthRecord(), xid(48), 1.0)
    assert health_check_passed(record, 2.0)[0].state is H
    assert operator_clear(record, 2.0)[0].state is H
    assert health_check_passed(HealthRecord(), 2.0) == (HealthRecord(), None)


def test_flapping_is_held_until_an_operator_clears_it() -> None:
    policy = FlapPolicy(flap_limit=3, flap_window_s=100.0)
    record = HealthRecord()
    t = 0.0
    for _ in range(3):  # three degrade-then-recover cycles inside the window
        record, _ = apply_signal(record, xid(92), t, policy)
        record, _ = health_check_passed(record, t + 1, policy=policy)
        assert record.state is H
        t += 10
    record, entry = apply_signal(record, xid(92), t, policy)
    assert record.state is U and record.pinned  # a warning, but flapping makes it UNHEALTHY
    assert entry is not None and "flapping" in entry.reason
    # A passing check no longer helps ...
    assert health_check_passed(record, t + 1, policy=policy) == (record, None)
    # ... an operator does, and resets the count.
    record, entry = operator_clear(record, t + 2, "alice", policy)
    assert record.state is H and not record.pinned and record.recoveries == ()
    assert entry is not None and entry.reason == "cleared by alice"
    assert apply_signal(record, xid(92), t + 3, policy)[0].state is S


def test_recoveries_outside_the_window_do_not_count() -> None:
    policy = FlapPolicy(flap_limit=3, flap_window_s=100.0)
    record = HealthRecord()
    for t in (0.0, 200.0, 400.0):
        record, _ = apply_signal(record, xid(92), t, policy)
        record, _ = health_check_passed(record, t + 1, policy=policy)
    assert apply_signal(record, xid(92), 600.0, policy)[0].state is S


def test_history_is_bounded_and_ordered() -> None:
    policy = FlapPolicy(flap_limit=1000, history_limit=4)
    record = HealthRecord()
    for t in range(10):
        record, _ = apply_signal(record, xid(92), float(t), policy)
        record, _ = health_check_passed(record, t + 0.5, policy=policy)
    assert len(record.history) == 4
    assert [h.at for h in record.history] == [8.0, 8.5, 9.0, 9.5]
    assert [(h.from_state, h.to_state) for h in record.history] == [(H, S), (S, H)] * 2


def test_quarantine_is_left_only_by_an_operator() -> None:
    record, _ = quarantine(HealthRecord(), 1.0, "lemon: 3 failures")
    assert record.state is Q
    assert health_check_passed(record, 2.0)[0].state is Q
    assert operator_clear(record, 3.0)[0].state is H


def test_book_xid_79_takes_node_and_device() -> None:
    book = HealthBook()
    entries = book.observe("n1", xid(79, index=3), 5.0)
    assert len(entries) == 2
    assert book.node("n1").state is U and book.device("n1", 3).state is U
    assert book.device_health("n1", 0) is U  # the node is down, so are its devices
    book.clear("n1", None, 6.0)
    assert book.device_health("n1", 0) is H
    assert book.device_health("n1", 3) is U  # the lost device waits for its own check


def test_book_job_signals_leave_hardware_healthy() -> None:
    book = HealthBook()
    for s in (xid(13), xid(43), classify(from_worker_exit(1)), classify(from_worker_exit(0, signal=11))):
        assert book.observe("n1", s, 1.0) == []
    assert book.device_health("n1", 0) is H and book.node("n1").state is H


def test_book_device_warning_marks_only_that_device() -> None:
    book = HealthBook()
    book.observe("n1", xid(92, index=1), 1.0)
    assert book.device_health("n1", 1) is S
    assert book.device_health("n1", 0) is H
    assert book.node("n1").state is H


def test_snapshot_round_trips_through_json() -> None:
    book = HealthBook()
    book.observe("n1", xid(92, index=1), 1.0)
    book.observe("n2", classify(Observation("heartbeat_lost")), 2.0)
    book.check_passed("n1", 1, 3.0, "dcgm diag r1")
    book.quarantine_node("n3", 4.0, "lemon")
    data = json.loads(json.dumps(book.snapshot()))
    again = HealthBook.restore(data)
    assert again.snapshot() == book.snapshot()
    assert again.device("n1", 1).history[-1].reason == "health check passed: dcgm diag r1"
    assert again.node("n3").state is Q
