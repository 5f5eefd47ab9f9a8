"""What the Reliability view shows over a window (1d, 7d, 30d, all): ETTR per large job and
fleet-wide, where the GPU time went, interruptions by component and cause, MTBF per
component and device model, and recovery phase times.

The figures are `scheduler.server.reliability.build_report`'s (the same ones `corral report`
and GetReliabilityReport give); this module only shapes them for the page. The report walks
every job the control plane holds (about a second at 28,000 jobs, measured with 10,000 nodes),
on the control plane's own loop, so the page keeps each window's answer rather than
recomputing it for every refresh of every open dashboard: for REUSE_FACTOR times what it
took to build, at most REPORT_MAX_AGE_S. A big store's report (figures over days, which do
not change meaningfully in seconds) is kept for up to half a minute; a small cluster's,
built in milliseconds, is rebuilt on nearly every refresh, so the view keeps up with the
failure feed.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from scheduler.reliability.gpu_time import GpuSeconds
from scheduler.reliability.report import HOUR_S, JobReliability, ReliabilityReportData
from scheduler.server.controlplane import ControlPlane
from scheduler.server.reliability import build_report

DAY_S = 86400.0
# Window name -> seconds (0: everything stored), in the order the selector shows them.
WINDOWS: Mapping[str, float] = {"1d": DAY_S, "7d": 7 * DAY_S, "30d": 30 * DAY_S, "all": 0.0}
DEFAULT_WINDOW = "7d"
REPORT_MAX_AGE_S = 30.0
# A report is kept for this many times its build time (wall clock), so rebuilding it takes
# at most 1/REUSE_FACTOR of the loop however often the page is polled.
REUSE_FACTOR = 20.0
# ETTR at or above GOOD is healthy, below FAIR unhealthy (ByteRobust reports 97% on a
# 9,600-GPU job; the shipped alert fires under 0.9 over a day).
ETTR_GOOD = 0.9
ETTR_FAIR = 0.75

# The GPU-time states in stacking order, with the words the legend uses.
GPU_STATES: tuple[tuple[str, str], ...] = (
    ("productive", "productive"),
    ("recompute_lost", "lost to recomputation"),
    ("restart_lost", "lost to restart"),
    ("queued", "queued"),
    ("idle", "idle"),
)


def parse_window(text: str) -> str:
    """A window name as given in `?window=`; ValueError names the field and the choices."""
    name = text.strip().lower() or DEFAULT_WINDOW
    if name not in WINDOWS:
        raise ValueError(f"window: must be one of {', '.join(WINDOWS)} (got {text!r})")
    return name


def ettr_level(ettr: float) -> str:
    """The health word the page colours an ETTR with (the number is always shown too)."""
    if ettr >= ETTR_GOOD:
        return "healthy"
    if ettr >= ETTR_FAIR:
        return "suspect"
    return "unhealthy"


@dataclass(frozen=True)
class GpuShare:
    state: str  # the `corral_gpu_seconds_total` state label
    label: str
    hours: float
    share: float  # of the five together, 0..1


@dataclass(frozen=True)
class ComponentTotal:
    component: str
    count: int
    share: float
    lost_gpu_hours: float
    unexpected: int


@dataclass(frozen=True)
class ReliabilityPage:
    window: str
    windows: tuple[str, ...]
    report: ReliabilityReportData
    gpu: tuple[GpuShare, ...]
    gpu_total_hours: float
    components: tuple[ComponentTotal, ...]  # most interruptions first
    jobs: tuple[tuple[JobReliability, str], ...]  # the report's largest jobs, each with its ETTR level
    fleet_ettr_level: str
    hardware_mtbf_hours: float  # all hardware failures of every model; 0: none in the window
    hardware_failures: int


def gpu_split(gpu: GpuSeconds) -> tuple[tuple[GpuShare, ...], float]:
    """The five states with their share of the whole, and the whole in device-hours."""
    seconds = gpu.as_dict()
    total = sum(seconds.values())
    return (
        tuple(
            GpuShare(state, label, seconds[state] / HOUR_S, seconds[state] / total if total else 0.0)
            for state, label in GPU_STATES
        ),
        total / HOUR_S,
    )


def component_totals(report: ReliabilityReportData) -> list[ComponentTotal]:
    counts: dict[str, list[float]] = {}
    for row in report.by_cause:
        tally = counts.setdefault(row.component, [0, 0.0, 0])
        tally[0] += row.count
        tally[1] += row.lost_gpu_hours
        tally[2] += row.count if row.unexpected else 0
    total = report.interruptions
    rows = [
        ComponentTotal(component, int(n), n / total if total else 0.0, lost, int(unexpected))
        for component, (n, lost, unexpected) in counts.items()
    ]
    rows.sort(key=lambda r: (-r.count, r.component))
    return rows


def reliability_page(
    cp: ControlPlane, window: str = DEFAULT_WINDOW, now: float | None = None
) -> ReliabilityPage:
    """`window` must be a WINDOWS name (see parse_window)."""
    now = cp.clock() if now is None else now
    report = build_report(cp, WINDOWS[window], now)
    shares, total = gpu_split(report.gpu_time)
    every_model = [r for r in report.mtbf if r.component == "all"]
    hours = sum(r.device_hours for r in every_model)
    failures = sum(r.failures for r in every_model)
    return ReliabilityPage(
        window=window,
        windows=tuple(WINDOWS),
        report=report,
        gpu=shares,
        gpu_total_hours=total,
        components=tuple(component_totals(report)),
        jobs=tuple((j, ettr_level(j.ettr)) for j in report.jobs),
        fleet_ettr_level=ettr_level(report.fleet_ettr),
        hardware_mtbf_hours=hours / failures if failures else 0.0,
        hardware_failures=failures,
    )


@dataclass(frozen=True)
class KeptPage:
    page: ReliabilityPage
    build_s: float  # wall seconds it took to build
    keep_s: float  # how long it is handed out again, from its `report.until`


# Per control plane: window -> the page last computed for it.
_computed: weakref.WeakKeyDictionary[ControlPlane, dict[str, KeptPage]] = weakref.WeakKeyDictionary()


def keep_for(build_s: float, max_age_s: float = REPORT_MAX_AGE_S) -> float:
    """How long a page that took `build_s` (wall seconds) to build is handed out again."""
    return min(max_age_s, REUSE_FACTOR * max(0.0, build_s))


def cached_reliability_page(
    cp: ControlPlane, window: str = DEFAULT_WINDOW, max_age_s: float = REPORT_MAX_AGE_S
) -> KeptPage:
    """`reliability_page` as of a little while ago (by the control plane's clock): at most
    REUSE_FACTOR times what it took to build, and at most `max_age_s`."""
    now = cp.clock()
    pages = _computed.setdefault(cp, {})
    kept = pages.get(window)
    if kept is None or not 0.0 <= now - kept.page.report.until < kept.keep_s:
        began = time.perf_counter()
        page = reliability_page(cp, window, now)
        build_s = time.perf_counter() - began
        kept = pages[window] = KeptPage(page, build_s, keep_for(build_s, max_age_s))
    return kept
