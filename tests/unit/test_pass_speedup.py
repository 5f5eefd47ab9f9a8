"""The scheduling pass with a rate baseline: fast models go to the jobs they speed up most."""

from __future__ import annotations

import pytest

from scheduler.placement.cluster import ClusterState, DeviceState, NodeState
from scheduler.placement.policies import make_policy
from scheduler.placement.request import PlacementRequest, WorkerShape
from scheduler.placement.speedup import RateBaseline
from scheduler.queueing import PassResult, PendingJob, QueueSet, schedule_pass

H100 = ("nvidia", "H100 80GB")
A100 = ("nvidia", "A100 80GB")
LLM = {"H100 80GB": 3.0, "A100 80GB": 1.0}  # gains 3× on the H100
CNN = {"H100 80GB": 1.2, "A100 80GB": 1.0}  # gains 1.2×


def job(job_id: str, rates: dict[str, float], t: float) -> PendingJob:
    request = PlacementRequest(job_id, shape=WorkerShape(devices=1), rates=tuple(rates.items()))
    return PendingJob(job_id, "default", 0, t, request)


def cluster() -> ClusterState:
    return ClusterState([NodeState("a0", [DeviceState(0, A100)]), NodeState("h0", [DeviceState(0, H100)])])


def pools(result: PassResult) -> dict[str, tuple[str, str]]:
    return {j: d.pool for j, d in result.placed}


def baseline() -> RateBaseline:
    b = RateBaseline(min_jobs=2)
    b.observe(job("l", LLM, 0).request)  # mean H100 = (3.0 + 1.2) / 2 = 2.1, A100 = 1.0
    b.observe(job("c", CNN, 0).request)
    return b


@pytest.mark.parametrize("policy", ["corral", "fgd", "best-fit"])
def test_low_gain_job_takes_the_slower_model_and_high_gain_job_the_fast_one(policy: str) -> None:
    # The CNN is first in line: ranked raw it takes the H100 and leaves the LLM the A100.
    pending = [job("cnn", CNN, 0), job("llm", LLM, 1)]
    raw = schedule_pass(pending, [], cluster(), QueueSet.default(), make_policy(policy))
    assert pools(raw) == {"cnn": H100, "llm": A100}

    b = baseline()
    result = schedule_pass(pending, [], cluster(), QueueSet.default(), make_policy(policy), baseline=b)
    assert pools(result) == {"cnn": A100, "llm": H100}
    assert len(b) == 2  # the pass reads the baseline, never observes


def test_low_gain_job_alone_prefers_the_slower_model_but_takes_the_fast_one_if_that_is_all() -> None:
    b = baseline()
    result = schedule_pass(
        [job("cnn", CNN, 0)], [], cluster(), QueueSet.default(), make_policy("corral"), baseline=b
    )
    assert pools(result) == {"cnn": A100}
    busy = ClusterState([NodeState("h0", [DeviceState(0, H100)])])
    result = schedule_pass(
        [job("cnn", CNN, 0)], [], busy, QueueSet.default(), make_policy("corral"), baseline=b
    )
    assert pools(result) == {"cnn": H100}  # every tier is still tried: nothing idles
