"""Hot spare pool: which idle nodes are held back, and which one replaces a failed node."""

from __future__ import annotations

from scheduler.reliability.spares import SpareCandidate, SparePolicy, choose_spares, distance, rank_spares


def node(
    name: str,
    rack: str,
    block: str = "b0",
    *,
    model: str = "H100",
    idle: bool = True,
    healthy: bool = True,
    schedulable: bool = True,
) -> SpareCandidate:
    return SpareCandidate(name, model, 8, idle, healthy, schedulable, {"rack": rack, "block": block})


def test_refills_each_model_preferring_the_fullest_rack_then_name() -> None:
    cands = [
        node("a1", "r1"),
        node("b1", "r2", idle=False),
        node("b2", "r2"),
        node("b3", "r2", idle=False),
        node("c1", "r3"),
        node("c2", "r3", idle=False),
        node("m1", "r4", model="MI300X"),
        node("m2", "r4", model="MI300X"),
    ]
    pool = choose_spares(cands, frozenset(), SparePolicy(per_model=2))
    # r2 holds three H100 nodes, r3 two, r1 one: b2 then c1; the MI300X pool fills separately
    assert pool == {"b2", "c1", "m1", "m2"}
    assert choose_spares(cands, frozenset(), SparePolicy()) == frozenset()


def test_keeps_current_spares_and_drops_the_unusable() -> None:
    base = [node("a1", "r1"), node("b1", "r2"), node("b2", "r2"), node("b3", "r2")]
    # a1 sits in the smallest rack but is already a spare: it stays
    assert choose_spares(base, frozenset({"a1"}), SparePolicy(per_model=2)) == {"a1", "b1"}
    for broken in (
        node("a1", "r1", healthy=False),
        node("a1", "r1", idle=False),
        node("a1", "r1", schedulable=False),
    ):
        cands = [broken, *base[1:]]
        assert choose_spares(cands, frozenset({"a1", "b1"}), SparePolicy(per_model=2)) == {"b1", "b2"}
    # a spare that left the cluster is gone too; a smaller pool sheds the extra
    assert choose_spares(base[1:], frozenset({"a1", "b3"}), SparePolicy(per_model=1)) == {"b3"}


def test_no_usable_nodes_no_spares() -> None:
    cands = [node("a1", "r1", healthy=False), node("a2", "r1", idle=False)]
    assert choose_spares(cands, frozenset({"a1"}), SparePolicy(per_model=3)) == frozenset()


def test_rank_spares_same_rack_then_block_then_rest() -> None:
    cands = [
        node("z-far", "r9", "b9"),
        node("y-block", "r5", "b1"),
        node("x-rack", "r1", "b1"),
        node("w-rack", "r1", "b1"),
        node("v-other-model", "r1", "b1", model="MI300X"),
        node("u-broken", "r1", "b1", healthy=False),
        node("t-not-spare", "r1", "b1"),
    ]
    spares = frozenset(c.node for c in cands) - {"t-not-spare"}
    near = {"rack": "r1", "block": "b1"}
    assert rank_spares(spares, cands, "H100", near) == ["w-rack", "x-rack", "y-block", "z-far"]
    assert rank_spares(spares, cands, "MI300X", near) == ["v-other-model"]
    # no labels on the failed node: by name
    assert rank_spares(spares, cands, "H100", {}) == ["w-rack", "x-rack", "y-block", "z-far"]


def test_distance() -> None:
    assert distance({"rack": "r1", "block": "b1"}, {"rack": "r1", "block": "b1"}) == 0
    assert distance({"rack": "r2", "block": "b1"}, {"rack": "r1", "block": "b1"}) == 1
    assert distance({"rack": "r2", "block": "b2"}, {"rack": "r1", "block": "b1"}) == 2
    assert distance({}, {}) == 2


def test_policy_problems() -> None:
    assert SparePolicy(per_model=2).problems() == []
    assert "per_model" in SparePolicy(per_model=-1).problems()[0]
