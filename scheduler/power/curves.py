"""Power → throughput curves: what a device keeps of its default-limit throughput under a cap.

The data lives in `curves.yaml` beside this module, one measured curve per model with its
source. A model without one gets the reference curve's shape scaled by its TDP: a cap at
x% of TDP keeps what the reference keeps at x% of its TDP. That is an assumption (parts
differ in how far voltage can fall with clocks), and the curve's `source` says so.

A `PowerCurve` is piecewise linear, never falling and concave (gain per watt never rises);
the loader refuses data that is not, naming the model and the point. Concavity is what
makes the greedy allocation in optimum.py exact.

A job's own measurements refine its curve (`blend`): a job spending part of each step on
memory traffic or communication loses less under a cap than a dense matmul. Corral models
that with one number per job, its sensitivity α: the job keeps 1 − α·(1 − f(cap)) where f
is the device's curve. α = 1 is the calibration itself, α = 0 a job caps do not slow.
Any α ≥ 0 keeps the curve concave and monotone, and α is fitted by least squares from the
job's rate at the caps it has run under, shrunk toward 1 until enough observations agree.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from scheduler.catalog.catalog import model_key, name_key

CURVES_PATH = Path(__file__).resolve().parent / "curves.yaml"
REFERENCE_MODEL = "H100 80GB"
# Slopes are compared with this much slack: the YAML holds rounded measurements, and
# normalising and restricting a curve re-derive slopes in floating point.
_SLOPE_TOLERANCE = 1e-9
# The prior sensitivity (the calibration's own) counts as this many observations.
DEFAULT_PRIOR_WEIGHT = 3.0

Point = tuple[float, float]  # (cap in W, fraction of the default-limit throughput)
Segment = tuple[float, float, float]  # (from W, to W, gain per W)


class CurveError(ValueError):
    """A curve that cannot be used; the message names the model and the point."""


def check_points(model: str, points: Sequence[Point]) -> None:
    """Refuse points that are not strictly increasing in watts, monotone and concave."""
    if len(points) < 2:
        raise CurveError(f"{model}: a curve needs at least two points (got {len(points)})")
    for i, (w, f) in enumerate(points):
        if not (math.isfinite(w) and math.isfinite(f)) or w < 0 or f < 0:
            raise CurveError(f"{model}: point {i} ({w:g} W, {f:g}): watts and throughput must be ≥ 0")
    previous = math.inf
    for i in range(1, len(points)):
        (w0, f0), (w1, f1) = points[i - 1], points[i]
        if w1 <= w0:
            raise CurveError(f"{model}: point {i} ({w1:g} W): watts must increase (previous {w0:g} W)")
        slope = (f1 - f0) / (w1 - w0)
        if slope < -_SLOPE_TOLERANCE:
            raise CurveError(
                f"{model}: point {i} ({w1:g} W): throughput falls from {f0:.4g} to {f1:.4g}; "
                "a curve must not fall as the limit rises"
            )
        if slope > previous + _SLOPE_TOLERANCE:
            raise CurveError(
                f"{model}: point {i} ({w1:g} W): gains {slope:.3g}/W after {previous:.3g}/W below it; "
                "the gain per watt must not rise (the curve must be concave)"
            )
        previous = slope


@dataclass(frozen=True)
class PowerCurve:
    """Throughput kept (fraction of the default-limit throughput) as a function of the cap."""

    model: str
    points: tuple[Point, ...]
    source: str

    def __post_init__(self) -> None:
        check_points(self.model, self.points)
        if abs(self.points[-1][1] - 1.0) > 1e-6:
            raise CurveError(
                f"{self.model}: the last point ({self.points[-1][0]:g} W) must keep 1.0 of the "
                f"default-limit throughput (got {self.points[-1][1]:.4g})"
            )

    @property
    def min_w(self) -> float:
        return self.points[0][0]

    @property
    def default_w(self) -> float:
        return self.points[-1][0]

    def throughput(self, cap_w: float) -> float:
        """The fraction kept at `cap_w`, the cap held within [min_w, default_w]."""
        pts = self.points
        w = min(max(cap_w, pts[0][0]), pts[-1][0])
        for (w0, f0), (w1, f1) in pairwise(pts):
            if w <= w1:
                return f0 + (f1 - f0) * (w - w0) / (w1 - w0)
        return pts[-1][1]

    def power_for(self, fraction: float) -> float:
        """The lowest cap that keeps `fraction`; min_w for anything the minimum already keeps,
        default_w for anything above what the curve reaches."""
        pts = self.points
        if fraction <= pts[0][1]:
            return pts[0][0]
        for (w0, f0), (w1, f1) in pairwise(pts):
            if fraction <= f1 and f1 > f0:
                return w0 + (w1 - w0) * (fraction - f0) / (f1 - f0)
        return pts[-1][0]

    def segments(self, lo_w: float, hi_w: float) -> list[Segment]:
        """The linear pieces between `lo_w` and `hi_w`, gain per watt falling. Watts below
        min_w or above default_w gain nothing (the device cannot run there, or is not held
        back there), so they come as zero-gain pieces."""
        out: list[Segment] = []
        if hi_w <= lo_w:
            return out
        if lo_w < self.min_w:
            out.append((lo_w, min(hi_w, self.min_w), 0.0))
        for (w0, f0), (w1, f1) in pairwise(self.points):
            a, b = max(lo_w, w0), min(hi_w, w1)
            if b > a:
                out.append((a, b, (f1 - f0) / (w1 - w0)))
        if hi_w > self.default_w:
            out.append((max(lo_w, self.default_w), hi_w, 0.0))
        return out

    def slope_above(self, cap_w: float) -> float:
        """Gain per watt of the piece just above `cap_w` (0 at or past default_w)."""
        w = max(cap_w, self.min_w)
        for (w0, f0), (w1, f1) in pairwise(self.points):
            if w0 <= w < w1:
                return (f1 - f0) / (w1 - w0)
        return 0.0

    def restricted(self, min_w: float, default_w: float) -> PowerCurve:
        """The curve over a device's own [min_w, default_w], renormalised so its default
        keeps 1.0. Below the first point it goes on at the first piece's slope (the least
        concave extension there is) and stops at zero; above the last it is flat: a limit
        past the measured default is not assumed to buy anything."""
        if not 0 < min_w < default_w:
            raise CurveError(f"{self.model}: need 0 < min_w < default_w (got {min_w:g}, {default_w:g})")
        (x0, y0), (x1, y1) = self.points[0], self.points[1]
        first = (y1 - y0) / (x1 - x0)
        zero_w = x0 - y0 / first if first > 0 else -math.inf
        start = max(min_w, zero_w)

        def value(w: float) -> float:
            return y0 + first * (w - x0) if w < x0 else self.throughput(w)

        xs = [start, *(x for x, _ in self.points if start < x < default_w), default_w]
        top = value(default_w)
        if top <= 0:
            raise CurveError(f"{self.model}: keeps nothing at {default_w:g} W")
        points = tuple((x, max(0.0, value(x)) / top) for x in xs)
        return PowerCurve(self.model, points, self.source)

    def saturating_at(self, watts: float, model: str | None = None, source: str | None = None) -> PowerCurve:
        """A job that draws only `watts` unheld: caps at or above it cost nothing, and below
        it the job keeps f(cap)/f(watts). A concave curve divided by a constant and held at
        1 stays concave."""
        if not self.min_w < watts <= self.default_w:
            raise CurveError(f"{self.model}: saturation at {watts:g} W is outside the curve")
        top = self.throughput(watts)
        pts = [(w, f / top) for w, f in self.points if w < watts]
        pts.append((watts, 1.0))
        if watts < self.default_w:
            pts.append((self.default_w, 1.0))
        return PowerCurve(model or self.model, tuple(pts), source or self.source)

    def with_sensitivity(self, alpha: float, source: str | None = None) -> PowerCurve:
        """The job that keeps 1 − α·(1 − f(cap)); α ≥ 0, and small enough that the minimum
        keeps something."""
        if not 0 <= alpha <= max_sensitivity(self) + 1e-12:
            raise CurveError(f"{self.model}: sensitivity must be in [0, {max_sensitivity(self):.3g}]")
        pts = tuple((w, 1.0 - alpha * (1.0 - f)) for w, f in self.points)
        return PowerCurve(self.model, pts, source or f"{self.source}; sensitivity α = {alpha:.3g}")


def max_sensitivity(curve: PowerCurve) -> float:
    """The largest α that still leaves 5% at the minimum cap: a fit beyond it is noise."""
    loss = 1.0 - curve.points[0][1]
    return 0.95 / loss if loss > 0 else 1.0


@dataclass(frozen=True)
class CurveEntry:
    model: str
    min_w: float
    default_w: float
    unit: str
    source: str
    curve: PowerCurve
    below_hull: tuple[Point, ...]


def parse_curves(data: Any, origin: str = "curves") -> dict[str, CurveEntry]:
    """Curves by catalog key from loaded YAML; the first entry is the TDP-scaling reference."""
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("models"), list):
        raise CurveError(f"{origin}: must be a mapping with `version: 1` and a `models:` list")
    out: dict[str, CurveEntry] = {}
    for i, raw in enumerate(data["models"]):
        where = f"{origin}: models[{i}]"
        if not isinstance(raw, dict):
            raise CurveError(f"{where}: must be a mapping")
        missing = [k for k in ("model", "min_w", "default_w", "unit", "points", "source") if k not in raw]
        if missing:
            raise CurveError(f"{where}: missing {', '.join(missing)}")
        model = str(raw["model"])
        try:
            pts = [(float(w), float(t)) for w, t in raw["points"]]
            below = [(float(w), float(t)) for w, t in raw.get("below_hull") or []]
            min_w, default_w = float(raw["min_w"]), float(raw["default_w"])
        except (TypeError, ValueError) as e:
            raise CurveError(f"{where} ({model}): points must be [watts, throughput] pairs: {e}") from e
        if pts[0][0] != min_w or pts[-1][0] != default_w:
            raise CurveError(f"{where} ({model}): points must run from min_w to default_w")
        top = pts[-1][1]
        if top <= 0:
            raise CurveError(f"{where} ({model}): throughput at default_w must be > 0")
        norm = tuple((w, t / top) for w, t in pts)
        check_points(model, norm)
        curve = PowerCurve(model, norm, str(raw["source"]))
        for w, t in below:
            if t / top > curve.throughput(w) + 1e-9:
                raise CurveError(
                    f"{where} ({model}): below_hull point {w:g} W lies above the curve; "
                    "put it in points (if the curve stays concave)"
                )
        key = model_key(model)
        if key in out:
            raise CurveError(f"{where} ({model}): a second curve for the same model")
        out[key] = CurveEntry(
            model, min_w, default_w, str(raw["unit"]), str(raw["source"]), curve, tuple(below)
        )
    if not out:
        raise CurveError(f"{origin}: no models")
    return out


@functools.cache
def packaged_curves() -> Mapping[str, CurveEntry]:
    return parse_curves(yaml.safe_load(CURVES_PATH.read_text(encoding="utf-8")), CURVES_PATH.name)


def reference_curve() -> PowerCurve:
    return packaged_curves()[model_key(REFERENCE_MODEL)].curve


def curve_for(
    model: str | None,
    tdp_w: float | None,
    min_w: float,
    default_w: float,
    curves: Mapping[str, CurveEntry] | None = None,
) -> PowerCurve:
    """The curve of a device of `model` whose limit may be set within [min_w, default_w].

    The model's own curve where the file has one; else the reference's shape scaled by TDP
    (`tdp_w`, or the default limit where the TDP is unknown)."""
    table = packaged_curves() if curves is None else curves
    own = table.get(model_key(model)) if model else None
    if own is not None:
        return own.curve.restricted(min_w, default_w)
    ref = next(iter(table.values()))
    scale = (tdp_w or default_w) / ref.default_w
    shape = tuple((w * scale, f) for w, f in ref.curve.points)
    label = model or "unknown model"
    basis = f"TDP {tdp_w:g} W" if tdp_w else f"its default limit {default_w:g} W (TDP unknown)"
    source = (
        f"no curve for {label}: {ref.model}'s shape scaled by {basis} (limit / TDP → fraction), "
        f"an assumption; {ref.model}: {ref.source}"
    )
    return PowerCurve(name_key(label), shape, source).restricted(min_w, default_w)


@dataclass(frozen=True)
class Observation:
    """A job's rate (its own unit: samples/s, tokens/s) over a period run at `cap_w`."""

    cap_w: float
    rate: float


