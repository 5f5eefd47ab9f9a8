"""Checkpoint-interval math, the failure-rate estimator and IntervalPolicy."""

from __future__ import annotations

import math
import random

import pytest

from scheduler.reliability.interval import (
    FailureRateEstimator,
    FailureRates,
    IntervalPolicy,
    ettr_bound,
    ettr_optimum,
    ettr_periodic,
    gang_bucket,
    optimal_interval,
    young_interval,
)


def test_young_by_hand() -> None:
    # √(2 · 5 s · 10,000 s) = √100,000
    assert young_interval(5, 10_000) == pytest.approx(316.227766, rel=1e-6)
    assert young_interval(60, 11_160) == pytest.approx(math.sqrt(1_339_200))
    assert young_interval(0, 100) == 0


def test_daly_close_to_young_when_cost_small_and_falls_back_to_m() -> None:
    c, m = 5.0, 10_000.0
    x = c / (2 * m)
    daly = math.sqrt(2 * c * m) * (1 + math.sqrt(x) / 3 + x / 9) - c
    assert optimal_interval(c, m) == pytest.approx(daly)
    assert optimal_interval(c, m) == pytest.approx(young_interval(c, m), rel=0.02)
    assert optimal_interval(300, 100) == 100  # C ≥ 2M: Daly's answer is M
    assert optimal_interval(0, 100) == 0
    # the restart cost does not move the optimum under exponential failures
    assert optimal_interval(c, m, restart_s=600) == optimal_interval(c, m)
    with pytest.raises(ValueError):
        optimal_interval(-1, 100)
    with pytest.raises(ValueError):
        optimal_interval(1, 0)


def test_daly_interval_maximises_the_exact_model() -> None:
    c, m, r = 60.0, 11_160.0, 65.0
    best = optimal_interval(c, m, r)
    for factor in (0.8, 0.9, 1.1, 1.25):
        assert ettr_periodic(best, c, m, r) >= ettr_periodic(best * factor, c, m, r)


def test_bound_by_hand() -> None:
    # 1 − √(2·1/10,000) − 60/10,000 = 1 − 0.0141421 − 0.006
    assert ettr_bound(1, 10_000, 60) == pytest.approx(1 - math.sqrt(2e-4) - 0.006)
    assert ettr_bound(50, 10_000, 60) == pytest.approx(1 - 0.1 - 0.006)
    assert ettr_bound(1000, 100, 60) == 0.0  # clamped
    # first order is an approximation: the exact optimum is a little higher when C/M grows
    assert ettr_optimum(60, 11_160, 65) > ettr_bound(60, 11_160, 65)
    assert ettr_optimum(1, 11_160, 65) == pytest.approx(ettr_bound(1, 11_160, 65), abs=5e-4)


def test_estimator_prior_then_converges() -> None:
    est = FailureRateEstimator(prior_failures=1, prior_device_hours=50_000)
    assert est.rate_per_device_hour() == pytest.approx(2e-5)
    assert est.job_mtbf_s(8) == pytest.approx(3600 * 50_000 / 8)
    true_rate, devices, rng = 1.0e-4, 4096, random.Random(7)
    hours = 0.0
    for _ in range(5000):
        gap = rng.expovariate(true_rate * devices)  # hours until the gang's next failure
        est.observe(devices * gap, failures=1)
        hours += gap
    assert est.failures == 5000
    assert est.rate_per_device_hour() == pytest.approx(true_rate, rel=0.05)
    assert est.job_mtbf_s(devices) == pytest.approx(3600 / (true_rate * devices), rel=0.05)


def test_estimator_prior_washes_out_whichever_way_it_is_wrong() -> None:
    true_rate, devices = 2e-5, 16_384
    for prior_hours in (5_000.0, 500_000.0):
        est = FailureRateEstimator(prior_failures=1, prior_device_hours=prior_hours)
        # ten days of a 16,384-device gang at the true rate: ~79 failures
        hours = 240.0
        est.observe(devices * hours, failures=round(true_rate * devices * hours))
        assert est.rate_per_device_hour() == pytest.approx(true_rate, rel=0.15)


def test_unwarned_share_assumes_no_warnings_until_seen() -> None:
    est = FailureRateEstimator()
    assert est.unwarned_share() == 1.0
    est.observe(1e6, failures=99, warned=30)
    assert est.unwarned_share() == pytest.approx(70 / 100)
    assert est.job_mtbf_s(1000, unwarned_only=True) == pytest.approx(est.job_mtbf_s(1000) / 0.7)
    with pytest.raises(ValueError):
        est.observe(1, failures=1, warned=2)


