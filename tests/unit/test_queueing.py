"""One scheduling pass on small clusters built by hand, checkable on paper."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scheduler.placement.cluster import ClusterState, DeviceState, NodeState
from scheduler.placement.policies import Policy, make_policy
from scheduler.placement.request import PlacementRequest, Topology, TopologyLevel, WorkerShape
from scheduler.queueing import (
    PassResult,
    PendingJob,
    QueueSet,
    RunningJob,
    admission,
    queue_usage,
    schedule_pass,
)

H100 = ("nvidia", "H100")
ASCEND = ("ascend", "Ascend 910B")
POLICIES = ["fgd", "best-fit"]


def node(name: str, pool: tuple[str, str], n: int, rack: str = "") -> NodeState:
    return NodeState(name, [DeviceState(i, pool) for i in range(n)], rack=rack)


def job(
    job_id: str,
    devices: int = 1,
    workers: int = 1,
    queue: str = "default",
    priority: int = 0,
    t: float = 0.0,
    vendors: tuple[str, ...] = (),
    topology: TopologyLevel = TopologyLevel.NONE,
) -> PendingJob:
    request = PlacementRequest(
        job_id,
        workers=workers,
        shape=WorkerShape(devices=devices),
        vendors=vendors,
        topology=Topology(topology, required=topology is not TopologyLevel.NONE),
    )
    return PendingJob(job_id, queue, priority, t, request)


def start(
    cluster: ClusterState,
    job_id: str,
    node_name: str,
    devices: Sequence[int],
    queue: str = "default",
    priority: int = 0,
    since_checkpoint: float = 0.0,
    preemptible: bool = True,
) -> RunningJob:
    n = cluster.by_name[node_name]
    a = cluster.allocate(n, tuple(devices), 1000, 0, 0)
    pool = n.device(devices[0]).pool
    return RunningJob(job_id, queue, priority, 0.0, pool, (a,), len(devices), since_checkpoint, preemptible)


def free(cluster: ClusterState) -> dict[str, int]:
    return {n.name: sum(1 for d in n.devices if d.milli_free == 1000) for n in cluster}


def placed_nodes(result: PassResult) -> dict[str, set[str]]:
    return {j: {s.node_name for s in d.slots or ()} for j, d in result.placed}


def run_pass(
    pending: Sequence[PendingJob],
    cluster: ClusterState,
    queues: QueueSet | None = None,
    running: Sequence[RunningJob] = (),
    policy: str = "fgd",
) -> PassResult:
    p: Policy = make_policy(policy)
    return schedule_pass(pending, running, cluster, queues or QueueSet.default(), p, now=100.0)


# ----------------------------------------------------------------------------- vendors


@pytest.mark.parametrize("policy", POLICIES)
def test_gang_never_mixes_vendors(policy: str) -> None:
    cluster = ClusterState([node("gpu", H100, 4), node("npu", ASCEND, 4)])
    result = run_pass([job("big", devices=4, workers=2)], cluster, policy=policy)
    assert result.placed == []
    assert result.waiting["big"].startswith("waiting: needs 8 devices (2 × 4); largest free block 4 devices")

    result = run_pass([job("a", devices=4, t=1), job("b", devices=4, t=2)], cluster, policy=policy)
    assert placed_nodes(result) == {"a": {"gpu"}, "b": {"npu"}} or placed_nodes(result) == {
        "a": {"npu"},
        "b": {"gpu"},
    }
    assert {d.pool for _, d in result.placed} == {H100, ASCEND}
    assert free(cluster) == {"gpu": 0, "npu": 0}


# ----------------------------------------------------------------------------- quotas


QUOTAS = """
queues:
  - name: research
    quotas:
      - {vendor: ascend, model: "Ascend 910B", nominal: 4}
      - {vendor: nvidia, nominal: 0}
