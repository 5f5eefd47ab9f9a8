"""What `corral power` shows, worked out from plain views: per zone and rack the budget,
measured draw, headroom and caps, and every device held below its default limit.

Pure: the control plane builds `NodeView`s from telemetry (scheduler.server.power_runtime)
and turns the result into protobuf; tests build them by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scheduler.power.domains import RACK, ZONE, DomainKey, PowerDomains
from scheduler.power.topology import assign

ENFORCED_BY_CAPS = "caps"
ADMISSION_ONLY = "admission only"
# A reported limit this far below the default counts as capped; NVML rounds to whole mW and
# profiles to whole W, so anything under a watt is noise.
CAPPED_TOLERANCE_W = 0.5
SET_ON_NODE = "set on the node (agent safe cap, or by hand)"

DeviceKey = tuple[str, int]  # (node name, device index)


@dataclass(frozen=True)
class DeviceView:
    index: int
    draw_w: float
    power_limit_w: float  # the limit the device reports in force
    default_w: float
    min_w: float
    settable: bool
    job_id: str = ""


@dataclass(frozen=True)
class NodeView:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[DeviceView, ...] = ()
    inlet_c: float | None = None
    # False when nothing recent was measured (no telemetry yet): its draw is unknown and
    # counted as none, rather than as a guess.
    measured: bool = True


@dataclass(frozen=True)
class CapInForce:
    cap_w: float
    reason: str = ""


@dataclass(frozen=True)
class DomainStatus:
    kind: str
    name: str
    zone: str
    budget_w: float
    effective_budget_w: float
    draw_w: float
    devices_capped: int
    headroom_w: float
    over_budget_s: float
    enforced_by: str
    inlet_c: float | None
    nodes: tuple[str, ...]

    @property
    def key(self) -> DomainKey:
        return (self.kind, self.name)

    @property
    def over(self) -> bool:
        return self.draw_w > self.effective_budget_w


@dataclass(frozen=True)
class CapStatus:
    node: str
    index: int
    cap_w: float
    default_w: float
    min_w: float
    draw_w: float
    job_id: str
    reason: str


@dataclass(frozen=True)
class PowerReport:
    domains: tuple[DomainStatus, ...]
    caps: tuple[CapStatus, ...]
    site_draw_w: float


@dataclass
class _Tally:
    draw_w: float = 0.0
    capped: int = 0
    settable: bool = False
    inlet_c: float | None = None
    nodes: list[str] = field(default_factory=list)

    def add(self, other: _Tally) -> None:
        self.draw_w += other.draw_w
        self.capped += other.capped
        self.settable = self.settable or other.settable
        if other.inlet_c is not None:
            self.inlet_c = other.inlet_c if self.inlet_c is None else max(self.inlet_c, other.inlet_c)
        self.nodes += other.nodes


def _is_capped(device: DeviceView, cap: CapInForce | None) -> bool:
    if cap is not None and cap.cap_w < device.default_w - CAPPED_TOLERANCE_W:
        return True
    return 0 < device.power_limit_w < device.default_w - CAPPED_TOLERANCE_W


def power_status(
    domains: PowerDomains,
    nodes: Iterable[NodeView],
    caps: Mapping[DeviceKey, CapInForce],
    over_since: Mapping[DomainKey, float],
    now: float,
    effective_w: Mapping[str, float] | None = None,
) -> PowerReport:
    """Every zone (by name) then every rack (by name), and the capped devices by node and index.

    `effective_w`: zone name → capacity after thermal derating (missing: the full capacity).
    `over_since`: when each domain went over budget, kept by the caller across calls.
    A device counts as capped when the control plane holds a cap below its default, or when
    it reports a limit below its default that nobody here set (an agent's safe cap).
    """
    effective_w = effective_w or {}
    racks: dict[str, _Tally] = {name: _Tally() for name in domains.racks}
    cap_rows: list[CapStatus] = []
    for node in nodes:
        rack = domains.racks[assign(domains, node.name, node.labels)]
        tally = _Tally(nodes=[node.name], inlet_c=node.inlet_c)
        if node.measured:
            tally.draw_w = rack.overhead_w_per_node + sum(d.draw_w for d in node.devices)
        for device in node.devices:
            tally.settable = tally.settable or device.settable
            cap = caps.get((node.name, device.index))
            if not _is_capped(device, cap):
                continue
            tally.capped += 1
            cap_rows.append(
                CapStatus(
                    node=node.name,
                    index=device.index,
                    cap_w=cap.cap_w if cap is not None else device.power_limit_w,
                    default_w=device.default_w,
                    min_w=device.min_w,
                    draw_w=device.draw_w,
                    job_id=device.job_id,
                    reason=cap.reason if cap is not None else SET_ON_NODE,
                )
            )
        racks[rack.name].add(tally)

    zones: dict[str, _Tally] = {name: _Tally() for name in domains.zones}
    for name, tally in racks.items():
        zone = domains.racks[name].zone
        if zone in zones:
            zones[zone].add(tally)

    def row(kind: str, name: str, zone: str, budget: float, effective: float, tally: _Tally) -> DomainStatus:
        since = over_since.get((kind, name))
        over = tally.draw_w > effective
        return DomainStatus(
            kind=kind,
            name=name,
            zone=zone,
            budget_w=budget,
            effective_budget_w=effective,
            draw_w=tally.draw_w,
            devices_capped=tally.capped,
            headroom_w=effective - tally.draw_w,
            over_budget_s=max(0.0, now - since) if over and since is not None else 0.0,
            enforced_by=ENFORCED_BY_CAPS if tally.settable else ADMISSION_ONLY,
            inlet_c=tally.inlet_c,
            nodes=tuple(sorted(tally.nodes)),
        )

    rows = [
        row(ZONE, z.name, "", z.capacity_w, effective_w.get(z.name, z.capacity_w), zones[z.name])
        for z in sorted(domains.zones.values(), key=lambda z: z.name)
    ]
    rows += [
        row(RACK, r.name, r.zone, r.budget_w, r.budget_w, racks[r.name])
        for r in sorted(domains.racks.values(), key=lambda r: r.name)
    ]
    return PowerReport(
        domains=tuple(rows),
        caps=tuple(sorted(cap_rows, key=lambda c: (c.node, c.index))),
        site_draw_w=sum(t.draw_w for t in racks.values()),
    )


def update_over_since(
    report: PowerReport, over_since: Mapping[DomainKey, float], now: float
) -> dict[DomainKey, float]:
    """The over-budget clocks after `report`: a clock starts when its domain goes over and
    is dropped when it is back within budget."""
    return {d.key: over_since.get(d.key, now) for d in report.domains if d.over}