@dataclass(frozen=True)
class LearnedCurve:
    """What a job's observations say: its sensitivity α (blended with the prior), its
    uncapped rate, and how many observations the fit used."""

    alpha: float
    uncapped_rate: float | None
    samples: int
    curve: PowerCurve


def blend(
    curve: PowerCurve,
    observations: Iterable[Observation],
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
) -> LearnedCurve:
    """Refine `curve` with a job's observed rates under caps.

    Fits rate = R·(1 − α·(1 − f(cap))) by least squares (linear in u = 1 − f(cap)), then
    shrinks α toward 1 (the device's own curve) as if the prior were `prior_weight` more
    observations: a few noisy samples cannot make a job look insensitive. With fewer than
    two distinct caps there is nothing to fit, and the device's curve stands."""
    obs = [o for o in observations if o.rate > 0 and o.cap_w > 0]
    us = [1.0 - curve.throughput(o.cap_w) for o in obs]
    n = len(obs)
    if n < 2 or max(us) - min(us) < 1e-6:
        uncapped = sum(o.rate for o, u in zip(obs, us, strict=True) if u < 1e-9) or None
        count = sum(1 for u in us if u < 1e-9)
        return LearnedCurve(1.0, uncapped / count if uncapped else None, n, curve)
    mu, mr = sum(us) / n, sum(o.rate for o in obs) / n
    cov = sum((u - mu) * (o.rate - mr) for u, o in zip(us, obs, strict=True))
    var = sum((u - mu) ** 2 for u in us)
    b = cov / var
    a = mr - b * mu
    if a <= 0:
        return LearnedCurve(1.0, None, n, curve)
    fitted = min(max(-b / a, 0.0), max_sensitivity(curve))
    alpha = min((n * fitted + prior_weight * 1.0) / (n + prior_weight), max_sensitivity(curve))
    source = f"{curve.source}; sensitivity α = {alpha:.3g} from {n} observations of the job"
    return LearnedCurve(alpha, a, n, curve.with_sensitivity(alpha, source))
