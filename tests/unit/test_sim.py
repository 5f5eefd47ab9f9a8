"""The discrete-event simulator on scenarios small enough to check by hand."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.placement.cluster import ClusterState, DeviceState, NodeState
from scheduler.placement.request import PlacementRequest, Topology, TopologyLevel, WorkerShape
from scheduler.sim.engine import (
    EventKind,
    SimJob,
    Simulator,
    greedy_pass,
    percentile,
    simulate,
)
from scheduler.sim.fleet import build_fleet, device_count
from scheduler.sim.workload import gavel_jobs, with_rates

A100 = ("nvidia", "A100 80GB")
H100 = ("nvidia", "H100 80GB")
PASSES = [pytest.param(greedy_pass, id="greedy"), pytest.param(None, id="default")]


def node(name: str, pool: tuple[str, str] = A100, n: int = 4, rack: str = "") -> NodeState:
    devices = [DeviceState(i, pool, 80 * 2**30, 0) for i in range(n)]
    return NodeState(name, devices, 64_000, 512_000, rack=rack, block="b")


def job(job_id: str, at: float, devices: int, work: float, workers: int = 1, **kw: Any) -> SimJob:
    topology = kw.pop("topology", Topology())
    request = PlacementRequest(job_id, workers, WorkerShape(devices), topology=topology, **kw.pop("req", {}))
    return SimJob(job_id, at, request, work, **kw)


def times(result: Any) -> dict[str, tuple[float, float]]:
    return {r.job.job_id: (r.start, r.end) for r in result.jobs}


@pytest.mark.parametrize("pass_fn", PASSES)
def test_two_nodes_three_jobs_exact_times(pass_fn: Any) -> None:
    cluster = ClusterState([node("a"), node("b")])
    jobs = [job("j1", 0, 4, 40), job("j2", 0, 4, 80), job("j3", 1, 4, 20)]
    r = simulate(cluster, jobs, "first-fit", pass_fn=pass_fn)
    # j1 and j2 fill both nodes; j3 waits for j1 (ends at 40 / 4 = 10) and runs 20 / 4 = 5 s
    assert times(r) == {"j1": (0, 10), "j2": (0, 20), "j3": (10, 15)}
    assert [x.job.job_id for x in r.jobs] == ["j1", "j3", "j2"]
    by_id = {x.job.job_id: x for x in r.jobs}
    assert by_id["j3"].queueing_delay == 9 and by_id["j3"].jct == 14
    assert r.makespan == 20
    # 8/8 devices busy for 15 s, then 4/8 for 5 s
    assert r.mean_allocation == pytest.approx((15 * 1.0 + 5 * 0.5) / 20)
    s = r.summary()
    assert s["jct_mean_s"] == pytest.approx((10 + 20 + 14) / 3)
    assert s["jobs_unplaced"] == 0 and s["placements"] == 3
    assert all(cluster.nodes[i].free_milli() == 4000 for i in (0, 1))  # everything released


@pytest.mark.parametrize("pass_fn", PASSES)
def test_queue_of_identical_jobs_runs_back_to_back_without_retrying_each(pass_fn: Any) -> None:
    cluster = ClusterState([node("a", n=8)])
    jobs = [job(f"j{i}", 0, 8, 80) for i in range(10)]
    r = simulate(cluster, jobs, "best-fit", pass_fn=pass_fn)
    assert [times(r)[f"j{i}"] for i in range(10)] == [(10 * i, 10 * i + 10) for i in range(10)]
    # one success per job plus at most one failed try per completion, never 10 tries a pass
    assert r.place_calls <= 2 * len(jobs)


def test_speed_from_job_then_request_rates_then_catalog() -> None:
    cluster = ClusterState([node("h", H100, 8)])
    jobs = [
        job("catalog", 0, 4, 400),
        job("own", 0, 2, 400, speed={"H100 80GB": 2.0}),
        job("rates", 0, 2, 400, req={"rates": (("h100 80gb", 4.0),)}),
    ]
    r = simulate(cluster, jobs, "first-fit")
    ratio = 989.4 / 312.0  # the catalog's dense BF16 TFLOPS, H100 over the A100 reference
    end = {x.job.job_id: x.end for x in r.jobs}
    assert end["catalog"] == pytest.approx(400 / (4 * ratio))
    assert end["own"] == pytest.approx(400 / (2 * 2.0))
    assert end["rates"] == pytest.approx(400 / (2 * 4.0))
    assert {x.job.job_id: x.speed for x in r.jobs}["catalog"] == pytest.approx(ratio)


def test_unknown_speed_counts_as_reference_and_true_speed_overrides() -> None:
    mlu = ("cambricon", "MLU590")  # no TFLOPS in the catalog
    r = simulate(ClusterState([node("m", mlu, 4)]), [job("j", 0, 4, 40)], "first-fit")
    assert r.jobs[0].end == 10
    r = simulate(
        ClusterState([node("m", mlu, 4)]), [job("j", 0, 4, 40)], "first-fit", true_speed=lambda p: 2.0
    )
    assert r.jobs[0].end == 5


def test_fractional_jobs_share_a_device_and_of_duration() -> None:
    cluster = ClusterState([node("a", n=1)])
    half = PlacementRequest("x", 1, WorkerShape(1, 500))
    jobs = [
        SimJob.of_duration("x", 0, half, 30),
        SimJob.of_duration("y", 0, PlacementRequest("y", 1, WorkerShape(1, 500)), 60),
        SimJob.of_duration("z", 0, PlacementRequest("z", 1, WorkerShape(1, 1000)), 5),
    ]
    assert jobs[0].work == 15  # half a device for 30 s
    r = simulate(cluster, jobs, "best-fit")
    assert times(r) == {"x": (0, 30), "y": (0, 60), "z": (60, 65)}


@pytest.mark.parametrize("pass_fn", PASSES)
def test_gang_waits_for_its_rack_and_what_never_fits_is_reported(pass_fn: Any) -> None:
    cluster = ClusterState([node("a", n=8, rack="r1"), node("b", n=8, rack="r2"), node("c", n=8, rack="r2")])
    rack = Topology(TopologyLevel.RACK, required=True)
    jobs = [
        job("small", 0, 8, 80, topology=Topology()),  # takes a (first-fit), then c is the only free...
        job("blocker", 0, 8, 160),  # ... takes b: rack r2 is half used until t=20
        job("gang", 1, 8, 160, workers=2, topology=rack),  # needs both r2 nodes
        job("huge", 1, 8, 80, workers=4, topology=rack),  # no rack has 4 nodes
    ]
    r = simulate(cluster, jobs, "first-fit", pass_fn=pass_fn)
    assert times(r)["gang"] == (20, 30)
    assert [u[0] for u in r.unplaced] == ["huge"]
    assert "rack" in r.unplaced[0][1]


def test_failure_events_go_to_the_hook() -> None:
    cluster = ClusterState([node("a")])
    sim = Simulator(cluster, [job("j", 0, 4, 40)], None)
    sim.schedule(5, EventKind.FAILURE, "a")
    with pytest.raises(NotImplementedError):
        sim.run()
    seen: list[tuple[float, Any]] = []

    def on_failure(s: Simulator, payload: Any) -> None:
        seen.append((s.now, payload))
        s.preempt("j")  # the job restarts with the work it had done kept

    cluster = ClusterState([node("a")])
    sim = Simulator(cluster, [job("j", 0, 4, 40)], None, on_failure=on_failure)
    sim.schedule(5, EventKind.FAILURE, "a")
    r = sim.run()
    assert seen == [(5, "a")]
    assert r.jobs[0].end == 10 and r.jobs[0].placements == 2


def test_higher_priority_preempts_and_the_victim_resumes_with_its_work() -> None:
    cluster = ClusterState([node("a", n=8)])
    jobs = [job("low", 0, 8, 800, priority=0), job("high", 50, 8, 80, priority=10)]
    sim = Simulator(cluster, jobs, None)
    r = sim.run()
    assert sim.preemptions == 1
    assert times(r)["high"] == (50, 60)
    low = next(x for x in r.jobs if x.job.job_id == "low")
    assert low.end == 110 and low.placements == 2  # 50 s done before, 50 s after


def test_percentile_nearest_rank() -> None:
    assert percentile([], 99) == 0
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 101)), 99) == 99


def test_fleet_layout() -> None:
    c = build_fleet(1120)  # 70 racks of 16
    assert len(c) == 1120 and device_count(c) == 8960
    assert all(len({c.nodes[i].pools.pop()[1] for i in ids}) == 1 for ids in c.racks.values())
    assert len(build_fleet(16).pools) == 7  # a tiny fleet still has every model
    islands = {n.devices[0].pool[1]: len({d.island for d in n.devices}) for n in c.nodes}
    assert islands["H100 80GB"] == 1 and islands["MLU590"] == 2 and islands["H100 80GB PCIe"] == 4


def test_workload_is_seeded_and_rates_follow_speed() -> None:
    a, b = gavel_jobs(50, 64, 0.9, seed=3), gavel_jobs(50, 64, 0.9, seed=3)
    assert a == b
    rated = with_rates(a)
    assert all(dict(j.request.rates) == j.speed for j in rated)
