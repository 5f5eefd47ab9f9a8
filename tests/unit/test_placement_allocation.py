"""Vendor allocation rules in placement, on hand-built clusters.

The rules are catalog data (scheduler/catalog/devices.yaml `allocation`): Kunlunxin P800 takes
1, 2, 4 or 8 cards per worker, 1, 2 or 4 within one XPU Link island (HAMi's kunlun rule,
research §7.6/§7.7); an Ascend 910C's dies go in index-aligned pairs (research §1.7, HAMi).
Islands are what the agent reports as peers: here, as `DeviceState.island`.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from scheduler.placement.fit import device_options, largest_block, worker_slots
from scheduler.placement.request import WHOLE, Pool

P800: Pool = ("kunlunxin", "P800")
A3: Pool = ("ascend", "Ascend 910C")
H100: Pool = ("nvidia", "H100 80GB")
P800_ISLANDS = (0, 0, 0, 0, 4, 4, 4, 4)  # two 4-card XPU Link groups, named by their lowest index


def node(
    name: str, pool: Pool, islands: Sequence[int], busy: Sequence[int] = (), sick: Sequence[int] = ()
) -> NodeState:
    devices = [
        DeviceState(
            i,
            pool,
            memory_bytes=64 << 30,
            island=island,
            milli_free=0 if i in busy else WHOLE,
            healthy=i not in sick,
        )
        for i, island in enumerate(islands)
    ]
    n = NodeState(name, devices)
    n.refresh()  # as ClusterState.add does, for nodes tested on their own
    return n


def req(devices: int = 1, workers: int = 1, milli: int = WHOLE, **kw: object) -> PlacementRequest:
    shape = WorkerShape(devices=devices, device_milli=milli)
    return PlacementRequest("j", workers=workers, shape=shape, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["corral", "fgd", "best-fit", "first-fit"])
def policy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def devices_of(
    cluster: ClusterState, request: PlacementRequest, policy_name: str = "corral"
) -> list[tuple[str, tuple[int, ...]]]:
    d = place(request, cluster, make_policy(policy_name))
    assert d.placed and d.slots is not None, d.reason
    return [(s.node_name, s.device_indices) for s in d.slots]


# --- Kunlunxin P800: 1, 2, 4 or 8 cards, within one island ----------------------------------


@pytest.mark.parametrize("count", [3, 5, 6, 7])
def test_p800_refuses_counts_the_vendor_does_not_allow(count: int) -> None:
    cluster = ClusterState([node("x0", P800, P800_ISLANDS)])
    d = place(req(count, models=("P800",)), cluster, make_policy("corral"))
    assert not d.placed
    assert d.reason.startswith("waiting: no connected device matches")
    assert "P800 takes 1, 2, 4 or 8 devices per worker" in d.reason
    # Asked by vendor only, the reason names the model and the count refused.
    d = place(req(count, vendors=("kunlunxin",)), cluster, make_policy("corral"))
    assert not d.placed
    rule = "P800 takes 1, 2, 4 or 8 devices per worker, within one interconnect island where they fit in one"
    assert f"{rule}, not {count}" in d.reason


def test_a_refused_pool_leaves_others_open() -> None:
    cluster = ClusterState([node("x0", P800, P800_ISLANDS), node("n0", H100, [0] * 8)])
    assert devices_of(cluster, req(3)) == [("n0", (0, 1, 2))]
    assert not req(3).accepts_pool(P800) and req(3).names_pool(P800)
    assert req(4).accepts_pool(P800)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_p800_small_counts_stay_in_one_island(policy_name: str, count: int) -> None:
    cluster = ClusterState([node("x0", P800, P800_ISLANDS)])
    for _ in range(8 // count):
        [(_, devices)] = devices_of(cluster, req(count), policy_name)
        assert len(devices) == count
        assert len({P800_ISLANDS[i] for i in devices}) == 1


def test_p800_four_cards_wait_for_a_whole_island() -> None:
    # Card 0 and card 4 busy: six free, but no island has four.
    cluster = ClusterState([node("x0", P800, P800_ISLANDS, busy=(0, 4))])
    d = place(req(4), cluster, make_policy("corral"))
    assert not d.placed
    assert "largest free block 2 devices" in d.reason
    # A model without the rule spans the islands instead.
    cluster = ClusterState([node("n0", H100, P800_ISLANDS, busy=(0, 4))])
    assert devices_of(cluster, req(4)) == [("n0", (1, 2, 3, 5))]


def test_p800_tightest_island_keeps_a_whole_one_free() -> None:
    cluster = ClusterState([node("x0", P800, P800_ISLANDS, busy=(0,))])
    [(_, devices)] = devices_of(cluster, req(2))
    assert set(devices) <= {1, 2, 3}  # the part-used island, so 4-7 stay whole for a 4-card worker
    assert devices_of(cluster, req(4)) == [("x0", (4, 5, 6, 7))]


def test_p800_eight_cards_take_both_islands_whole() -> None:
    cluster = ClusterState([node("x0", P800, P800_ISLANDS)])
    assert devices_of(cluster, req(8)) == [("x0", tuple(range(8)))]
    cluster = ClusterState([node("x0", P800, P800_ISLANDS, busy=(7,))])
    d = place(req(8), cluster, make_policy("corral"))
    assert not d.placed and "largest free block 4 devices" in d.reason


def test_p800_sixteen_cards_are_whole_islands_only() -> None:
    islands = [0] * 4 + [4] * 4 + [8] * 4 + [12] * 4
    n = node("x0", P800, islands, busy=(0,))
    shape = WorkerShape(devices=8)
    [devices] = device_options(n, P800, shape)
    assert devices == (4, 5, 6, 7, 8, 9, 10, 11)  # two whole islands, not the part-used one


def test_gang_counts_workers_per_node_under_the_rule() -> None:
    # Free: 0, 1, 2 in island 0 and 4 in island 4. Four free cards, but only one 2-card worker
    # fits within an island (a plain count would say two).
    half = node("x0", P800, P800_ISLANDS, busy=(3, 5, 6, 7))
    assert worker_slots(half, P800, WorkerShape(devices=2)) == 1
    assert worker_slots(half, P800, WorkerShape(devices=3)) == 0
    assert worker_slots(node("n0", H100, P800_ISLANDS, busy=(3, 5, 6, 7)), H100, WorkerShape(devices=2)) == 2
    cluster = ClusterState([half])
    topology = Topology(TopologyLevel.NODE, required=True)
    d = place(req(2, workers=2, topology=topology), cluster, make_policy("corral"))
    assert not d.placed and d.largest_block == 2
    cluster = ClusterState(
        [node("x0", P800, P800_ISLANDS, busy=(3, 5, 6, 7)), node("x1", P800, P800_ISLANDS)]
    )
    slots = devices_of(cluster, req(2, workers=2, topology=topology))
    assert [name for name, _ in slots] == ["x1", "x1"]
    assert all(len({P800_ISLANDS[i] for i in devices}) == 1 for _, devices in slots)


def test_p800_shares_one_card() -> None:
    cluster = ClusterState([node("x0", P800, P800_ISLANDS)])
    assert devices_of(cluster, req(1, milli=500)) == [("x0", (0,))]


def test_p800_without_reported_islands_is_not_constrained() -> None:
    # An agent that reports no peers gives every card its own island: the rule cannot keep a
    # worker in an island nobody knows, so any free cards do.
    cluster = ClusterState([node("x0", P800, list(range(8)), busy=(0, 4))])
    [(_, devices)] = devices_of(cluster, req(4))
    assert len(devices) == 4


def test_waiting_reason_states_the_rule() -> None:
    text = req(4, workers=2, models=("P800",)).describe()
    assert text == (
        "8 devices (2 × 4) P800 (P800 takes 1, 2, 4 or 8 devices per worker, within one interconnect"
        " island where they fit in one)"
    )
    assert req(4, models=("H100 80GB",)).describe() == "4 devices H100 80GB"


# --- Ascend 910C: dies in index-aligned pairs -------------------------------------------------

A3_NODE = [0] * 16  # 8 NPUs of 2 dies, all on HCCS


def test_910c_refuses_odd_counts_and_shares() -> None:
    cluster = ClusterState([node("a0", A3, A3_NODE)])
    for request in (
        req(1, models=("Ascend 910C",)),
        req(3, models=("Ascend 910C",)),
        req(1, milli=500, vendors=("ascend",)),
    ):
        d = place(request, cluster, make_policy("corral"))
        assert not d.placed
        assert "takes devices in index-aligned groups of 2" in d.reason


def test_910c_takes_whole_pairs(policy_name: str) -> None:
    # Die 1 is held (its NPU's other die, 0, is then no use to a pair-wise worker).
    cluster = ClusterState([node("a0", A3, A3_NODE, busy=(1,))])
    [(_, devices)] = devices_of(cluster, req(2), policy_name)
    assert devices[0] % 2 == 0 and devices[1] == devices[0] + 1 and 0 not in devices
    [(_, devices)] = devices_of(cluster, req(4), policy_name)
    assert len(devices) == 4 and all(i % 2 == 0 for i in devices[::2])
    assert all(devices[k + 1] == devices[k] + 1 for k in range(0, 4, 2))


def test_910c_free_dies_without_a_whole_pair_do_not_fit() -> None:
    cluster = ClusterState([node("a0", A3, A3_NODE, busy=range(1, 16, 2))])  # eight free dies, no pair
    d = place(req(2), cluster, make_policy("corral"))
    assert not d.placed and "largest free block 0 devices" in d.reason
    n = cluster.by_name["a0"]
    assert worker_slots(n, A3, WorkerShape(devices=2)) == 0
    assert largest_block(n, A3, WorkerShape(devices=2)) == 0


def test_910c_unhealthy_die_retires_its_pair() -> None:
    cluster = ClusterState([node("a0", A3, [0, 0, 0, 0], sick=(2,))])
    assert devices_of(cluster, req(2)) == [("a0", (0, 1))]
    d = place(req(2), cluster, make_policy("corral"))
    assert not d.placed


def test_nodes_with_as_many_free_dies_but_different_pairs_are_told_apart(policy_name: str) -> None:
    # Both nodes have two free dies on one island; only a0's are one NPU. State-only policies
    # score one node per group of identical states, so the states must differ.
    a0 = node("a0", A3, [0, 0, 0, 0], busy=(2, 3))  # free 0, 1: a pair
    b0 = node("b0", A3, [0, 0, 0, 0], busy=(0, 3))  # free 1, 2: two halves
    cluster = ClusterState([b0, a0])
    assert a0.signature != b0.signature
    assert devices_of(cluster, req(2), policy_name) == [("a0", (0, 1))]


def test_signature_of_unruled_models_is_unchanged() -> None:
    n = node("n0", H100, [0] * 8)
    assert n.signature[5] == ()
