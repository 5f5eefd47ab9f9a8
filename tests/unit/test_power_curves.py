"""Power → throughput curves: the packaged H100 calibration, validation, TDP scaling, blending."""

from __future__ import annotations

import pytest

from scheduler.power.curves import (
    CurveError,
    Observation,
    PowerCurve,
    blend,
    check_points,
    curve_for,
    packaged_curves,
    parse_curves,
    reference_curve,
)


def test_h100_curve_is_the_calibration_normalised() -> None:
    c = curve_for("NVIDIA H100 80GB HBM3", 700, 200, 700)
    # 569.4 / 678.6 TFLOPS at 500 W; 172.6 / 678.6 at 200 W (the calibration fixture)
    assert c.throughput(500) == pytest.approx(569.4 / 678.6)
    assert c.throughput(200) == pytest.approx(172.6 / 678.6)
    assert c.throughput(700) == 1.0
    assert c.throughput(900) == 1.0 and c.throughput(50) == c.throughput(200)  # clamped
    assert c.power_for(569.4 / 678.6) == pytest.approx(500)
    assert "h100_sxm_powercap_bf16.json" in c.source


def test_points_below_the_hull_stay_below_the_curve() -> None:
    entry = next(iter(packaged_curves().values()))
    assert [w for w, _ in entry.below_hull] == [250, 300, 350]
    for w, tflops in entry.below_hull:
        assert tflops / 678.6 <= entry.curve.throughput(w)


@pytest.mark.parametrize(
    ("points", "words"),
    [
        ([(200, 0.2), (300, 0.6), (400, 0.9), (500, 0.8), (700, 1.0)], "falls"),
        ([(200, 0.2), (300, 0.3), (400, 0.6), (700, 1.0)], "point 2 (400 W)"),
        ([(200, 0.2), (200, 0.3), (700, 1.0)], "watts must increase"),
        ([(200, 0.2)], "at least two"),
    ],
)
def test_bad_points_are_refused_naming_the_point(points: list[tuple[float, float]], words: str) -> None:
    with pytest.raises(CurveError, match="X100") as e:
        check_points("X100", points)
    assert words in str(e.value)


def test_the_measured_curve_itself_is_refused_as_not_concave() -> None:
    raw = [(200, 172.6), (250, 239.7), (300, 296.0), (350, 363.9), (400, 459.4), (700, 678.6)]
    data = {
        "version": 1,
        "models": [
            {
                "model": "H100 80GB",
                "min_w": 200,
                "default_w": 700,
                "unit": "TFLOPS",
                "points": raw,
                "source": "x",
            }
        ],
    }
    with pytest.raises(CurveError, match=r"H100 80GB: point 3 \(350 W\).*concave"):
        parse_curves(data)


def test_curve_must_end_at_one() -> None:
    with pytest.raises(CurveError, match=r"must keep 1\.0"):
        PowerCurve("x", ((100, 0.5), (200, 0.9)), "s")


def test_model_without_curve_scales_the_reference_by_tdp() -> None:
    a100 = curve_for("A100 80GB", 400, 100, 400)
    ref = reference_curve()
    # 50% of TDP keeps what the H100 keeps at 350 W
    assert a100.throughput(200) == pytest.approx(ref.throughput(350))
    assert a100.min_w == 100 and a100.default_w == 400
    assert "no curve for A100 80GB" in a100.source and "TDP 400 W" in a100.source
    unknown = curve_for(None, None, 150, 500)
    assert unknown.throughput(250) == pytest.approx(ref.throughput(350))
    assert "TDP unknown" in unknown.source


def test_restricted_renormalises_and_extends_below() -> None:
    c = reference_curve().restricted(150, 600)
    assert c.throughput(600) == 1.0
    assert c.throughput(500) == pytest.approx((569.4 / 678.6) / (629.3 / 678.6))
    # below 200 W: the first piece's slope continued
    slope = (459.4 - 172.6) / 678.6 / 200
    assert c.throughput(150) == pytest.approx((172.6 / 678.6 - 50 * slope) / (629.3 / 678.6))


def test_saturating_and_sensitivity_keep_concavity() -> None:
    ref = reference_curve()
    m = ref.saturating_at(520).with_sensitivity(0.4)
    assert m.throughput(520) == 1.0 and m.throughput(650) == 1.0
    assert m.throughput(200) == pytest.approx(1 - 0.4 * (1 - ref.throughput(200) / ref.throughput(520)))
    with pytest.raises(CurveError):
        ref.with_sensitivity(5.0)


def test_segments_cover_the_range_with_falling_gain() -> None:
    c = reference_curve()
    segs = c.segments(100, 650)
    assert segs[0] == (100, 200, 0.0)
    assert segs[-1][1] == 650
    gains = [s for _, _, s in segs[1:]]
    assert gains == sorted(gains, reverse=True)
    assert sum((b - a) * s for a, b, s in segs) == pytest.approx(c.throughput(650) - c.throughput(200))


def test_blend_learns_an_insensitive_job_and_shrinks_toward_the_prior() -> None:
    ref = reference_curve()
    truth = ref.with_sensitivity(0.3)
    obs = [Observation(w, 50.0 * truth.throughput(w)) for w in (700, 600, 500, 400, 300, 250)] * 5
    learned = blend(ref, obs)
    # 30 observations against a prior worth 3: (30 × 0.3 + 3 × 1) / 33
    assert learned.alpha == pytest.approx((30 * 0.3 + 3) / 33)
    assert learned.uncapped_rate == pytest.approx(50.0)
    assert learned.curve.throughput(300) > ref.throughput(300)
    few = blend(ref, obs[:2])
    assert few.alpha > learned.alpha
    nothing = blend(ref, [Observation(700, 10.0)])
    assert nothing.alpha == 1.0 and nothing.curve == ref and nothing.uncapped_rate == 10.0