"""


@pytest.mark.parametrize("policy", POLICIES)
def test_quota_caps_placement_and_reason_names_it(policy: str) -> None:
    cluster = ClusterState([node("npu-0", ASCEND, 4), node("npu-1", ASCEND, 4), node("gpu", H100, 8)])
    queues = QueueSet.parse(QUOTAS)
    pending = [job(f"j{i}", devices=2, queue="research", t=i) for i in range(3)]
    result = run_pass(pending, cluster, queues, policy=policy)
    # Any vendor is accepted, but nvidia's quota is 0: everything goes to Ascend, 4 devices at most.
    assert [j for j, _ in result.placed] == ["j0", "j1"]
    assert all(d.pool == ASCEND for _, d in result.placed)
    assert result.waiting["j2"] == (
        "waiting: needs 2 devices; it would fit now; queue research at quota 4/4 on ascend Ascend 910B; "
        "queue research at quota 0/0 on nvidia (all models)"
    )


def test_a_quota_bound_job_is_also_told_the_largest_free_block() -> None:
    cluster = ClusterState([node("npu-0", ASCEND, 4), node("npu-1", ASCEND, 4)])
    running = [
        start(cluster, "r", "npu-0", [0, 1, 2, 3], queue="research"),
        start(cluster, "o", "npu-1", [0]),
    ]
    result = run_pass([job("j", devices=4, queue="research")], cluster, QueueSet.parse(QUOTAS), running)
    assert result.waiting["j"].startswith(
        "waiting: needs 4 devices; largest free block 3 devices; queue research"
    )
    assert free(cluster) == {"npu-0": 0, "npu-1": 3}  # the dry run left nothing behind


def test_quota_counts_running_jobs_and_other_queues_are_unlimited() -> None:
    cluster = ClusterState([node("npu-0", ASCEND, 8)])
    queues = QueueSet.parse(QUOTAS)
    running = [start(cluster, "old", "npu-0", [0, 1, 2], queue="research")]
    result = run_pass([job("r", devices=2, queue="research"), job("d", devices=5)], cluster, queues, running)
    assert [j for j, _ in result.placed] == ["d"]
    assert "queue research at quota 3/4 on ascend Ascend 910B" in result.waiting["r"]


COHORT = """
queues:
  - name: a
    cohort: lab
    quotas: [{vendor: ascend, model: "Ascend 910B", nominal: 4, borrowing_limit: 2}]
  - name: b
    cohort: lab
    quotas: [{vendor: ascend, model: "Ascend 910B", nominal: 4}]
"""


@pytest.mark.parametrize("policy", POLICIES)
def test_borrowing_within_cohort_up_to_borrowing_limit(policy: str) -> None:
    cluster = ClusterState([node("npu-0", ASCEND, 8), node("npu-1", ASCEND, 8)])
    queues = QueueSet.parse(COHORT)
    result = run_pass([job(f"a{i}", queue="a", t=i) for i in range(8)], cluster, queues, policy=policy)
    assert len(result.placed) == 6  # nominal 4 + borrowing limit 2, though b lends 4
    assert result.waiting["a6"] == (
        "waiting: needs 1 device; it would fit now; queue a at quota 6/6 on ascend Ascend 910B "
        "(nominal 4 + 2 borrowable in cohort lab)"
    )


def test_borrowing_only_what_the_cohort_leaves_unused() -> None:
    cluster = ClusterState([node("npu-0", ASCEND, 8), node("npu-1", ASCEND, 8)])
    queues = QueueSet.parse(COHORT)
    running = [start(cluster, "b-run", "npu-1", [0, 1, 2], queue="b")]
    # b uses 3 of its 4: b may borrow up to a's 4 unused; a may borrow b's 1 unused only.
    pending = [job(f"a{i}", queue="a", t=i) for i in range(8)] + [
        job(f"b{i}", queue="b", t=i) for i in range(8)
    ]
    result = run_pass(pending, cluster, queues, running)
    placed = [j for j, _ in result.placed]
    # Every device a leaves unused b can borrow and vice versa, so together they reach the cohort's 8.
    used = {q: sum(1 for j in placed if j.startswith(q)) for q in "ab"}
    assert used["a"] + used["b"] + 3 == 8
    assert "(nominal 4 + " in result.waiting[next(j for j in result.waiting if j.startswith("a"))]


def test_unlimited_borrowing_in_cohort_when_no_limit() -> None:
    queues = QueueSet.parse(COHORT)
    cluster = ClusterState([node("npu-0", ASCEND, 16)])
    result = run_pass([job(f"b{i}", queue="b", t=i) for i in range(12)], cluster, queues)
    assert len(result.placed) == 8  # b's 4 + all 4 of a's unused


# ----------------------------------------------------------------------------- fair share


WEIGHTS = """
queues:
  - {name: a, weight: 1}
  - {name: b, weight: 2}