def test_failure_rates_keyed_by_model_and_gang_bucket() -> None:
    assert [gang_bucket(n) for n in (1, 2, 3, 8, 9, 16_384, 16_385)] == [1, 2, 4, 8, 16, 16_384, 32_768]
    rates = FailureRates()
    rates.observe("H100", 1000, hours=10, failures=3)
    assert rates.estimator("H100", 1024) is rates.estimator("H100", 600)
    assert rates.estimator("H100", 1024).device_hours == 10_000
    assert rates.estimator("A100", 1024).failures == 0
    assert rates.estimator("H100", 8).failures == 0


def test_fixed_policy() -> None:
    p = IntervalPolicy.fixed(1800)
    p.report_checkpoint(5)
    assert p.interval_s() == 1800
    assert p.why() == "fixed: every 30 min (set by the job)"
    with pytest.raises(ValueError):
        IntervalPolicy.fixed(0)
    with pytest.raises(ValueError):
        IntervalPolicy(mode="auto")  # no estimator


def test_auto_policy_follows_rate_and_measured_cost() -> None:
    est = FailureRateEstimator()
    p = IntervalPolicy.auto(est, 16_384, "H100")
    assert p.checkpoint_cost_s() == 30  # assumed until a checkpoint is measured
    assert "assumed (prior; none observed yet)" in p.why()
    assert "an assumed 30 s per checkpoint (none measured yet)" in p.why()
    # 54 days of Llama 3: 419 failures on 16,384 devices
    est.observe(16_384 * 54 * 24, failures=419)
    for cost in (4.0, 6.0):
        p.report_checkpoint(cost)
    assert p.checkpoint_cost_s() == 5
    m = est.job_mtbf_s(16_384)
    assert m / 3600 == pytest.approx(3.1, abs=0.05)
    assert p.interval_s() == pytest.approx(optimal_interval(5, m))
    assert p.why() == (
        f"auto: every {round(p.interval_s() / 60)} min — Young/Daly from 1 failure per 3.1 h observed "
        "for 16,384 × H100 and 5 s per checkpoint"
    )
    slower = IntervalPolicy.auto(est, 16_384, "H100")
    slower.report_checkpoint(60)
    assert slower.interval_s() > p.interval_s()
    assert slower.why().startswith("auto: every 19 min")


def test_auto_policy_bounds_and_window() -> None:
    est = FailureRateEstimator()
    tiny = IntervalPolicy.auto(est, 1, "H100", max_s=4 * 3600)
    tiny.report_checkpoint(5)
    assert tiny.interval_s() == 4 * 3600  # one device fails about once in 50,000 h
    assert "(held at the 4.0 h maximum)" in tiny.why()
    busy = FailureRateEstimator()
    busy.observe(1000, failures=10_000)
    fast = IntervalPolicy.auto(busy, 16_384, "H100", min_s=30)
    fast.report_checkpoint(0.5)
    assert fast.interval_s() == 30 and "(held at the 30 s minimum)" in fast.why()
    w = IntervalPolicy.auto(est, 8, "H100", window=2)
    for cost in (100.0, 1.0, 3.0):
        w.report_checkpoint(cost)
    assert w.checkpoint_cost_s() == 2  # the oldest measurement aged out


def test_proactive_policy_tightens_while_suspect() -> None:
    est = FailureRateEstimator()
    est.observe(16_384 * 1000, failures=300, warned=90)
    plain = IntervalPolicy.auto(est, 16_384, "H100")
    pro = IntervalPolicy.auto(est, 16_384, "H100", proactive=True, warning_lead_s=600)
    for p in (plain, pro):
        p.report_checkpoint(1)
    # warned failures are covered by on-warning checkpoints: periodic ones can be sparser
    assert pro.interval_s() > plain.interval_s()
    assert "30% of failures warned ahead" in pro.why()
    calm = pro.interval_s(now=0)
    pro.warn("gpu-3", now=100)
    assert pro.interval_s(now=200) < calm
    assert "tightened while 1 device SUSPECT" in pro.why(now=200)
    assert pro.interval_s(now=100 + 1201) == calm  # the warning lapsed after 2 × lead
    pro.warn("gpu-3", now=5000)
    pro.resolve("gpu-3")
    assert pro.interval_s(now=5001) == calm
