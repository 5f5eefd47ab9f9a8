"""The live power controller: device power limits that keep every rack and zone inside budget
while losing the least priority-weighted throughput. Pure: a snapshot and a clock in,
cap changes out, so the control plane and the simulator (benchmarks/power.py) run this code.

Every period (0.5 s by default, see `ControllerConfig.period_s`) the controller works out,
from measured draw, what each device would use if it were not held back, then solves for the
caps that maximise Σ weight × throughput(cap) under every budget (optimum.solve, exact for
concave curves and nested budgets) and moves the caps toward that answer:

- What a device would use: a device its cap holds back (the agent says so — NVML's power-cap
  throttle reason — or it draws within `saturation_w` of its cap) may use up to its default
  limit; its curve says how much each watt is worth. A device drawing below its cap (idle,
  input-bound, communicating, checkpointing) is given its draw + `idle_margin_w` (+ the rise
  its last two samples forecast); the rest of its cap is headroom for others.
- The answer leaves every budget's sum of caps within budget × (1 − margin). What the
  solution leaves free goes back to under-drawing devices as slack above their reservation,
  most valuable first, so a device waking from a pause often finds its watts still there.
  Since caps are hardware-enforced limits, the sum of caps inside budget is what keeps a
  budget from being overrun by a sudden rise; draw-based forecasting alone would trip first.
- Lowering is immediate. Raising waits until the gain exceeds `hysteresis_w`, moves at most
  `raise_step_w` per period, and stops for `raise_hold_s` in any domain that was measured
  over budget: a rack at its limit is not pushed back up the moment it steps below it.
- Never below a device's minimum nor above its default. Devices whose limit cannot be set
  count their measured draw against the budgets as fixed load; a budget those loads (with
  every settable device at its minimum) overrun cannot be enforced by caps: the step reports
  it, and admission must keep load out.

The value of a device's throughput is `priority_weight(priority)` × what the caller knows of
its speed; the benchmark multiplies in the device's dense TFLOPS relative to the H100.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler.power.curves import PowerCurve
from scheduler.power.domains import DomainKey, PowerDomains
from scheduler.power.optimum import Allocation, Budgets, Claim, budgets, solve

# Caps closer than this to each other count as equal: NVML takes whole milliwatts and
# profiles whole watts, so sub-watt changes only churn the agent stream.
_SAME_W = 0.5


def priority_weight(priority: int) -> float:
    """The value of a watt of throughput at job priority `priority` (−1000…1000, 0 default),
    relative to priority 0: doubling every 100 points, 2^(priority / 100).

    So a job 100 points above another keeps its watts unless the other's curve gains more
    than twice as much per watt there; 1,000 points apart (2^10) is all but strict. A ratio,
    not a strict order, is what lets a barely-slowed high-priority job give watts to a
    low-priority one that would otherwise stall."""
    if not -1000 <= priority <= 1000:
        raise ValueError(f"priority must be in -1000..1000 (got {priority})")
    return float(2.0 ** (priority / 100.0))


@dataclass(frozen=True)
class DeviceView:
    """One device as the controller sees it this period.

    `key` names it in the answer ("node/index"). `weight`: the value of its throughput
    (priority_weight × speed). `draw_w`: measured over the last period; `cap_w`: the limit
    in force. `power_capped`: the agent saw the power limit hold the device back during the
    period (None: not reported; then drawing within `saturation_w` of the cap counts)."""

    key: str
    node: str
    rack: str
    zone: str
    job_id: str | None
    weight: float
    min_w: float
    default_w: float
    settable: bool
    draw_w: float
    cap_w: float
    curve: PowerCurve
    power_capped: bool | None = None


@dataclass(frozen=True)
class ControllerConfig:
    # How often the controller measures and acts. It sees a phase change (a job pausing, or
    # waking throttled at a lent cap) one period after it happens, plus the ~0.3 s a device
    # takes to follow a new cap (../shared/calibration: 700 → 300 W within 0.16–0.36 s), so
    # the period is what is left to shorten. benchmarks/power.py, 70% provisioning: 98.90% of
    # the optimum's weighted throughput at 1 s, 99.04% at 0.5 s; of the 1.1% lost at 1 s,
    # about 0.6% is no latency at all but the hardware guarantee itself (every budget's sum of
    # caps within it, and no cap below a device's minimum, so an idle device reserves its
    # minimum where the optimum, knowing it stays idle, counts its draw). Acting faster than
    # the devices can follow would gain little, and the agents must sample as often as this:
    # 0.5 s needs telemetry every 0.5 s (the power reading an instantaneous one, such as
    # NVML's instant power field, not a 1 s average). `raise_step_w` is per period, so at
    # 0.5 s a device is raised by up to 600 W/s.
    period_s: float = 0.5
    # Kept free below every budget: covers the draw between a cap's setting and the device
    # settling to it, meter error and non-accelerator draw moving. Caps are enforced by the
    # device, so it need not cover sudden rises (see the module docstring).
    margin: float = 0.0
    raise_step_w: float = 300.0
    hysteresis_w: float = 20.0
    raise_hold_s: float = 2.0
    forecast: bool = True
    idle_margin_w: float = 50.0
    # A device that was held by its cap this recently keeps its cap when it dips: a pause
    # shorter than this (a data stall, a collective) would end before its watts did any good
    # elsewhere, and it would wake throttled. Longer pauses (checkpoints, evaluation, idle)
    # lend their watts.
    lend_after_s: float = 3.0
    saturation_w: float = 15.0

    def __post_init__(self) -> None:
        if self.period_s <= 0 or self.raise_step_w <= 0:
            raise ValueError("period_s and raise_step_w must be > 0")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1) (got {self.margin})")
        if (
            min(
                self.hysteresis_w, self.raise_hold_s, self.idle_margin_w, self.saturation_w, self.lend_after_s
            )
            < 0
        ):
            raise ValueError(
                "hysteresis_w, raise_hold_s, idle_margin_w, saturation_w and lend_after_s must be ≥ 0"
            )


@dataclass(frozen=True)
class ControlStep:
    """One period's decisions. `caps`: device key → new cap (only the changes). `reasons`:
    a line per changed device and per domain worth mentioning. `over_budget`: domains whose
    measured draw exceeds their budget, by how many W; `forecast_over` the same for the
    forecast. `unenforceable`: domains that fixed loads and minimum caps alone overrun, by
    how many W: caps cannot bring them inside, so admission must."""

    caps: dict[str, float]
    reasons: dict[str, str]
    over_budget: dict[DomainKey, float]
    forecast_over: dict[DomainKey, float]
    unenforceable: dict[DomainKey, float]
    allocation: Allocation


def _name(d: DomainKey) -> str:
    return f"{d[0]} {d[1]}"


@dataclass
class PowerController:
    """The controller and its small state: the caps it last set, when each domain went over
    budget (and was last seen over), and last period's draws for the forecast."""

    config: ControllerConfig = field(default_factory=ControllerConfig)
    caps: dict[str, float] = field(default_factory=dict)
    over_since: dict[DomainKey, float] = field(default_factory=dict)
    last_over: dict[DomainKey, float] = field(default_factory=dict)
    prev_draw: dict[str, float] = field(default_factory=dict)
    last_held: dict[str, float] = field(default_factory=dict)

    def held(self, d: DeviceView) -> bool:
        """Whether the cap is what stops `d` drawing more."""
        if d.power_capped is not None:
            return d.power_capped
        return d.draw_w >= d.cap_w - self.config.saturation_w

    def step(
        self,
        devices: Sequence[DeviceView],
        domains: PowerDomains,
        now: float,
        *,
        zone_inlet_c: Mapping[str, float] | None = None,
        throttled: Collection[str] | None = None,
    ) -> ControlStep:
        cfg = self.config
        b = budgets(devices, domains, margin=cfg.margin, zone_inlet_c=zone_inlet_c, throttled=throttled)
        reasons: dict[str, str] = {}
        over, forecast_over = self._measure(devices, b, now)
        for dom, w in over.items():
            reasons[_name(dom)] = f"over budget by {w:.0f} W (measured) since t={self.over_since[dom]:g}"
        for dom, w in forecast_over.items():
            if dom not in over:
                reasons[_name(dom)] = f"forecast over budget by {w:.0f} W within {cfg.period_s:g} s"

        claims: list[Claim] = []
        for d in devices:
            if not d.settable:
                continue
            if self.held(d):
                # held back by its cap: it may use up to its default; its curve prices each watt
                self.last_held[d.key] = now
                want = d.default_w
            elif now - self.last_held.get(d.key, -float("inf")) < cfg.lend_after_s:
                want = max(d.cap_w, self._forecast(d) + cfg.idle_margin_w)
            else:
                want = self._forecast(d) + cfg.idle_margin_w
            want = min(want, d.default_w)
            # never reserve less than the minimum: that is the lowest cap there is, and a
            # device that wakes draws up to its cap, so the sum of caps stays within budget
            want = max(want, d.min_w)
            lo = d.min_w
            claims.append(Claim(d.key, d.weight, d.curve, lo, max(lo, want), b.chain[d.key]))
        alloc = solve(claims, b.capacity_w)
        targets = self._with_slack(devices, alloc, b)

        unenforceable = dict(alloc.short_w)
        for dom, w in unenforceable.items():
            reasons[_name(dom)] = (
                f"fixed loads and minimum caps exceed the budget by {w:.0f} W: caps cannot bring it "
                "inside; enforced by admission only"
            )
        for dom, n in b.settable.items():
            if n == 0 and dom not in unenforceable and b.fixed_w[dom] > 0:
                reasons.setdefault(_name(dom), "no settable device: enforced by admission only")

        changes: dict[str, float] = {}
        recently_over = {d for d, t in self.last_over.items() if now - t < cfg.raise_hold_s}
        for d in devices:
            if not d.settable:
                continue
            current = min(max(d.cap_w, d.min_w), d.default_w)
            target = min(max(targets[d.key], d.min_w), d.default_w)
            new = current
            if target < current - _SAME_W:
                new = target
                why = alloc.limited_by.get(d.key)
                if why is not None and self.held(d):
                    reasons[d.key] = f"lowered {current:.0f} → {new:.0f} W: {_name(why)} is at its budget"
                else:
                    reasons[d.key] = (
                        f"lowered {current:.0f} → {new:.0f} W: drawing {d.draw_w:.0f} W, "
                        "the rest lent to others"
                    )
            elif target > current + cfg.hysteresis_w:
                if recently_over.intersection(b.chain[d.key]):
                    continue
                new = min(target, current + cfg.raise_step_w)
                limited = " (rate-limited)" if new < target - _SAME_W else ""
                reasons[d.key] = f"raised {current:.0f} → {new:.0f} W: headroom{limited}"
            if abs(new - d.cap_w) > _SAME_W:
                changes[d.key] = new
                self.caps[d.key] = new
        self.prev_draw = {d.key: d.draw_w for d in devices}
        return ControlStep(changes, reasons, over, forecast_over, unenforceable, alloc)

    def _forecast(self, d: DeviceView) -> float:
        """Draw expected by the end of the next period: this period's, plus last period's rise
        again (a device ramping up keeps ramping), never past its cap."""
        if not self.config.forecast:
            return d.draw_w
        rise = max(0.0, d.draw_w - self.prev_draw.get(d.key, d.draw_w))
        return min(d.cap_w, d.draw_w + rise)

    def _measure(
        self, devices: Sequence[DeviceView], b: Budgets, now: float
    ) -> tuple[dict[DomainKey, float], dict[DomainKey, float]]:
        draw = dict(b.fixed_w)
        ahead = dict(b.fixed_w)
        for d in devices:
            if d.settable:
                for k in b.chain[d.key]:
                    draw[k] += d.draw_w
                    ahead[k] += self._forecast(d)
        over = {k: draw[k] - lim for k, lim in b.limit_w.items() if draw[k] > lim}
        forecast = {k: ahead[k] - lim for k, lim in b.limit_w.items() if ahead[k] > lim}
        for k in over:
            self.over_since.setdefault(k, now)
            self.last_over[k] = now
        for k in [k for k in self.over_since if k not in over]:
            del self.over_since[k]
        return over, forecast

    def _with_slack(self, devices: Sequence[DeviceView], alloc: Allocation, b: Budgets) -> dict[str, float]:
        """The allocation plus what it leaves free, handed to devices below their default in
        order of the weighted gain of their next watt: caps stay within every budget, and a
        device that wakes up finds the watts nobody else needed."""
        targets = dict(alloc.watts)
        left = dict(alloc.left_w)
        mine = [d for d in devices if d.settable and d.key in targets]

        def spend(d: DeviceView, watts: float) -> None:
            targets[d.key] += watts
            for k in b.chain[d.key]:
                if k in left:
                    left[k] -= watts

        # A device reserved below its minimum still gets the minimum as its cap; charge that
        # first so the slack handed out below is what really is free.
        for d in mine:
            if targets[d.key] < d.min_w:
                spend(d, d.min_w - targets[d.key])
        mine.sort(key=lambda d: (-d.weight * d.curve.slope_above(targets[d.key]), d.key))
        for d in mine:
            room = min((left[k] for k in b.chain[d.key] if k in left), default=d.default_w)
            extra = min(d.default_w - targets[d.key], room)
            if extra > 0:
                spend(d, extra)
        return targets