"""


@pytest.mark.parametrize("policy", POLICIES)
def test_drf_lower_weighted_share_goes_first(policy: str) -> None:
    def scenario(weights: str) -> list[str]:
        cluster = ClusterState([node("n", H100, 6)])
        running = [
            start(cluster, "a-run", "n", [0, 1], queue="a"),
            start(cluster, "b-run", "n", [2, 3, 4], queue="b"),
        ]
        # Only one device is free. a holds 2/6 at weight 1, b 3/6 at weight 2: b's share is lower.
        pending = [job("a1", queue="a", t=0), job("b1", queue="b", t=5)]
        return [j for j, _ in run_pass(pending, cluster, QueueSet.parse(weights), running, policy).placed]

    assert scenario(WEIGHTS) == ["b1"]
    assert scenario(WEIGHTS.replace("weight: 2", "weight: 1")) == ["a1"]


def test_drf_recomputes_after_each_placement() -> None:
    cluster = ClusterState([node("n", H100, 4)])
    pending = [job(f"a{i}", queue="a", t=i) for i in range(4)] + [
        job(f"b{i}", queue="b", t=i) for i in range(4)
    ]
    result = run_pass(pending, cluster, QueueSet.parse(WEIGHTS.replace("weight: 2", "weight: 1")))
    assert [j for j, _ in result.placed] == ["a0", "b0", "a1", "b1"]  # alternate; ties go to the name


def test_a_job_room_was_made_for_goes_before_fair_share() -> None:
    """Victims were stopped for b1 in an earlier pass; a's lower share must not take the room."""
    from dataclasses import replace

    cluster = ClusterState([node("n", H100, 6)])
    running = [
        start(cluster, "a-run", "n", [0], queue="a"),
        start(cluster, "b-run", "n", [1, 2, 3, 4], queue="b"),
    ]
    pending = [job("a1", queue="a", t=0), replace(job("b1", queue="b", t=5), made_room=True)]
    queues = QueueSet.parse(WEIGHTS.replace("weight: 2", "weight: 1"))
    assert [j for j, _ in run_pass(pending, cluster, queues, running).placed] == ["b1"]


def test_within_queue_priority_then_age_then_id() -> None:
    cluster = ClusterState([node("n", H100, 3)])
    pending = [job("old", t=1), job("urgent", priority=5, t=9), job("x", t=3), job("w", t=3)]
    result = run_pass(pending, cluster)
    assert [j for j, _ in result.placed] == ["urgent", "old", "w"]
    assert set(result.waiting) == {"x"}


# ----------------------------------------------------------------------------- reservation


def gang_vs_stream(policy: str) -> tuple[int | None, set[str]]:
    """Each pass the oldest running job ends and three small jobs arrive; when does the
    4-device gang, queued first, start, and where did small jobs run meanwhile?"""
    cluster = ClusterState([node("n0", H100, 4), node("n1", H100, 4)])
    running = [start(cluster, f"r0-{i}", "n0", [i]) for i in range(3)]
    running += [start(cluster, f"r1-{i}", "n1", [i]) for i in range(2)]
    pending = [job("gang", devices=4, t=0)]
    backfilled: set[str] = set()
    for step in range(1, 10):
        pending += [job(f"s{step}-{k}", t=step) for k in range(3)]
        for a in running.pop(0).allocations:
            cluster.release(a)
        result = run_pass(pending, cluster, running=running, policy=policy)
        for j, d in result.placed:
            if j == "gang":
                return step, backfilled
            backfilled |= {s.node_name for s in d.slots or ()}
            running.append(RunningJob(j, "default", 0, step, d.pool, d.allocations, len(d.allocations)))
        assert result.reserved_for == "gang" or result.reserved_for is None
        assert result.reserved_for is None or result.waiting["gang"].endswith("reserved 1 node for it")
        placed = {j for j, _ in result.placed}
        pending = [p for p in pending if p.job_id not in placed]
    return None, backfilled


