"""Reliability accounting (scheduler/reliability/ interruptions.py, gpu_time.py, report.py):
interruption classes, GPU-seconds by state, ETTR, MTBF, recovery percentiles and the report they make."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from scheduler.jobstate import JobState
from scheduler.model import (
    AttemptRecord,
    CheckpointRecord,
    DeviceRecord,
    JobRecord,
    NodeRecord,
    WorkerPhase,
    WorkerRecord,
)
from scheduler.reliability.gpu_time import (
    Demand,
    GpuSeconds,
    NodeSpan,
    SpanMemo,
    demand_of,
    gpu_seconds,
    idle_seconds,
    job_ettr,
    job_time,
)
from scheduler.reliability.interruptions import COMPONENTS, DETECTORS, classify_interruption
from scheduler.reliability.report import (
    FailureFact,
    NodeInventory,
    build_report,
    mtbf_rows,
    percentile,
    recovery_phases,
)
from scheduler.reliability.signals import Kind, Observation, classify, packaged_table
from scheduler.server.nodes import NodeRuntime

H100 = ("nvidia", "H100-SXM")


def signal_dict(observation: Observation) -> dict[str, Any]:
    return asdict(classify(observation))


# --- classification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "observation", "component", "category", "detected_by"),
    [
        ("xid:79", Observation(Kind.XID, 79), "gpu", "Faulty GPU (fell off the bus)", "xid"),
        ("xid:48", Observation(Kind.XID, 48), "gpu_memory", "GPU HBM memory", "xid"),
        ("xid:95", Observation(Kind.XID, 95), "gpu_memory", "GPU HBM memory", "xid"),
        ("xid:74", Observation(Kind.XID, 74), "gpu_interconnect", "NVLink", "xid"),
        ("xid:119", Observation(Kind.XID, 119), "gpu", "GPU System Processor (GSP)", "xid"),
        ("xid:13", Observation(Kind.XID, 13), "job", "User program error (GPU fault)", "xid"),
        ("xid:8", Observation(Kind.XID, 8), "software", "GPU stopped processing (software timeout)", "xid"),
        ("xid:46", Observation(Kind.XID, 46), "gpu", "GPU stopped processing", "xid"),
        ("xid:4242", Observation(Kind.XID, 4242), "gpu", "GPU error (other XID)", "xid"),
        ("ecc_dbe:2", Observation(Kind.ECC_UNCORRECTED, 2), "gpu_memory", "GPU HBM memory", "ecc"),
        ("row_remap_failed", Observation(Kind.ROW_REMAP_FAILED), "gpu_memory", "GPU HBM memory", "row_remap"),
        ("thermal", Observation(Kind.THERMAL_SHUTDOWN), "gpu", "GPU thermal", "thermal"),
        ("device_lost", Observation(Kind.DEVICE_LOST), "gpu", "Faulty GPU (lost)", "other"),
        (
            "heartbeat lost: silent 12 s",
            Observation(Kind.HEARTBEAT_LOST),
            "host",
            "Host lost (heartbeat)",
            "heartbeat",
        ),
        (
            "hang: no progress for 30 s",
            Observation(Kind.HANG, message="no progress for 30 s"),
            "unknown",
            "Hang (no progress, NCCL watchdog)",
            "hang",
        ),
        (
            "rank 0 on n1 exited with code 1",
            Observation(Kind.EXIT, 1),
            "job",
            "User program error",
            "exit_code",
        ),
        (
            "rank 1 on n1 was killed by SIGSEGV",
            Observation(Kind.EXIT, 128 + 11),
            "job",
            "User program crash (signal)",
            "exit_code",
        ),
        (
            "rank 1 on n1 was killed by SIGBUS",
            Observation(Kind.EXIT, 128 + 7),
            "host",
            "Host memory or bus error (SIGBUS)",
            "exit_code",
        ),
    ],
)
def test_each_signal_family_has_its_class_with_and_without_signals(
    cause: str, observation: Observation, component: str, category: str, detected_by: str
) -> None:
    for signals in ([signal_dict(observation)], []):
        kind = classify_interruption(cause, signals)
        assert (kind.component, kind.category, kind.detected_by) == (component, category, detected_by)
        assert kind.unexpected


def test_a_device_lost_with_an_xid_is_read_by_its_xid() -> None:
    lost = signal_dict(Observation(Kind.DEVICE_LOST, 79, device_index=2))
    kind = classify_interruption("xid:79", [lost])
    assert (kind.component, kind.category, kind.detected_by) == (
        "gpu",
        "Faulty GPU (fell off the bus)",
        "xid",
    )


def test_oom_kill_is_the_jobs() -> None:
    kind = classify_interruption(
        "rank 0 on n1 was killed by SIGKILL", [signal_dict(Observation(Kind.SIGNAL, 9, oom=True))]
    )
    assert (kind.component, kind.category) == ("job", "Out of memory (OOM killer)")


def test_a_critical_hardware_signal_beats_the_exit_status_it_caused() -> None:
    exit_signal = signal_dict(Observation(Kind.EXIT, 1))
    ecc = signal_dict(Observation(Kind.ECC_UNCORRECTED, 1, device_index=3))
    kind = classify_interruption("rank 0 on n1 exited with code 1", [exit_signal, ecc])
    assert (kind.component, kind.detected_by) == ("gpu_memory", "ecc")
    # A warning seen beside it does not: the program's own exit stays the cause.
    warning = signal_dict(Observation(Kind.ECC_CORRECTABLE, 1))
    assert classify_interruption("rank 0 on n1 exited with code 1", [exit_signal, warning]).component == "job"


@pytest.mark.parametrize(
    ("cause", "category", "detected_by"),
    [
        (
            "preempted: node n1 is draining (maintenance) (after a checkpoint at step 40)",
            "Drain (maintenance)",
            "operator",
        ),
        ("preempted: the agent on n1 shut down", "Host maintenance (agent shutdown)", "operator"),
        ("preempted: preempted for j-1234 (priority 10 > 0)", "Preemption", "other"),
        ("cancelled", "Cancelled", "operator"),
    ],
)
def test_planned_moves_are_not_unexpected(cause: str, category: str, detected_by: str) -> None:
    kind = classify_interruption(cause, [])
    assert (kind.component, kind.category, kind.detected_by, kind.unexpected) == (
        "planned",
        category,
        detected_by,
        False,
    )


def test_every_table_entry_lands_in_the_fixed_label_sets() -> None:
    table = packaged_table()
    observations = [Observation(Kind.XID, code) for code in table.xids]
    observations += [Observation(k) for k in table.observations]
    observations += [Observation(Kind.SIGNAL, n) for n in table.posix_signals]
    for o in observations:
        kind = classify_interruption("", [signal_dict(o)])
        assert kind.component in COMPONENTS, o
        assert kind.detected_by in DETECTORS, o
        assert (kind.category and kind.category != "Unclassified") or o.kind == Kind.RECOVERED, o


def test_an_unreadable_cause_is_unclassified_not_an_error() -> None:
    kind = classify_interruption("something new", [])
    assert (kind.component, kind.category, kind.detected_by) == ("unknown", "Unclassified", "other")


# --- GPU-seconds -----------------------------------------------------------------------------

SPEC = {"name": "train", "workers": 1, "devices_per_worker": 8}


def worker(job_id: str, attempt: int, started_at: float | None, node: str = "n1") -> WorkerRecord:
    return WorkerRecord(
        workload_id=f"{job_id}.{attempt}.0",
        job_id=job_id,
        attempt=attempt,
        rank=0,
        node_name=node,
        device_indices=list(range(8)),
        phase=WorkerPhase.RUNNING if started_at is not None else WorkerPhase.PLACED,
        started_at=started_at,
    )


# One job's life, in the order the control plane learns it (8 devices, submitted at 0):
# placed 10, running 12, checkpoint 50, failure observed 79 and decided 80 (lost 30 s), placed
# again 90, running 95 (restart 15 s), checkpoint 150, succeeded 200.
CHECKPOINTS = {1: 50.0, 2: 150.0}


def job_as_known_at(t: float) -> JobRecord:
    job = JobRecord("j-1", "train", SPEC, JobState.PENDING, created_at=0.0, updated_at=0.0)
    if t >= 10:
        job.state = JobState.PLACED
        a1 = AttemptRecord("j-1", 1, started_at=10.0, workers=[worker("j-1", 1, 12.0 if t >= 12 else None)])
        job.attempts.append(a1)
        if t >= 12:
            job.state = JobState.RUNNING
        if t >= 80:
            a1.outcome, a1.cause, a1.blame = "failed: xid:79", "xid:79", "hardware"
            a1.failed_at, a1.detect_s, a1.lost_s = 80.0, 1.0, 30.0
            job.state = JobState.RECOVERING
        if t >= 85:
            a1.ended_at = 85.0
    if t >= 90:
        job.state = JobState.PLACED
        job.attempts.append(
            AttemptRecord("j-1", 2, started_at=90.0, workers=[worker("j-1", 2, 95.0 if t >= 95 else None)])
        )
    if t >= 95:
        job.state = JobState.RUNNING
        job.attempts[0].restart_s = 15.0
    if t >= 200:
        job.state, job.updated_at = JobState.SUCCEEDED, 200.0
        job.attempts[1].outcome, job.attempts[1].ended_at = "succeeded", 200.0
    return job


def checkpoints_at(t: float) -> Any:
    return lambda job_id, attempt: (
        CHECKPOINTS[attempt] if attempt in CHECKPOINTS and CHECKPOINTS[attempt] <= t else None
    )


NODES = [NodeSpan(devices=16, first_seen=0.0)]


def fleet_at(t: float, now: float | None = None) -> GpuSeconds:
    return gpu_seconds([job_as_known_at(t)], checkpoints_at(t), NODES, now if now is not None else t)


def test_gpu_seconds_never_decrease_as_the_history_unfolds() -> None:
    previous = GpuSeconds()
    for tenth in range(0, 2600):
        t = tenth / 10
        current = fleet_at(t)
        for state, value in current.as_dict().items():
            assert value >= previous.as_dict()[state] - 1e-9, (t, state)
        previous = current


def test_gpu_seconds_never_decrease_in_now_for_a_fixed_history() -> None:
    for known in (11.0, 60.0, 82.0, 92.0, 120.0, 210.0):
        previous = GpuSeconds()
        for now in [known + i for i in range(0, 300, 7)]:
            current = fleet_at(known, now)
            for state, value in current.as_dict().items():
                assert value >= previous.as_dict()[state] - 1e-9, (known, now, state)
            previous = current


def test_gpu_seconds_split_of_a_failure_and_recovery() -> None:
    done = fleet_at(250.0)
    # productive: 12..50 of attempt 1 (kept by its checkpoint), 95..200 of attempt 2.
    assert done.productive_s == pytest.approx(8 * (38 + 105))
    assert done.recompute_lost_s == pytest.approx(8 * 30)  # 50..80
    assert done.restart_lost_s == pytest.approx(8 * 15)  # 80..95
    assert done.queued_s == pytest.approx(8 * 10)  # 0..10
    # 16 devices offered for 250 s; 8 held 10..80 and 90..200.
    assert done.idle_s == pytest.approx(16 * 250 - 8 * (70 + 110))


def test_while_recovering_the_restart_wait_grows_with_now() -> None:
    assert fleet_at(86.0).restart_lost_s == pytest.approx(8 * 6)
    assert fleet_at(93.0).restart_lost_s == pytest.approx(8 * 13)  # placed, not yet running


def test_running_work_counts_as_productive_only_up_to_its_checkpoint() -> None:
    assert fleet_at(49.0).productive_s == 0
    assert fleet_at(70.0).productive_s == pytest.approx(8 * 38)


def test_a_window_counts_only_what_happened_in_it() -> None:
    windowed = gpu_seconds([job_as_known_at(250)], checkpoints_at(250), NODES, 250.0, since=100.0)
    assert windowed.productive_s == pytest.approx(8 * 100)  # 100..200
    assert windowed.recompute_lost_s == windowed.restart_lost_s == windowed.queued_s == 0


def test_idle_counts_only_devices_offered_and_not_held() -> None:
    job = job_as_known_at(85.0)  # 8 devices held 10..80
    two_nodes = [NodeSpan(8, 0.0, last_seen=50.0), NodeSpan(8, 0.0)]
    assert gpu_seconds([job], checkpoints_at(85.0), two_nodes, 100.0).idle_s == pytest.approx(
        16 * 10 + 8 * 40 + 0 * 30 + 8 * 20
    )
    # The only node is gone at 50 while its gang still counts as holding it until the failure
    # is declared at 80: idle stays at what was offered and free (0..10), never below.
    one_node = [NodeSpan(8, 0.0, last_seen=50.0)]
    assert gpu_seconds([job], checkpoints_at(85.0), one_node, 100.0).idle_s == pytest.approx(8 * 10)
    assert idle_seconds([NodeSpan(8, 0.0)], [], 10.0, 30.0) == pytest.approx(8 * 20)


def test_queued_counts_the_devices_asked_for_and_moves_back_to_the_queue() -> None:
    job = JobRecord("j-2", "big", {"workers": 4, "devices_per_worker": 8}, JobState.PENDING, 0.0, 0.0)
    assert gpu_seconds([job], lambda j, a: None, [], 100.0).queued_s == pytest.approx(32 * 100)
    moved = AttemptRecord("j-2", 1, 100.0, ended_at=160.0, outcome="preempted: node n1 is draining (x)")
    moved.workers = [worker("j-2", 1, 100.0)]
    job.attempts = [moved]
    secs = gpu_seconds([job], lambda j, a: 150.0 if a == 1 else None, [], 200.0)
    assert secs.queued_s == pytest.approx(32 * 100 + 32 * 40)  # 0..100, then 160..200
    assert secs.productive_s == pytest.approx(8 * 50)  # to its checkpoint
    assert secs.recompute_lost_s == pytest.approx(8 * 10)  # 150..160


def test_demand_counts_shares_of_a_device() -> None:
    assert demand_of({"workers": 2, "devices_per_worker": 4}) == Demand(8.0)
    assert demand_of({"workers": 4, "devices_per_worker": 1, "device_milli": 250}) == Demand(1.0, 0.25)
    assert demand_of({"workers": 3}) == Demand(0.0)  # CPU only


# --- ETTR, MTBF, percentiles -----------------------------------------------------------------


def test_ettr_is_productive_over_elapsed() -> None:
    job = job_as_known_at(250.0)
    ettr = job_ettr(job, demand_of(job.spec), lambda n: CHECKPOINTS.get(n), 250.0)
    assert ettr == pytest.approx((38 + 105) / 200)  # ended at 200: elapsed stops there
    never_failed = JobRecord("j-3", "ok", SPEC, JobState.SUCCEEDED, 0.0, 100.0)
    never_failed.attempts = [AttemptRecord("j-3", 1, 0.0, ended_at=100.0, outcome="succeeded")]
    never_failed.attempts[0].workers = [worker("j-3", 1, 0.0)]
    assert job_ettr(never_failed, demand_of(SPEC), lambda n: None, 100.0) == pytest.approx(1.0)
    assert job_time(never_failed, demand_of(SPEC), lambda n: None, 100.0, since=100.0).ettr == 0.0


def test_mtbf_is_exposure_over_failures() -> None:
    rows = mtbf_rows(
        {H100: 800 * 3600.0, ("ascend", "Ascend910B"): 100 * 3600.0},
        [("gpu", *H100), ("gpu", *H100), ("gpu_memory", *H100)],
    )
    by = {(r.component, r.model): r for r in rows}
    assert by[("all", "H100-SXM")].failures == 3
    assert by[("all", "H100-SXM")].mtbf_hours == pytest.approx(800 / 3)
    assert by[("gpu", "H100-SXM")].mtbf_hours == pytest.approx(400)
    assert by[("gpu_memory", "H100-SXM")].mtbf_hours == pytest.approx(800)
    assert by[("all", "Ascend910B")].failures == 0 and by[("all", "Ascend910B")].mtbf_hours == 0


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile(values, 100) == 10
    assert percentile([], 50) == 0
    assert percentile([4.0], 95) == 4


def test_recovery_phases_of_one_failure() -> None:
    phases = {p.phase: p for p in recovery_phases([job_as_known_at(250.0)], 0.0, 250.0)}
    assert phases["detect"].p50_s == pytest.approx(1.0)
    assert phases["reschedule"].p50_s == pytest.approx(10.0)  # decided 80, placed 90
    assert phases["restore"].p50_s == pytest.approx(5.0)  # placed 90, running 95
    assert phases["total"].max_s == pytest.approx(16.0)
    assert all(p.count == 1 for p in phases.values())


# --- the report ------------------------------------------------------------------------------


def failure(
    job_id: str, attempt: int, at: float, cause: str, observation: Observation, blame: str
) -> FailureFact:
    return FailureFact(at, job_id, attempt, blame, cause, ("n1",), (signal_dict(observation),))


def test_report_by_cause_mtbf_ettr_and_jobs() -> None:
    job = job_as_known_at(250.0)
    small = JobRecord("j-9", "small", {"workers": 1, "devices_per_worker": 1}, JobState.FAILED, 100.0, 130.0)
    small.attempts = [AttemptRecord("j-9", 1, 100.0, workers=[worker("j-9", 1, 101.0)])]
    small.attempts[0].workers[0].device_indices = [0]
    small.attempts[0].failed_at, small.attempts[0].lost_s = 130.0, 29.0
    small.attempts[0].outcome = "failed: rank 0 on n1 exited with code 1"
    failures = [
        failure("j-1", 1, 80.0, "xid:79", Observation(Kind.XID, 79, device_index=3), "hardware"),
        failure("j-9", 1, 130.0, "rank 0 on n1 exited with code 1", Observation(Kind.EXIT, 1), "job"),
        failure("j-0", 1, 140.0, "rank 0 on n1 exited with code 1", Observation(Kind.EXIT, 1), "job"),
    ]
    nodes = [NodeInventory("n1", NodeSpan(8, 0.0), {i: H100 for i in range(8)})]
    lookup = checkpoints_at(250.0)
    report = build_report(
        jobs=[small, job], failures=failures, nodes=nodes, checkpoints=lookup, since=0.0, now=250.0
    )

    assert report.interruptions == report.unexpected == 3
    assert sum(r.share for r in report.by_cause) == pytest.approx(1.0)
    first, second = report.by_cause
    assert (first.component, first.category, first.count, first.blame) == (
        "job",
        "User program error",
        2,
        "job",
    )
    assert (second.component, second.category, second.count) == ("gpu", "Faulty GPU (fell off the bus)", 1)
    assert second.lost_gpu_hours == pytest.approx(8 * (30 + 15) / 3600)
    gpu_all = next(r for r in report.mtbf if r.component == "all")
    assert (gpu_all.vendor, gpu_all.model, gpu_all.failures) == (*H100, 1)  # the job's exits are not
    assert gpu_all.device_hours == pytest.approx(8 * 250 / 3600)
    assert [j.job_id for j in report.jobs] == ["j-1", "j-9"]  # the largest first
    assert report.jobs[0].ettr == pytest.approx((38 + 105) / 200)
    assert report.jobs[0].interruptions == 1
    assert 0 < report.fleet_ettr < 1
    assert report.lost_gpu_hours == pytest.approx((8 * 30 + 8 * 15 + 29) / 3600)
    assert report.devices == 8


def test_report_window_and_planned_moves() -> None:
    job = JobRecord("j-5", "moved", SPEC, JobState.PENDING, 0.0, 0.0)
    job.attempts = [AttemptRecord("j-5", 1, 5.0, ended_at=60.0, outcome="preempted: node n1 is draining (x)")]
    report = build_report(
        jobs=[job], failures=[], nodes=[], checkpoints=lambda j, a: None, since=0.0, now=100.0
    )
    assert report.interruptions == 1 and report.unexpected == 0
    assert report.by_cause[0].category == "Drain (maintenance)" and not report.by_cause[0].unexpected
    later = build_report(
        jobs=[job], failures=[], nodes=[], checkpoints=lambda j, a: None, since=70.0, now=100.0
    )
    assert later.interruptions == 0 and later.by_cause == ()


# --- the live control plane's edge -----------------------------------------------------------


def test_finished_jobs_remembered_between_calls_give_the_same_figures() -> None:
    jobs = [job_as_known_at(250.0), job_as_known_at(120.0)]
    jobs[1].id = "j-live"
    memo = SpanMemo()
    plain = gpu_seconds(jobs, checkpoints_at(250.0), NODES, 300.0)
    assert gpu_seconds(jobs, checkpoints_at(250.0), NODES, 300.0, memo=memo) == plain
    assert set(memo.jobs) == {"j-1"}  # only the finished one
    assert gpu_seconds(jobs, checkpoints_at(250.0), NODES, 300.0, memo=memo) == plain


class FakeControlPlane:
    """What scheduler.server.reliability reads of a ControlPlane."""

    def __init__(self, jobs: list[JobRecord], nodes: list[Any]) -> None:
        self.jobs = {j.id: j for j in jobs}
        self.nodes = nodes

    def checkpoints_of(self, job_id: str) -> list[CheckpointRecord]:
        return [CheckpointRecord(job_id, n, 0, 10, "p", at, complete=True) for n, at in CHECKPOINTS.items()]


def test_the_published_counter_never_goes_back_when_a_node_leaves() -> None:
    from scheduler.server.reliability import fleet_gpu_seconds

    node = NodeRuntime(NodeRecord("n1", first_seen=0.0, last_seen=0.0, devices=[]))
    node.record.devices = [DeviceRecord("n1", i, *H100) for i in range(16)]
    node.session = object()  # type: ignore[assignment]  # connected
    cp = FakeControlPlane([job_as_known_at(250.0)], [node])
    before = fleet_gpu_seconds(cp, 300.0)  # type: ignore[arg-type]
    # The node disconnects; its capacity ends at its last heartbeat, in the past.
    node.session, node.record.last_seen = None, 100.0
    after = fleet_gpu_seconds(cp, 310.0)  # type: ignore[arg-type]
    for state, value in after.as_dict().items():
        assert value >= before.as_dict()[state], state
    assert after.idle_s == before.idle_s
