"""The live side of power management: the controller every period, caps down the agent
streams, expected draw learned from telemetry, and the admission gate for each pass.

Decisions are the pure ones in scheduler/power (the benchmark runs the same controller);
this module turns the control plane's records and the agents' telemetry into their inputs
and carries their answers out.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from corral.v1 import agent_pb2, common_pb2

from scheduler.catalog import DeviceCatalog
from scheduler.model import DeviceRecord, JobRecord, WorkerRecord
from scheduler.power.admission import DeviceKey, PowerGate, PowerLedger
from scheduler.power.controller import ControllerConfig, DeviceView, PowerController, priority_weight
from scheduler.power.curves import Observation, PowerCurve, blend, curve_for
from scheduler.power.domains import effective_zone_capacity_w
from scheduler.power.expected import DrawProfile, ExpectedDraw, JobKey
from scheduler.power.status import CapInForce
from scheduler.server.nodes import NodeRuntime
from scheduler.server.power_runtime import PowerRuntime, node_views

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane

_THERMAL = (common_pb2.THROTTLE_REASON_HW_THERMAL, common_pb2.THROTTLE_REASON_SW_THERMAL)
# A job's rate is measured over windows this long, from its progress reports (the SDK's
# report_progress): long enough to span a few steps, short enough to see a cap change.
RATE_WINDOW_S = 10.0
KEPT_OBSERVATIONS = 64
# A learned draw is written to the store once settled, then every this many samples.
SAVE_EVERY_SAMPLES = 60


def _key(node: str, index: int) -> str:
    return f"{node}/{index}"


class PowerLoop:
    def __init__(
        self,
        cp: ControlPlane,
        runtime: PowerRuntime,
        config: ControllerConfig | None = None,
        expected: ExpectedDraw | None = None,
        catalog: DeviceCatalog | None = None,
    ) -> None:
        self.cp = cp
        self.runtime = runtime
        self.controller = PowerController(config or ControllerConfig())
        self.expected = expected or ExpectedDraw()
        for row in cp.store.load_power_profiles():
            self.expected.profiles[(row["owner"], row["name"])] = DrawProfile(
                row["per_device_w"], row["samples"]
            )
        self.catalog = catalog or DeviceCatalog.load()
        self._ticked_at = -math.inf
        # job -> (window start, steps then, the cap it ran at); its rate observations
        self._windows: dict[str, tuple[float, int, float]] = {}
        self._observed: dict[str, list[Observation]] = {}
        self._learned: dict[str, PowerCurve] = {}
        self._model_curves: dict[str, PowerCurve] = {}

    # --- inputs ----------------------------------------------------------------------------

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one loop per control plane, few models
    def _curve(self, vendor: str, model: str, min_w: float, default_w: float) -> PowerCurve:
        entry = self.catalog.get(vendor, model)
        return curve_for(model, entry.tdp_w if entry is not None else None, min_w or default_w, default_w)

    def _curve_for(self, job: JobRecord | None, d: DeviceRecord, default_w: float) -> PowerCurve:
        """The job's learned curve once its rate under caps is known, else the model's."""
        model = self._curve(d.vendor, d.model, d.power_limit_min_w, default_w)
        if job is None:
            return model
        self._model_curves[job.id] = model
        return self._learned.get(job.id, model)

    def _jobs_by_device(self) -> dict[DeviceKey, tuple[JobRecord, WorkerRecord]]:
        out: dict[DeviceKey, tuple[JobRecord, WorkerRecord]] = {}
        for job, _, w in self.cp.workers.values():
            if w.phase.holds_devices and not job.state.terminal:
                for i in w.device_indices:
                    out[(w.node_name, i)] = (job, w)
        return out

    @functools.lru_cache(maxsize=256)  # noqa: B019 - as _curve
    def _speed(self, vendor: str, model: str) -> float:
        """Dense TFLOPS relative to an H100: a watt on a faster device is worth more."""
        entry = self.catalog.get(vendor, model)
        reference = self.catalog.get("nvidia", "H100-SXM5-80GB")
        if entry is None or reference is None or not entry.dense_tflops or not reference.dense_tflops:
            return 1.0
        return float(entry.dense_tflops / reference.dense_tflops)

    def views(self) -> tuple[list[DeviceView], set[str]]:
        """Every sampled device as the controller sees it, and the keys of those throttling
        for heat (one walk over the telemetry for both)."""
        jobs = self._jobs_by_device()
        out = []
        throttled: set[str] = set()
        for rt in self.cp.nodes:
            if not rt.connected or rt.telemetry is None:
                continue
            name = rt.record.name
            rack = self.runtime.rack_of(name, rt.record.labels)
            zone = self.runtime.domains.zone_of(rack) or ""
            samples = {t.index: t for t in rt.telemetry.devices}
            for d in rt.record.devices:
                t = samples.get(d.index)
                if t is None:
                    continue
                if any(r in _THERMAL for r in t.throttle_reasons):
                    throttled.add(_key(name, d.index))
                holder = jobs.get((name, d.index))
                default = d.power_limit_default_w or d.power_limit_max_w or t.power_limit_w
                out.append(
                    DeviceView(
                        key=_key(name, d.index),
                        node=name,
                        rack=rack,
                        zone=zone,
                        job_id=holder[0].id if holder else None,
                        weight=priority_weight(holder[0].priority) * self._speed(d.vendor, d.model)
                        if holder
                        else 0.0,
                        min_w=d.power_limit_min_w or default,
                        default_w=default,
                        settable=d.power_limit_settable and d.health != "UNHEALTHY",
                        draw_w=t.power_w,
                        cap_w=t.power_limit_w or default,
                        curve=self._curve_for(holder[0] if holder else None, d, default),
                        power_capped=common_pb2.THROTTLE_REASON_SW_POWER_CAP in t.throttle_reasons,
                    )
                )
        return out, throttled

    # --- the controller ----------------------------------------------------------------------

    def tick(self) -> None:
        now = self.cp.clock()
        if now - self._ticked_at < self.controller.config.period_s:
            return
        self._ticked_at = now
        views, throttled = self.views()
        step = self.controller.step(
            views, self.runtime.domains, now, zone_inlet_c=self.runtime.inlet_c, throttled=throttled
        )
        by_key = {v.key: v for v in views}
        for key, cap in step.caps.items():
            view = by_key.get(key)
            if view is not None:
                self._send(view.node, int(key.rsplit("/", 1)[1]), cap)
        defaults = {v.key: v.default_w for v in views}
        in_force = {}
        for key, cap in self.controller.caps.items():
            if key in defaults and cap < defaults[key] - 0.5:
                node, index = key.rsplit("/", 1)
                in_force[(node, int(index))] = CapInForce(cap, step.reasons.get(key, "budget"))
        self.runtime.record_caps(in_force)
        self.runtime.record_effective(self._effective(views, throttled))
        self._learn(views)
        self.runtime.report(node_views(self.cp), now)  # keeps the over-budget clocks running

    def _effective(self, views: list[DeviceView], throttled: set[str]) -> dict[str, float]:
        by_zone: Counter[str] = Counter(v.zone for v in views)
        hot: Counter[str] = Counter(v.zone for v in views if v.key in throttled)
        return {
            name: effective_zone_capacity_w(
                zone, self.runtime.inlet_c.get(name), hot[name] / by_zone[name] if by_zone[name] else 0.0
            )
            for name, zone in self.runtime.domains.zones.items()
        }

    def _send(self, node: str, index: int, cap_w: float) -> None:
        rt = self.cp.nodes.get(node)
        if rt is not None and rt.session is not None:
            rt.session.send(
                set_power_limit=agent_pb2.SetPowerLimit(device_index=index, limit_w=round(cap_w, 1))
            )

    def node_registered(self, rt: NodeRuntime) -> None:
        """An agent (re)connected: the caps in force go back down, whatever it remembers."""
        for index, cap in self.runtime.caps_for_node(rt.record.name).items():
            self._send(rt.record.name, index, cap)

    def _learn(self, views: list[DeviceView]) -> None:
        """Each running job's mean draw per device, from devices its cap does not hold back;
        and its rate under the caps it ran at, which refines its power→throughput curve."""
        jobs = {j.id: j for j in self.cp.jobs.values()}
        draws: dict[str, list[float]] = {}
        caps: dict[str, list[float]] = {}
        for v in views:
            if v.job_id is None:
                continue
            caps.setdefault(v.job_id, []).append(v.cap_w)
            if not self.controller.held(v):
                draws.setdefault(v.job_id, []).append(v.draw_w)
        for job_id, values in draws.items():
            job = jobs.get(job_id)
            if job is not None:
                key = self.job_key(job)
                self.expected.observe(key, sum(values) / len(values))
                profile = self.expected.profiles[key]
                if (
                    self.expected.settled(key)
                    and (profile.samples - self.expected.min_samples) % SAVE_EVERY_SAMPLES == 0
                ):
                    self.cp.store.save_power_profile(
                        *key, profile.per_device_w, profile.samples, self.cp.clock()
                    )
        now = self.cp.clock()
        for job_id, job_caps in caps.items():
            job = jobs.get(job_id)
            if job is not None:
                self._measure_rate(job, min(job_caps), now)
        for gone in self._windows.keys() - caps.keys():
            del self._windows[gone]
            self._observed.pop(gone, None)
            self._learned.pop(gone, None)
            self._model_curves.pop(gone, None)

    def _measure_rate(self, job: JobRecord, cap_w: float, now: float) -> None:
        """Steps per second over a window in which the job's tightest cap stayed put: one
        (cap, rate) observation; a cap change starts a new window. A gang runs at its slowest
        device's pace, hence the minimum."""
        attempt = job.current_attempt
        steps = max((w.progress_step for w in attempt.workers), default=0) if attempt else 0
        if not steps:
            return  # no SDK progress: nothing to measure a rate from
        window = self._windows.get(job.id)
        if window is None or steps < window[1] or abs(cap_w - window[2]) > 1.0:
            self._windows[job.id] = (now, steps, cap_w)  # a new cap (or attempt): start over
            return
        start, first, _ = window
        if now - start < RATE_WINDOW_S:
            return
        if job.id in self._model_curves:
            observations = self._observed.setdefault(job.id, [])
            observations.append(Observation(cap_w, (steps - first) / (now - start)))
            del observations[:-KEPT_OBSERVATIONS]
            self._learned[job.id] = blend(self._model_curves[job.id], observations).curve
        self._windows[job.id] = (now, steps, cap_w)

    @staticmethod
    def job_key(job: JobRecord) -> JobKey:
        return (job.owner, job.name)

    # --- admission ---------------------------------------------------------------------------

    def gate(self) -> PowerGate:
        """The admission gate for one pass: what each rack and zone already carries (node
        overhead, idle devices as measured, running jobs at their expected draw)."""
        domains = self.runtime.domains
        jobs = self._jobs_by_device()
        rack_of: dict[str, str] = {}
        committed: defaultdict[str, float] = defaultdict(float)
        idle: dict[DeviceKey, float] = {}
        defaults: dict[DeviceKey, float] = {}
        for rt in self.cp.nodes:
            if not rt.connected:
                continue
            name = rt.record.name
            rack = rack_of[name] = self.runtime.rack_of(name, rt.record.labels)
            overhead = domains.racks[rack].overhead_w_per_node if rack in domains.racks else 0.0
            committed[rack] += overhead
            samples = {t.index: t for t in rt.telemetry.devices} if rt.telemetry is not None else {}
            for d in rt.record.devices:
                key = (name, d.index)
                default = d.power_limit_default_w or d.power_limit_max_w
                defaults[key] = default
                holder = jobs.get(key)
                if holder is not None:
                    committed[rack] += self.expected.per_device_w(self.job_key(holder[0]), default)
                else:
                    draw = samples[d.index].power_w if d.index in samples else 0.0
                    idle[key] = draw
                    committed[rack] += draw
        zone_of_rack = {r: domains.zone_of(r) or "" for r in set(rack_of.values())}
        zone_committed: defaultdict[str, float] = defaultdict(float)
        for rack, watts in committed.items():
            zone_committed[zone_of_rack.get(rack, "")] += watts
        effective = self.runtime.effective_w
        pending = {j.id: j for j in self.cp.jobs.values()}

        def expected_w(job_id: str, key: DeviceKey) -> float:
            job = pending.get(job_id)
            default = defaults.get(key, 0.0)
            return self.expected.per_device_w(self.job_key(job), default) if job else default

        hot = {z for z, w in effective.items() if z in domains.zones and w < domains.zones[z].capacity_w}
        return PowerGate(
            PowerLedger(
                rack_of=rack_of,
                zone_of_rack=zone_of_rack,
                rack_budget_w={r: domains.rack_budget_w(r) for r in zone_of_rack},
                zone_budget_w={
                    z: effective.get(z, domains.zones[z].capacity_w) if z in domains.zones else math.inf
                    for z in set(zone_of_rack.values())
                },
                rack_committed_w=dict(committed),
                zone_committed_w=dict(zone_committed),
                idle_w=idle,
                expected_w=expected_w,
                hot_zones=frozenset(hot),
            )
        )
