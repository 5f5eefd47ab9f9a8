"""Comparative-advantage ranking (scheduler/placement/speedup.py), checkable on paper."""

from __future__ import annotations

import pytest

from scheduler.placement import ClusterState, DeviceState, NodeState, PlacementRequest, WorkerShape
from scheduler.placement.engine import candidate_pools
from scheduler.placement.speedup import MIN_JOBS, RateBaseline

H100 = ("nvidia", "H100 80GB")
A100 = ("nvidia", "A100 80GB")
ASCEND = ("ascend", "Ascend 910B")


def req(job_id: str, **rates: float) -> PlacementRequest:
    return PlacementRequest(
        job_id,
        shape=WorkerShape(devices=1),
        rates=tuple((m.replace("_", " "), r) for m, r in rates.items()),
    )


def llm(job_id: str = "llm") -> PlacementRequest:
    return req(job_id, H100_80GB=3.0, A100_80GB=1.0)


def cnn(job_id: str = "cnn") -> PlacementRequest:
    return req(job_id, H100_80GB=1.2, A100_80GB=1.0)


def cluster() -> ClusterState:
    return ClusterState([NodeState("a0", [DeviceState(0, A100)]), NodeState("h0", [DeviceState(0, H100)])])


def first_choice(request: PlacementRequest) -> tuple[str, str]:
    tiers = candidate_pools(request, cluster(), lambda _: None)
    assert len(tiers[0]) == 1
    return tiers[0][0]


def test_relative_ranking_sends_the_cnn_to_the_a100_and_keeps_the_llm_on_the_h100() -> None:
    b = RateBaseline(min_jobs=1)
    b.observe(llm())
    b.observe(cnn())
    assert len(b) == 2 and b.count("H100 80GB") == 2
    # mean H100 = (3.0 + 1.2) / 2 = 2.1, mean A100 = (1.0 + 1.0) / 2 = 1.0
    assert b.mean("H100 80GB") == pytest.approx(2.1)
    assert b.mean("A100 80GB") == pytest.approx(1.0)
    rel_llm, rel_cnn = dict(b.relative(llm()).rates), dict(b.relative(cnn()).rates)
    assert rel_llm == pytest.approx({"H100 80GB": 3.0 / 2.1, "A100 80GB": 1.0})  # 1.43 > 1
    assert rel_cnn == pytest.approx({"H100 80GB": 1.2 / 2.1, "A100 80GB": 1.0})  # 0.57 < 1
    # raw rates send both to the H100; relative ones only the LLM
    assert first_choice(llm()) == first_choice(cnn()) == H100
    assert first_choice(b.relative(llm())) == H100
    assert first_choice(b.relative(cnn())) == A100
    # still every tier: the CNN takes the H100 when the A100 is full
    tiers = candidate_pools(b.relative(cnn()), cluster(), lambda _: None)
    assert [p for tier in tiers for p in tier] == [A100, H100]


def test_model_names_compare_through_the_catalog_key() -> None:
    b = RateBaseline(min_jobs=1)
    b.observe(req("x", H100_80GB=2.0))
    b.observe(PlacementRequest("y", rates=(("h100 80gb", 4.0),)))
    assert b.count("H100 80GB") == 2 and b.mean("H100 80GB") == pytest.approx(3.0)


def test_unknown_models_and_no_rates_leave_the_request_unchanged() -> None:
    b = RateBaseline(min_jobs=1)
    b.observe(llm())
    plain = PlacementRequest("plain", shape=WorkerShape(devices=1))
    assert b.relative(plain) is plain
    # Ascend never declared: the request keeps its raw rates (relative and raw never mix)
    with_ascend = req("z", H100_80GB=3.0, Ascend_910B=1.1)
    assert b.relative(with_ascend) is with_ascend
    assert RateBaseline().relative(llm()) == llm()
    b.observe(plain)  # counted as a job, declares nothing
    assert len(b) == 2 and b.count("H100 80GB") == 1


def test_first_jobs_keep_raw_rates_until_the_baseline_has_seen_enough() -> None:
    b = RateBaseline()
    assert b.min_jobs == MIN_JOBS == 5
    b.observe(cnn("c0"))
    # A lone job divided by itself would get 1.0 everywhere and its tiers would collapse:
    # it keeps its raw rates instead and tries the H100 first.
    assert b.mean("H100 80GB") is None
    assert b.relative(cnn()) == cnn()
    assert first_choice(b.relative(cnn())) == H100
    for i in range(3):
        b.observe(llm(f"l{i}"))
    assert b.relative(cnn()) == cnn()  # 4 jobs seen: still raw
    b.observe(cnn("c1"))
    # 5 jobs: mean H100 = (2 × 1.2 + 3 × 3.0) / 5 = 2.28; the CNN now ranks the A100 first
    assert b.mean("H100 80GB") == pytest.approx(2.28)
    assert dict(b.relative(cnn()).rates)["H100 80GB"] == pytest.approx(1.2 / 2.28)
    assert first_choice(b.relative(cnn())) == A100
    assert first_choice(b.relative(llm())) == H100


def test_relative_does_not_change_the_baseline() -> None:
    b = RateBaseline(min_jobs=1)
    b.observe(llm())
    b.relative(cnn())
    assert len(b) == 1 and b.mean("H100 80GB") == pytest.approx(3.0)
    with pytest.raises(ValueError):
        RateBaseline(min_jobs=0)