@pytest.mark.parametrize("policy", POLICIES)
def test_reservation_keeps_small_jobs_from_starving_a_gang(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, backfilled = gang_vs_stream(policy)
    assert started is not None and started <= 4
    assert backfilled  # small jobs kept running elsewhere meanwhile
    # Without the reservation the stream takes every device as it frees: the gang never starts.
    monkeypatch.setattr(admission, "choose_reservation", lambda *_: None)
    assert gang_vs_stream(policy)[0] is None


def test_reservation_hides_nodes_only_for_the_pass_and_small_jobs_backfill() -> None:
    cluster = ClusterState([node("n0", H100, 4), node("n1", H100, 4)])
    running = [start(cluster, "r0", "n0", [0, 1, 2]), start(cluster, "r1", "n1", [0])]
    pending = [job("gang", devices=4, t=0), job("s1", t=1), job("s2", t=2)]
    result = run_pass(pending, cluster, running=running)
    assert result.reserved_for == "gang" and result.reserved_nodes == ("n1",)
    assert (
        result.waiting["gang"]
        == "waiting: needs 4 devices; largest free block 3 devices; reserved 1 node for it"
    )
    assert placed_nodes(result) == {"s1": {"n0"}}  # backfill where the gang is not going
    assert result.waiting["s2"].endswith("1 matching node held for higher-ranked jobs")
    assert all(n.schedulable for n in cluster) and free(cluster) == {"n0": 0, "n1": 3}


def test_only_one_reservation_per_pass_and_not_for_single_devices() -> None:
    cluster = ClusterState([node("n0", H100, 2), node("n1", H100, 2), node("n2", H100, 2)])
    running = [start(cluster, f"r{i}", f"n{i}", [0]) for i in range(3)]
    pending = [job("g1", devices=2, t=0), job("g2", devices=2, t=1), job("s", t=2)]
    result = run_pass(pending, cluster, running=running)
    assert result.reserved_for == "g1"
    assert "reserved" not in result.waiting["g2"]
    assert len(result.placed) == 1  # s fills a hole on a node g1 is not waiting for


def test_rack_gang_reserves_in_one_rack() -> None:
    nodes = [node(f"a{i}", H100, 4, rack="ra") for i in range(2)] + [
        node(f"b{i}", H100, 4, rack="rb") for i in range(2)
    ]
    cluster = ClusterState(nodes)
    running = [start(cluster, "ra-job", "a0", [0, 1]), start(cluster, "rb-job", "b0", [0, 1, 2])]
    pending = [job("g", devices=4, workers=2, topology=TopologyLevel.RACK)]
    result = run_pass(pending, cluster, running=running)
    assert result.placed == [] and result.reserved_nodes == ("a0", "a1")


# ----------------------------------------------------------------------------- preemption


def test_no_second_round_of_victims_while_the_first_still_stop() -> None:
    """The live control plane requeues victims at once but their devices free only when they
    exit; meanwhile the preemptor must wait, not preempt more."""
    from dataclasses import replace

    cluster = ClusterState([node("n", H100, 4)])
    running = [start(cluster, "a", "n", [0, 1]), start(cluster, "b", "n", [2, 3])]
    hi = replace(job("hi", devices=2, priority=10), made_room=True, victims_stopping=True)
    result = run_pass([hi], cluster, running=running)
    assert result.preemptions == [] and result.placed == []
    assert "waiting for the jobs preempted for it to stop" in result.waiting["hi"]
    # Once they have stopped, it may preempt again if it still does not fit.
    result = run_pass([replace(hi, victims_stopping=False)], cluster, running=running)
    assert len(result.preemptions) == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_preemption_loses_least_work_with_a_minimal_set(policy: str) -> None:
    cluster = ClusterState([node("n", H100, 4)])
    running = [
        start(cluster, "a", "n", [0], since_checkpoint=1000),  # loses 1000 device-seconds
        start(cluster, "b", "n", [1], since_checkpoint=10),  # loses 10
        start(cluster, "c", "n", [2, 3], since_checkpoint=20),  # loses 40
    ]
    before = free(cluster)
    result = run_pass([job("hi", devices=2, priority=10)], cluster, running=running, policy=policy)
    # Cheapest first, b then c make room; b alone does not, and c alone does: only c goes.
    assert [(p.victim_job_id, p.for_job_id, p.checkpoint_first) for p in result.preemptions] == [
        ("c", "hi", True)
    ]
    assert result.preemptions[0].reason.startswith("preempted for hi (priority 10 > 0) after 100 s running")
    assert result.placed == []  # it starts once c has stopped
    assert result.waiting["hi"].endswith("preempting c to make room (they checkpoint first)")
    assert free(cluster) == before


def test_preemption_empties_the_cheapest_node_for_a_whole_node_worker() -> None:
    cluster = ClusterState([node("n0", H100, 4), node("n1", H100, 4)])
    costs = {"n0": [1, 2, 100, 100], "n1": [3, 4, 5, 6]}
    running = [
        start(cluster, f"{n}-{i}", n, [i], since_checkpoint=c)
        for n, cs in costs.items()
        for i, c in enumerate(cs)
    ]
    result = run_pass([job("big", devices=4, priority=1)], cluster, running=running)
    # Emptying n1 loses 18 device-seconds, n0 203; the two cheapest jobs on n0 would not help.
    assert sorted(p.victim_job_id for p in result.preemptions) == ["n1-0", "n1-1", "n1-2", "n1-3"]


def test_preemption_only_of_strictly_lower_priority_and_preemptible() -> None:
    cluster = ClusterState([node("n", H100, 2)])
    running = [
        start(cluster, "same", "n", [0], priority=5),
        start(cluster, "pinned", "n", [1], preemptible=False),
    ]
    result = run_pass([job("p", priority=5)], cluster, running=running)
    assert result.preemptions == [] and "p" in result.waiting
    result = run_pass([job("p", priority=6)], cluster, running=running)
    assert [p.victim_job_id for p in result.preemptions] == ["same"]


def test_lower_priority_victims_go_first_even_if_they_lose_more() -> None:
    cluster = ClusterState([node("n", H100, 2)])
    running = [
        start(cluster, "low", "n", [0], priority=-1, since_checkpoint=5000),
        start(cluster, "mid", "n", [1], priority=0, since_checkpoint=1),
    ]
    result = run_pass([job("p", priority=3)], cluster, running=running)
    assert [p.victim_job_id for p in result.preemptions] == ["low"]


def test_preemptors_landing_place_is_hidden_from_lower_ranked_jobs() -> None:
    cluster = ClusterState([node("n", H100, 4)])
    running = [start(cluster, "v", "n", [0, 1], since_checkpoint=1)]
    pending = [job("hi", devices=4, priority=9), job("small", t=1)]
    result = run_pass(pending, cluster, running=running)
    assert [p.victim_job_id for p in result.preemptions] == ["v"]
    assert result.placed == []  # small may not take the free devices hi is waiting for
    assert "held for higher-ranked jobs" in result.waiting["small"]
    assert all(n.schedulable for n in cluster)


def test_one_victim_is_not_promised_twice() -> None:
    cluster = ClusterState([node("n", H100, 1)])
    running = [start(cluster, "v", "n", [0])]
    result = run_pass([job("p1", priority=5), job("p2", priority=5, t=1)], cluster, running=running)
    assert [(p.victim_job_id, p.for_job_id) for p in result.preemptions] == [("v", "p1")]


def test_no_preemption_when_it_would_not_help() -> None:
    cluster = ClusterState([node("n", H100, 2)])
    running = [start(cluster, "v", "n", [0, 1])]
    result = run_pass([job("p", devices=4, priority=5)], cluster, running=running)
    assert result.preemptions == []


RECLAIM = """
queues:
  - {name: a, cohort: lab, quotas: [{vendor: nvidia, nominal: 4}]}
  - {name: b, cohort: lab, quotas: [{vendor: nvidia, nominal: 4}]}
"""


def test_queue_within_nominal_reclaims_from_a_borrowing_peer() -> None:
    cluster = ClusterState([node("n", H100, 8)])
    running = [
        start(cluster, f"b{i}", "n", [i], queue="b", priority=10, since_checkpoint=i) for i in range(8)
    ]
    result = run_pass([job("a1", devices=2, queue="a")], cluster, QueueSet.parse(RECLAIM), running)
    assert [p.victim_job_id for p in result.preemptions] == ["b0", "b1"]  # least work lost first
    assert (
        "queue a reclaims its nominal quota on nvidia H100 that queue b is borrowing"
        in result.preemptions[0].reason
    )


def test_no_reclaim_from_a_peer_within_its_nominal() -> None:
    cluster = ClusterState([node("n", H100, 8)])
    running = [start(cluster, f"b{i}", "n", [i], queue="b", priority=10) for i in range(4)]
    running += [start(cluster, f"a{i}", "n", [4 + i], queue="a", priority=10) for i in range(4)]
    result = run_pass([job("a-more", queue="a")], cluster, QueueSet.parse(RECLAIM), running)
    assert result.preemptions == []


# ----------------------------------------------------------------------------- the rest


def scenario() -> tuple[PassResult, dict[str, int]]:
    cluster = ClusterState([node(f"n{i}", H100 if i % 2 else ASCEND, 8, rack=f"r{i // 4}") for i in range(8)])
    running = [start(cluster, f"r{i}", f"n{i}", list(range(1 + i % 5)), priority=i % 3) for i in range(8)]
    pending = [
        job(f"p{i}", devices=1 + i % 4, workers=1 + i % 3, queue="ab"[i % 2], priority=i % 4, t=i % 5)
        for i in range(30)
    ]
    result = run_pass(pending, cluster, QueueSet.parse(COHORT), running)
    return result, free(cluster)


def test_same_inputs_same_result_and_cluster_left_consistent() -> None:
    first, free_after = scenario()
    second, _ = scenario()
    assert repr(first) == repr(second)
    assert set(first.waiting) | {j for j, _ in first.placed} == {f"p{i}" for i in range(30)}
    placed_devices = sum(len(a.device_indices) for _, d in first.placed for a in d.allocations)
    assert sum(free_after.values()) == 64 - sum(1 + i % 5 for i in range(8)) - placed_devices


def test_unknown_queue_waits_with_the_known_ones_listed() -> None:
    cluster = ClusterState([node("n", H100, 1)])
    result = run_pass([job("j", queue="nope")], cluster)
    assert result.waiting["j"] == "waiting: unknown queue 'nope'; known queues: default"


def test_cpu_only_and_unmatched_requests_get_engine_reasons() -> None:
    cluster = ClusterState([node("n", H100, 1)])
    result = run_pass([job("cpu", devices=0, workers=2), job("npu", vendors=("ascend",))], cluster)
    assert "cpu" in placed_nodes(result)
    assert result.waiting["npu"].startswith("waiting: no connected device matches")


def test_queue_usage_rows() -> None:
    cluster = ClusterState([node("npu", ASCEND, 8), node("gpu", H100, 8)])
    queues = QueueSet.parse(QUOTAS)
    running = [start(cluster, "r", "npu", [0, 1], queue="research"), start(cluster, "d", "gpu", [0])]
    pending = [job("p", devices=2, queue="research")]
    rows = {u.name: u for u in queue_usage(running, queues, cluster, pending)}
    research = rows["research"]
    assert [
        (r.selector, r.nominal, r.borrowing_limit, r.in_use, r.pending_devices) for r in research.rows
    ] == [
        ("ascend Ascend 910B", 4, 0, 2.0, 2.0),
        ("nvidia (all models)", 0, 0, 0.0, 2.0),
    ]
    assert (research.running_jobs, research.pending_jobs, research.in_use) == (1, 1, 2.0)
    assert [(r.selector, r.nominal, r.in_use) for r in rows["default"].rows] == [("nvidia H100", None, 1.0)]
