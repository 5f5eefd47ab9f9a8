"""What the Power and thermal view shows: budget against draw per zone and rack with the
caps in force (what `corral power` shows, from the same PowerRuntime), and from the agents'
latest telemetry whether power is managed or not: draw, throttling by reason, temperature
bands and the hottest devices.

One walk over the connected nodes' latest samples; nothing here reads the store.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from corral.v1 import common_pb2

from scheduler.power.domains import ZONE
from scheduler.power.status import CAPPED_TOLERANCE_W, CapStatus, DomainStatus
from scheduler.server.controlplane import ControlPlane
from scheduler.server.nodes import NodeRuntime
from scheduler.server.power_runtime import DISABLED_NOTE

HOTTEST_SHOWN = 10
CAPS_SHOWN = 100
RACKS_PER_PAGE = 40
# Within this share of its effective budget a domain counts as near it (as `corral power`).
NEAR_FRACTION = 0.05

# Throttle reasons as operators read them (NVML's clocks-event reasons); GPU_IDLE and the
# clock settings are not a loss, so they are listed apart from the ones that cost speed.
THROTTLE_LABELS: Mapping[int, str] = {
    common_pb2.THROTTLE_REASON_SW_POWER_CAP: "power cap (software)",
    common_pb2.THROTTLE_REASON_HW_POWER_BRAKE: "power brake (hardware)",
    common_pb2.THROTTLE_REASON_SW_THERMAL: "thermal (software)",
    common_pb2.THROTTLE_REASON_HW_THERMAL: "thermal (hardware)",
    common_pb2.THROTTLE_REASON_HW_SLOWDOWN: "hardware slowdown",
    common_pb2.THROTTLE_REASON_SYNC_BOOST: "sync boost",
    common_pb2.THROTTLE_REASON_APPLICATIONS_CLOCKS: "application clocks",
    common_pb2.THROTTLE_REASON_DISPLAY_CLOCKS: "display clocks",
    common_pb2.THROTTLE_REASON_GPU_IDLE: "idle",
}
COSTLY_THROTTLES = frozenset(
    {
        common_pb2.THROTTLE_REASON_SW_POWER_CAP,
        common_pb2.THROTTLE_REASON_HW_POWER_BRAKE,
        common_pb2.THROTTLE_REASON_SW_THERMAL,
        common_pb2.THROTTLE_REASON_HW_THERMAL,
        common_pb2.THROTTLE_REASON_HW_SLOWDOWN,
    }
)


@dataclass(frozen=True)
class TempBand:
    """Devices whose core temperature is in [low_c, high_c); high_c None: no upper end."""

    label: str
    low_c: float
    high_c: float | None
    level: str  # "ok", "warm", "hot", "critical": the view's colour, named in text too
    devices: int = 0


# Bands for accelerator core temperature. Data-centre GPUs slow down in the high 80s (H100's
# slowdown threshold is ~87-90 °C; Ascend and MLU parts are similar), so the top bands
# warn before that.
_BANDS: tuple[tuple[str, float, float | None, str], ...] = (
    ("< 50 °C", -273.0, 50.0, "ok"),
    ("50–69 °C", 50.0, 70.0, "ok"),
    ("70–79 °C", 70.0, 80.0, "warm"),
    ("80–84 °C", 80.0, 85.0, "hot"),
    ("≥ 85 °C", 85.0, None, "critical"),
)


# Each band's lower edge but the first: bisect finds a band in C, once per device.
_BAND_EDGES = tuple(low for _, low, _, _ in _BANDS[1:])


def band_index(temperature_c: float) -> int:
    """The index in _BANDS of the band holding this temperature."""
    return bisect_right(_BAND_EDGES, temperature_c)


@dataclass(frozen=True)
class HotDevice:
    node: str
    index: int
    model: str
    temperature_c: float
    power_w: float
    limit_w: float
    utilization_pct: float


@dataclass(frozen=True)
class ThrottleRow:
    reason: str
    devices: int
    costly: bool  # the device runs slower than it could for it (not idle or a setting)


@dataclass(frozen=True)
class Thermal:
    """The fleet as its latest telemetry has it."""

    nodes_reporting: int
    devices_reporting: int
    draw_w: float  # devices only (no node overhead)
    limit_w: float  # sum of the limits in force
    below_default: int  # devices reporting a power limit below their default
    throttles: tuple[ThrottleRow, ...]  # most devices first
    throttled_devices: int  # devices with any costly reason
    bands: tuple[TempBand, ...]
    hottest: tuple[HotDevice, ...]
    mean_c: float
    max_c: float


@dataclass(frozen=True)
class PowerPage:
    enabled: bool
    note: str  # how to turn power management on, when it is off
    zones: tuple[DomainStatus, ...]
    racks: tuple[DomainStatus, ...]  # this page of them, the most constrained first
    racks_total: int
    rack_page: int
    rack_pages: int
    caps: tuple[CapStatus, ...]  # the first CAPS_SHOWN, by node and index
    caps_total: int
    site_draw_w: float  # devices plus each rack's node overhead, as the controller counts it
    domains_over: int
    domains_near: int  # within NEAR_FRACTION of their effective budget, not over it
    reported_at: float  # when the budgets' figures were worked out
    thermal: Thermal


def thermal(nodes: Iterable[NodeRuntime]) -> Thermal:
    """One walk over the connected nodes' latest samples."""
    counts = [0] * len(_BANDS)
    edges = _BAND_EDGES
    throttles: dict[int, int] = {}
    # Only the hottest so far are kept (a bounded min-heap): O(devices · log k), no full sort.
    hottest: list[tuple[float, int, HotDevice]] = []
    seen = 0
    reporting = devices = below = throttled = 0
    draw = limit = total_c = 0.0
    max_c = 0.0
    for rt in nodes:
        telemetry = rt.telemetry
        if rt.session is None or telemetry is None:
            continue
        reporting += 1
        by_index = rt.devices_by_index
        name = rt.record.name
        for t in telemetry.devices:
            devices += 1
            temp = t.temperature_c
            draw += t.power_w
            limit += t.power_limit_w
            total_c += temp
            if temp > max_c:
                max_c = temp
            counts[bisect_right(edges, temp)] += 1
            record = by_index.get(t.index)
            if record is not None and 0 < t.power_limit_w < record.power_limit_default_w - CAPPED_TOLERANCE_W:
                below += 1
            if t.throttle_reasons:
                costly = False
                for reason in t.throttle_reasons:
                    throttles[reason] = throttles.get(reason, 0) + 1
                    costly = costly or reason in COSTLY_THROTTLES
                throttled += costly
            if len(hottest) < HOTTEST_SHOWN or temp > hottest[0][0]:
                # The negated arrival order breaks ties: among equal temperatures the first
                # seen stay, so the list holds still between refreshes.
                seen += 1
                hot_device = HotDevice(
                    name,
                    t.index,
                    record.model if record is not None else "",
                    temp,
                    t.power_w,
                    t.power_limit_w,
                    t.utilization_pct,
                )
                item = (temp, -seen, hot_device)
                if len(hottest) < HOTTEST_SHOWN:
                    heapq.heappush(hottest, item)
                else:
                    heapq.heapreplace(hottest, item)
    hot = [h for _, _, h in sorted(hottest, key=lambda h: (-h[0], -h[1]))]
    return Thermal(
        nodes_reporting=reporting,
        devices_reporting=devices,
        draw_w=draw,
        limit_w=limit,
        below_default=below,
        throttles=tuple(
            ThrottleRow(THROTTLE_LABELS.get(r, f"reason {r}"), n, r in COSTLY_THROTTLES)
            for r, n in sorted(throttles.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        throttled_devices=throttled,
        bands=tuple(
            TempBand(label, low, high, level, counts[i]) for i, (label, low, high, level) in enumerate(_BANDS)
        ),
        hottest=tuple(hot),
        mean_c=total_c / devices if devices else 0.0,
        max_c=max_c,
    )


def near_budget(d: DomainStatus) -> bool:
    return not d.over and d.effective_budget_w > 0 and d.headroom_w < NEAR_FRACTION * d.effective_budget_w


def constrained_first(d: DomainStatus) -> tuple[bool, float, str]:
    """Over budget first, then by headroom as a share of the effective budget, then name."""
    share = d.headroom_w / d.effective_budget_w if d.effective_budget_w > 0 else math.inf
    return (not d.over, share, d.name)


def power_page(cp: ControlPlane, *, rack_page: int = 1) -> PowerPage:
    """`rack_page` counts from 1 (out-of-range pages are clamped)."""
    heat = thermal(cp.nodes)
    power = cp.power
    now = cp.clock()
    if power is None:
        return PowerPage(
            enabled=False,
            note=DISABLED_NOTE,
            zones=(),
            racks=(),
            racks_total=0,
            rack_page=1,
            rack_pages=1,
            caps=(),
            caps_total=0,
            site_draw_w=0.0,
            domains_over=0,
            domains_near=0,
            reported_at=now,
            thermal=heat,
        )
    reported_at, report = power.recent_report(cp, now)
    domains = [_with_inlet(d, power.inlet_c) for d in report.domains]
    racks = sorted((d for d in domains if d.kind != ZONE), key=constrained_first)
    pages = max(1, math.ceil(len(racks) / RACKS_PER_PAGE))
    rack_page = min(max(1, rack_page), pages)
    return PowerPage(
        enabled=True,
        note="",
        zones=tuple(sorted((d for d in domains if d.kind == ZONE), key=constrained_first)),
        racks=tuple(racks[(rack_page - 1) * RACKS_PER_PAGE : rack_page * RACKS_PER_PAGE]),
        racks_total=len(racks),
        rack_page=rack_page,
        rack_pages=pages,
        caps=report.caps[:CAPS_SHOWN],
        caps_total=len(report.caps),
        site_draw_w=report.site_draw_w,
        domains_over=sum(1 for d in domains if d.over),
        domains_near=sum(1 for d in domains if near_budget(d)),
        reported_at=reported_at,
        thermal=heat,
    )


def _with_inlet(d: DomainStatus, inlet_c: Mapping[str, float]) -> DomainStatus:
    """A zone's inlet as the operator last reported it (`corral power inlet`), as GetPower does."""
    if d.kind != ZONE or d.name not in inlet_c:
        return d
    return replace(d, inlet_c=inlet_c[d.name])
