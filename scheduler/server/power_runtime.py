"""The control plane's power state: the topology with its budgets as changed at runtime, the
caps in force, the over-budget clocks, and `corral power`'s answer built from telemetry.

The controller loop (which decides caps) calls `record_caps` and `record_effective`; the
API calls `status` and `set_budget`. Nothing here sends anything to agents.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from corral.v1 import cluster_pb2

from scheduler.model import WorkerRecord
from scheduler.power.domains import RACK, ZONE, DomainKey, PowerDomains, Rack, Zone
from scheduler.power.status import (
    CapInForce,
    DeviceKey,
    DeviceView,
    NodeView,
    PowerReport,
    power_status,
    update_over_since,
)
from scheduler.power.topology import assign

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane
    from scheduler.server.nodes import NodeRuntime

DISABLED_NOTE = (
    "power management is off: start the control plane with `corral server --power-topology FILE` "
    "(or `corral up --power-topology FILE`; see examples/power.yaml)"
)


# The controller makes a report every period (0.5 s); one at most this old is current enough
# for a reader.
REPORT_FRESH_S = 2.0


class PowerRuntime:
    def __init__(self, domains: PowerDomains) -> None:
        self.domains = domains
        self.caps: dict[DeviceKey, CapInForce] = {}
        self.over_since: dict[DomainKey, float] = {}
        # zone → capacity after thermal derating; a zone not here has its full capacity
        self.effective_w: dict[str, float] = {}
        # zone → inlet temperature as last reported (SetZoneInlet); a zone not here: unknown
        self.inlet_c: dict[str, float] = {}
        # (when, report): the latest `report`, which the controller makes every period.
        self.last_report: tuple[float, PowerReport] | None = None

    # -- written by the controller -------------------------------------------------------

    def record_caps(self, caps: Mapping[DeviceKey, CapInForce]) -> None:
        """The caps now in force (the whole set: a device not in it is at its default)."""
        self.caps = dict(caps)

    def record_effective(self, effective_w: Mapping[str, float]) -> None:
        """Zone capacities after thermal derating (the whole set)."""
        self.effective_w = dict(effective_w)

    def caps_for_node(self, node: str) -> dict[int, float]:
        """device index → cap, to resend to an agent that registers again."""
        return {index: cap.cap_w for (name, index), cap in self.caps.items() if name == node}

    def rack_of(self, node: str, labels: Mapping[str, str]) -> str:
        return assign(self.domains, node, labels)

    # -- written by the API --------------------------------------------------------------

    def set_budget(self, kind: str, name: str, budget_w: float) -> None:
        """A runtime budget change (demand response). ValueError names the bad field."""
        if kind not in (ZONE, RACK):
            raise ValueError(f"kind: must be 'zone' or 'rack' (got {kind!r})")
        if not (math.isfinite(budget_w) and budget_w > 0):
            raise ValueError(f"budget_w: must be a number of W > 0 (got {budget_w:g})")
        if kind == ZONE:
            zone = self.domains.zones.get(name)
            if zone is None:
                raise ValueError(
                    f"name: unknown zone {name!r}; known: {', '.join(sorted(self.domains.zones))}"
                )
            zones = dict(self.domains.zones)
            zones[name] = Zone(name=zone.name, capacity_w=budget_w, inlet_limit_c=zone.inlet_limit_c)
            self.domains = PowerDomains(racks=self.domains.racks, zones=zones)
            return
        rack = self.domains.racks.get(name)
        if rack is None:
            raise ValueError(f"name: unknown rack {name!r}; known: {', '.join(sorted(self.domains.racks))}")
        racks = dict(self.domains.racks)
        racks[name] = Rack(
            name=rack.name,
            zone=rack.zone,
            budget_w=budget_w,
            overhead_w_per_node=rack.overhead_w_per_node,
            nodes=rack.nodes,
        )
        self.domains = PowerDomains(racks=racks, zones=self.domains.zones)

    def set_inlet(self, zone: str, inlet_c: float) -> None:
        """A zone's inlet temperature reading. ValueError names the bad field."""
        if zone not in self.domains.zones:
            raise ValueError(f"zone: unknown zone {zone!r}; known: {', '.join(sorted(self.domains.zones))}")
        if not (math.isfinite(inlet_c) and -20.0 <= inlet_c <= 60.0):
            raise ValueError(f"inlet_c: must be a temperature between -20 and 60 °C (got {inlet_c:g})")
        self.inlet_c[zone] = inlet_c

    # -- read ----------------------------------------------------------------------------

    def report(self, nodes: Iterable[NodeView], now: float) -> PowerReport:
        """The report for these nodes; advances the over-budget clocks."""
        # A domain that just went over shows 0 s either way, so one pass with the old clocks
        # gives the same numbers as updating them first.
        report = power_status(self.domains, nodes, self.caps, self.over_since, now, self.effective_w)
        self.over_since = update_over_since(report, self.over_since, now)
        self.last_report = (now, report)
        return report

    def recent_report(self, cp: ControlPlane, now: float) -> tuple[float, PowerReport]:
        """(when, report): the controller's latest if at most REPORT_FRESH_S old, so readers
        polling it (the dashboard, /metrics) need not walk every node's telemetry again; else
        a new one."""
        last = self.last_report
        if last is not None and 0.0 <= now - last[0] <= REPORT_FRESH_S:
            return last
        return now, self.report(node_views(cp), now)

    def status(self, cp: ControlPlane) -> cluster_pb2.PowerStatus:
        report = self.report(node_views(cp), cp.clock())
        status = report_to_proto(report)
        for row in status.domains:
            if row.kind == ZONE and row.name in self.inlet_c:
                row.inlet_c = self.inlet_c[row.name]
        return status


