"""Power-aware admission in a scheduling pass, on hand-checkable racks and zones."""

from __future__ import annotations

import math

from scheduler.placement.cluster import ClusterState, DeviceState, NodeState
from scheduler.placement.policies import make_policy
from scheduler.placement.request import PlacementRequest, WorkerShape
from scheduler.power.admission import PowerGate, PowerLedger
from scheduler.queueing import PendingJob, QueueSet, schedule_pass

H100 = ("nvidia", "H100")


def cluster(*names: str) -> ClusterState:
    return ClusterState(NodeState(n, [DeviceState(i, H100) for i in range(8)]) for n in names)


def job(job_id: str, devices: int, t: float = 0.0) -> PendingJob:
    return PendingJob(
        job_id, "default", 0, t, PlacementRequest(job_id, workers=1, shape=WorkerShape(devices=devices))
    )


def ledger(
    rack_budget_w: dict[str, float],
    zone_budget_w: dict[str, float] | None = None,
    hot: frozenset[str] = frozenset(),
) -> PowerLedger:
    # n0, n1 in rack r0 (zone z0); n2 in rack r1 (zone z1). Idle devices draw 100 W, jobs 600 W.
    rack_of = {"n0": "r0", "n1": "r0", "n2": "r1"}
    idle = {(n, i): 100.0 for n in rack_of for i in range(8)}
    committed = {r: sum(100.0 * 8 for n in rack_of if rack_of[n] == r) for r in ("r0", "r1")}
    return PowerLedger(
        rack_of=rack_of,
        zone_of_rack={"r0": "z0", "r1": "z1"},
        rack_budget_w=rack_budget_w,
        zone_budget_w=zone_budget_w or {"z0": math.inf, "z1": math.inf},
        rack_committed_w=dict(committed),
        zone_committed_w={"z0": committed["r0"], "z1": committed["r1"]},
        idle_w=idle,
        expected_w=lambda _job, _device: 600.0,
        hot_zones=hot,
    )


def run(c: ClusterState, jobs: list[PendingJob], gate: PowerGate) -> dict[str, str]:
    result = schedule_pass(jobs, [], c, QueueSet.default(), make_policy("best-fit"), power=gate)
    placed = {job_id: d.slots[0].node_name for job_id, d in result.placed if d.slots}
    return {**placed, **{k: f"WAIT {v}" for k, v in result.waiting.items()}}


def test_a_job_waits_for_power_when_its_rack_would_go_over_and_says_so() -> None:
    # r0 holds 1.6 kW idle; a 4-device job adds 4 × 500 W = 2 kW. Budget 3.5 kW: it does not
    # fit r0, so it goes to r1; a second one fits nowhere once r1 is at 2.8 kW of 3.5.
    gate = PowerGate(ledger({"r0": 3_500.0, "r1": 3_500.0}))
    out = run(cluster("n0", "n1", "n2"), [job("a", 4), job("b", 4, t=1)], gate)
    assert out["a"] == "n2"
    assert out["b"].startswith("WAIT waiting for power: rack r")
    assert "at its expected draw" in out["b"]


def test_heat_goes_to_the_zone_with_most_headroom_and_hot_zones_last() -> None:
    roomy = PowerGate(ledger({"r0": 100_000.0, "r1": 100_000.0}, {"z0": 10_000.0, "z1": 30_000.0}))
    assert run(cluster("n0", "n1", "n2"), [job("a", 2)], roomy)["a"] == "n2"  # z1 is the coolest
    hot = PowerGate(
        ledger({"r0": 100_000.0, "r1": 100_000.0}, {"z0": 10_000.0, "z1": 30_000.0}, frozenset({"z1"}))
    )
    assert run(cluster("n0", "n1", "n2"), [job("a", 2)], hot)["a"] in ("n0", "n1")


def test_commit_counts_each_placement_so_a_pass_cannot_overfill_a_zone() -> None:
    # z0 (n0, n1) can take 2 kW more: one 4-device job, not two.
    gate = PowerGate(ledger({"r0": math.inf, "r1": 0.0}, {"z0": 1_600.0 + 2_000.0, "z1": math.inf}))
    out = run(cluster("n0", "n1", "n2"), [job("a", 4), job("b", 4, t=1)], gate)
    assert out["a"] in ("n0", "n1")
    assert out["b"].startswith("WAIT waiting for power: ")  # r1 has no budget at all, z0 is full
    assert "reserved" not in out["b"]  # devices held for it would not give it watts


def test_without_a_gate_nothing_changes() -> None:
    c = cluster("n0")
    result = schedule_pass([job("a", 8)], [], c, QueueSet.default(), make_policy("best-fit"))
    assert [j for j, _ in result.placed] == ["a"]


def test_expected_draw_is_tdp_times_the_factor_until_learned_then_the_jobs_own() -> None:
    from scheduler.power.expected import ExpectedDraw

    draw = ExpectedDraw(factor=0.9, min_samples=3)
    key = ("alice", "train")
    assert draw.per_device_w(key, 700.0) == 630.0
    for w in (500.0, 520.0):
        draw.observe(key, w)
    assert draw.per_device_w(key, 700.0) == 630.0  # two samples are not enough yet
    draw.observe(key, 540.0)
    assert draw.per_device_w(key, 700.0) == 520.0  # the mean of the first samples
    assert "learned" in draw.source(key) and "0.9" in draw.source(("bob", "x"))
