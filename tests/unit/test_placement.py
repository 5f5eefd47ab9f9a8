"""The placement engine's rules on small clusters one can check by hand."""

from __future__ import annotations

import pytest

from scheduler.placement import (
    ClusterState,
    DeviceState,
    NodeState,
    PlacementRequest,
    Topology,
    TopologyLevel,
    WorkerShape,
    make_policy,
    place,
)
from scheduler.placement.taskmix import TaskMix, fragmentation

H100 = ("nvidia", "H100")
A100 = ("nvidia", "A100 80GB")
ASCEND = ("ascend", "Ascend 910B")
SPEED = {H100: 990.0, A100: 312.0, ASCEND: None}


def node(
    name: str, pool: tuple[str, str], n: int, *, rack: str = "", islands: int = 1, cpu: int = 0
) -> NodeState:
    per = max(n // islands, 1)
    return NodeState(
        name=name,
        devices=[DeviceState(i, pool, memory_bytes=80 << 30, island=i // per) for i in range(n)],
        cpu_milli=cpu * 1000 if cpu else 1 << 62,
        memory_mib=1 << 62,
        rack=rack,
    )


def req(workers: int = 1, devices: int = 1, **kw: object) -> PlacementRequest:
    return PlacementRequest("j", workers=workers, shape=WorkerShape(devices=devices), **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["corral", "fgd", "best-fit", "first-fit"])
def policy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_gang_never_mixes_vendors(policy_name: str) -> None:
    cluster = ClusterState([node("n0", H100, 4), node("a0", ASCEND, 4)])
    policy = make_policy(policy_name)
    d = place(req(2, 4), cluster, policy)
    assert not d.placed
    assert "largest free block 4 devices" in d.reason
    d = place(req(1, 4), cluster, policy)
    assert d.placed and d.slots is not None
    assert {cluster.by_name[s.node_name].devices[0].pool for s in d.slots} in ({H100}, {ASCEND})


def test_all_or_nothing_leaves_the_cluster_unchanged(policy_name: str) -> None:
    cluster = ClusterState([node("n0", H100, 8), node("n1", H100, 8)])
    before = [n.signature for n in cluster]
    d = place(req(3, 8), cluster, make_policy(policy_name))
    assert not d.placed
    assert [n.signature for n in cluster] == before


def test_fastest_accepted_model_first() -> None:
    cluster = ClusterState([node("a0", A100, 8), node("h0", H100, 8)])
    d = place(req(1, 8), cluster, make_policy("corral"), SPEED.get)
    assert d.pool == H100
    # The job's own measured rates beat the catalog's TFLOPS.
    d = place(req(1, 8, rates=(("A100 80GB", 2.0), ("H100", 1.0))), cluster, make_policy("corral"), SPEED.get)
    assert d.pool == A100


def test_min_tflops_excludes_slow_and_unknown_models() -> None:
    cluster = ClusterState([node("a0", A100, 8), node("x0", ASCEND, 8)])
    d = place(req(1, 1, min_tflops=400), cluster, make_policy("corral"), SPEED.get)
    assert not d.placed and "no connected device matches" in d.reason


def test_rack_required_packs_into_the_tightest_rack() -> None:
    nodes = [node(f"r1-{i}", H100, 8, rack="r1") for i in range(4)]
    nodes += [node(f"r2-{i}", H100, 8, rack="r2") for i in range(2)]
    cluster = ClusterState(nodes)
    d = place(req(2, 8, topology=Topology(TopologyLevel.RACK, required=True)), cluster, make_policy("corral"))
    assert d.placed and d.slots is not None
    assert {cluster.by_name[s.node_name].rack for s in d.slots} == {"r2"}  # r2 fits exactly
    # 3 full nodes in one rack: only r1 has them.
    d = place(req(3, 8, topology=Topology(TopologyLevel.RACK, required=True)), cluster, make_policy("corral"))
    assert d.placed and d.slots is not None and {s.node_name[:2] for s in d.slots} == {"r1"}
    # 2 more full nodes in one rack: none left (r1 has 1, r2 none) -> waits, says the largest block.
    d = place(req(2, 8, topology=Topology(TopologyLevel.RACK, required=True)), cluster, make_policy("corral"))
    assert not d.placed and "in one rack" in d.reason and "largest free block 8 devices" in d.reason


def test_rack_preferred_spreads_when_it_must() -> None:
    cluster = ClusterState([node("r1-0", H100, 8, rack="r1"), node("r2-0", H100, 8, rack="r2")])
    d = place(req(2, 8, topology=Topology(TopologyLevel.RACK)), cluster, make_policy("corral"))
    assert d.placed and d.slots is not None and {s.node_name for s in d.slots} == {"r1-0", "r2-0"}


def test_gang_uses_the_fewest_nodes() -> None:
    cluster = ClusterState([node("n0", H100, 2), node("n1", H100, 8), node("n2", H100, 4)])
    d = place(req(4, 2), cluster, make_policy("corral"))
    assert d.placed and d.slots is not None
    assert {s.node_name for s in d.slots} == {"n1"}
    assert [s.rank for s in d.slots] == [0, 1, 2, 3]


def test_island_required_keeps_a_worker_on_one_island() -> None:
    cluster = ClusterState([node("pcie", A100, 8, islands=2)])
    cluster.allocate(cluster.by_name["pcie"], (0, 4), 1000, 0, 0)  # 3 free per island
    shape = WorkerShape(devices=4, island_required=True)
    assert not place(PlacementRequest("j", shape=shape), cluster, make_policy("corral")).placed
    d = place(
        PlacementRequest("j", shape=WorkerShape(devices=3, island_required=True)),
        cluster,
        make_policy("corral"),
    )
    assert d.placed and d.slots is not None
    assert {i // 4 for i in d.slots[0].device_indices} in ({0}, {1})


def test_shared_device_fills_a_partly_used_device_first() -> None:
    cluster = ClusterState([node("n0", H100, 2), node("n1", H100, 2)])
    policy = make_policy("corral")
    first = place(PlacementRequest("a", shape=WorkerShape(1, 500)), cluster, policy)
    second = place(PlacementRequest("b", shape=WorkerShape(1, 500)), cluster, policy)
    assert first.slots and second.slots
    assert first.slots[0] == second.slots[0].__class__(
        0, first.slots[0].node_name, first.slots[0].device_indices
    )
    assert second.slots[0].node_name == first.slots[0].node_name
    assert second.slots[0].device_indices == first.slots[0].device_indices  # 500 + 500 on one device
    assert sum(d.milli_free for n in cluster for d in n.devices) == 3000


def test_cpu_and_memory_must_fit() -> None:
    cluster = ClusterState([node("small", H100, 8, cpu=8), node("big", H100, 8, cpu=64)])
    d = place(PlacementRequest("j", shape=WorkerShape(1, cpu_milli=16_000)), cluster, make_policy("best-fit"))
    assert d.slots is not None and d.slots[0].node_name == "big"
    d = place(
        PlacementRequest("j", shape=WorkerShape(1, cpu_milli=100_000)), cluster, make_policy("best-fit")
    )
    assert not d.placed


def test_release_gives_everything_back() -> None:
    cluster = ClusterState([node("n0", H100, 8, cpu=32)])
    before = cluster.nodes[0].signature
    d = place(
        PlacementRequest("j", workers=2, shape=WorkerShape(2, cpu_milli=4000)), cluster, make_policy("fgd")
    )
    assert d.placed and cluster.nodes[0].signature != before
    for a in d.allocations:
        cluster.release(a)
    assert cluster.nodes[0].signature == before


def test_fgd_avoids_breaking_a_whole_node_for_a_small_task() -> None:
    """Two 8-device nodes, one with 1 device left: a 1-device task goes there, keeping the
    empty node for the 8-device tasks the mix expects."""
    cluster = ClusterState([node("empty", H100, 8), node("almost", H100, 8)])
    cluster.allocate(cluster.by_name["almost"], tuple(range(7)), 1000, 0, 0)
    mix = TaskMix.from_requests([(WorkerShape(8), ()), (WorkerShape(1), ())])
    for name in ("fgd", "corral"):
        d = place(req(1, 1), cluster, make_policy(name, mix))
        assert d.slots is not None and d.slots[0].node_name == "almost"
        for a in d.allocations:
            cluster.release(a)


def test_fragmentation_measure_by_hand() -> None:
    mix = TaskMix.from_requests([(WorkerShape(1, 500), ()), (WorkerShape(2), ())])
    devices = (("nvidia", "H100", 0, 1000), ("nvidia", "H100", 0, 300))
    # 500-milli task: only the 300 is too small -> 300; 2-device task: one whole device is
    # not enough -> all 1300 stranded. Equal weights.
    assert fragmentation(10, 10, devices, mix) == pytest.approx(0.5 * 300 + 0.5 * 1300)
    # No CPU left: everything is stranded for every shape.
    mix_cpu = TaskMix.from_requests([(WorkerShape(1, 500, cpu_milli=4), ())])
    assert fragmentation(2, 10, devices, mix_cpu) == pytest.approx(1300)


def test_unhealthy_and_unschedulable_are_skipped() -> None:
    cluster = ClusterState([node("n0", H100, 2), node("n1", H100, 2)])
    n0 = cluster.by_name["n0"]
    n0.devices[0].healthy = False
    cluster.update(n0)
    cluster.update(cluster.by_name["n1"], schedulable=False)
    assert not place(req(1, 2), cluster, make_policy("corral")).placed
    d = place(req(1, 1), cluster, make_policy("corral"))
    assert d.slots is not None and d.slots[0].node_name == "n0" and d.slots[0].device_indices == (1,)


def test_unknown_policy_is_named() -> None:
    with pytest.raises(ValueError, match="unknown placement policy 'fgdd'"):
        make_policy("fgdd")