def node_views(cp: ControlPlane) -> list[NodeView]:
    """A view of every connected node from its latest telemetry and device records."""
    active = cp.active_workers_by_node()
    return [node_view(rt, active.get(rt.record.name, [])) for rt in cp.nodes if rt.connected]


def node_view(rt: NodeRuntime, workers: Iterable[WorkerRecord]) -> NodeView:
    job_of = {i: w.job_id for w in workers for i in w.device_indices}
    sampled = {d.index: d for d in rt.telemetry.devices} if rt.telemetry is not None else {}
    devices = []
    for d in rt.record.devices:
        t = sampled.get(d.index)
        devices.append(
            DeviceView(
                index=d.index,
                draw_w=t.power_w if t is not None else 0.0,
                power_limit_w=t.power_limit_w if t is not None else 0.0,
                default_w=d.power_limit_default_w,
                min_w=d.power_limit_min_w,
                settable=d.power_limit_settable,
                job_id=job_of.get(d.index, ""),
            )
        )
    return NodeView(
        name=rt.record.name,
        labels=dict(rt.record.labels),
        devices=tuple(devices),
        measured=rt.telemetry is not None,
    )


def report_to_proto(report: PowerReport) -> cluster_pb2.PowerStatus:
    domains = []
    for d in report.domains:
        row = cluster_pb2.PowerDomainStatus(
            kind=d.kind,
            name=d.name,
            zone=d.zone,
            budget_w=d.budget_w,
            effective_budget_w=d.effective_budget_w,
            draw_w=d.draw_w,
            devices_capped=d.devices_capped,
            headroom_w=d.headroom_w,
            over_budget_s=d.over_budget_s,
            enforced_by=d.enforced_by,
            nodes=list(d.nodes),
        )
        if d.inlet_c is not None:
            row.inlet_c = d.inlet_c
        domains.append(row)
    caps = [
        cluster_pb2.DeviceCap(
            node=c.node,
            index=c.index,
            cap_w=c.cap_w,
            default_w=c.default_w,
            min_w=c.min_w,
            draw_w=c.draw_w,
            job_id=c.job_id,
            reason=c.reason,
        )
        for c in report.caps
    ]
    return cluster_pb2.PowerStatus(enabled=True, domains=domains, caps=caps, site_draw_w=report.site_draw_w)


def disabled_status() -> cluster_pb2.PowerStatus:
    return cluster_pb2.PowerStatus(enabled=False, note=DISABLED_NOTE)
