"""The nodes view: the node table (filtered, paginated) and one node's page.

States and health come from memory (the registry and the HealthBook); only a node's history
is read from the store, through indexed, LIMITed queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from scheduler.reliability.health_state import Health
from scheduler.store import schema
from scheduler.web.queries.codes import classify_cause
from scheduler.web.queries.inventory import inventory

if TYPE_CHECKING:
    from scheduler.model import WorkerRecord
    from scheduler.server.controlplane import ControlPlane
    from scheduler.server.nodes import NodeRuntime

PAGE_SIZE = 100
NODE_EVENTS_LIMIT = 60
FAILURE_SCAN_LIMIT = 5_000
FAILURES_SHOWN = 30
HISTORY_SHOWN = 40

NODE_STATES = ("ready", "cordoned", "draining", "quarantined", "disconnected", "lost")
HEALTH_WORDS = ("healthy", "suspect", "unhealthy", "quarantined")
_RANK = {"healthy": 0, "suspect": 1, "unhealthy": 2, "quarantined": 3}


def rack_of(rt: NodeRuntime) -> str:
    return inventory(rt.record).rack


def node_state(cp: ControlPlane, rt: NodeRuntime, now: float) -> str:
    """One word for where a node stands, the most pressing first: lost (gone past its grace
    period) or disconnected, quarantined, draining, cordoned, ready."""
    if not rt.connected:
        # The liveness check's rule: past the grace period its gangs were moved.
        return "lost" if now - rt.last_heard > cp.liveness.grace_s else "disconnected"
    if quarantined(cp, rt.record.name):
        return "quarantined"
    if rt.record.draining:
        return "draining"
    if rt.record.cordoned:
        return "cordoned"
    return "ready"


def quarantined(cp: ControlPlane, name: str) -> bool:
    record = cp.health.nodes.get(name)
    return record is not None and record.state is Health.QUARANTINED


def device_health_words(cp: ControlPlane, rt: NodeRuntime) -> list[str]:
    """Each device's effective health, lower case, in device order. The registry mirrors the
    HealthBook (QUARANTINED shows as UNHEALTHY there), so only the node's own record is read:
    a per-device HealthBook lookup would cost 80,000 calls on a 10,000-node page."""
    n = len(rt.record.devices)
    if quarantined(cp, rt.record.name):
        return ["quarantined"] * n
    states = [d.health for d in rt.record.devices]
    if states.count("HEALTHY") == n:  # the common case, without a per-device lookup
        return ["healthy"] * n
    return [_WORDS.get(s) or s.lower() for s in states]


_WORDS = {"HEALTHY": "healthy", "SUSPECT": "suspect", "UNHEALTHY": "unhealthy", "QUARANTINED": "quarantined"}


def worst(words: Iterable[str]) -> str:
    return max(words, key=lambda w: _RANK.get(w, 0), default="healthy")


def node_health(cp: ControlPlane, rt: NodeRuntime) -> str:
    record = cp.health.nodes.get(rt.record.name)
    own = record.state.value.lower() if record is not None else "healthy"
    words = device_health_words(cp, rt)
    if own == "healthy" and words.count("healthy") == len(words):  # most nodes: no ranking
        return "healthy"
    return worst([own, *words])


def held_by_node(cp: ControlPlane) -> dict[str, list[WorkerRecord]]:
    """Workers holding devices, per node. Only attempts not yet over can hold any, so this
    walks attempts rather than `cp.workers`, which keeps every worker that ever ran (a quarter
    of a million in a big store)."""
    out: dict[str, list[WorkerRecord]] = {}
    for job in cp.jobs.values():
        for attempt in job.attempts:
            if attempt.ended_at is not None:
                continue
            for w in attempt.workers:
                if w.phase.holds_devices:
                    out.setdefault(w.node_name, []).append(w)
    return out


def heartbeat_age(rt: NodeRuntime, now: float) -> float | None:
    seen = rt.last_seen if rt.connected else rt.record.last_seen
    return max(0.0, now - seen) if seen else None


def device_summary(rt: NodeRuntime) -> str:
    """ "8× NVIDIA H100 80GB HBM3" (several models: each with its count)."""
    counts = Counter(d.model for d in rt.record.devices)
    return ", ".join(f"{n}× {model}" for model, n in counts.most_common()) or "no devices"


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRow:
    name: str
    state: str
    health: str
    backend: str
    simulated: bool
    devices: str
    device_count: int
    devices_bad: int  # devices not healthy
    rack: str
    lemon: bool
    hot_spare: bool
    heartbeat_age_s: float | None
    workers: int


@dataclass(frozen=True)
class NodeFilter:
    text: str = ""  # substring of the name
    state: str = ""
    health: str = ""
    rack: str = ""

    def problems(self) -> list[str]:
        out = []
        if self.state and self.state not in NODE_STATES:
            out.append(f"state: {self.state!r} is not one of {', '.join(NODE_STATES)}")
        if self.health and self.health not in HEALTH_WORDS:
            out.append(f"health: {self.health!r} is not one of {', '.join(HEALTH_WORDS)}")
        return out


@dataclass(frozen=True)
class NodeList:
    rows: list[NodeRow]
    total: int  # nodes in the fleet
    matched: int  # nodes the filter kept
    page: int
    pages: int
    racks: list[str]
    by_state: dict[str, int]


def node_list(
    cp: ControlPlane, flt: NodeFilter, page: int, now: float, page_size: int = PAGE_SIZE
) -> NodeList:
    active = held_by_node(cp)
    racks: set[str] = set()
    by_state: Counter[str] = Counter()
    matched: list[tuple[NodeRuntime, str]] = []
    needle = flt.text.strip().lower()
    for rt in cp.nodes:
        rack = rack_of(rt)
        racks.add(rack)
        state = node_state(cp, rt, now)
        by_state[state] += 1
        if needle and needle not in rt.record.name.lower():
            continue
        if (flt.state and state != flt.state) or (flt.rack and rack != flt.rack):
            continue
        # Health reads every device: only for a health filter, else for the page's rows.
        if flt.health and node_health(cp, rt) != flt.health:
            continue
        matched.append((rt, state))
    matched.sort(key=lambda m: m[0].record.name)
    pages = max(1, -(-len(matched) // page_size))
    page = min(max(1, page), pages)
    rows = []
    for rt, state in matched[(page - 1) * page_size : page * page_size]:
        health = node_health(cp, rt)
        words = device_health_words(cp, rt)
        name = rt.record.name
        rows.append(
            NodeRow(
                name=name,
                state=state,
                health=health,
                backend=rt.record.backend,
                simulated=rt.record.simulated,
                devices=device_summary(rt),
                device_count=len(rt.record.devices),
                devices_bad=sum(1 for w in words if w != "healthy"),
                rack=rack_of(rt),
                lemon=name in cp.lemons,
                hot_spare=name in cp.spares,
                heartbeat_age_s=heartbeat_age(rt, now),
                workers=len(active.get(name, [])),
            )
        )
    return NodeList(rows, len(cp.nodes), len(matched), page, pages, sorted(racks), dict(by_state))


# --- one node --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRow:
    index: int
    vendor: str
    model: str
    uuid: str
    memory_bytes: int
    simulated: bool
    health: str  # effective: the worse of the device's and the node's
    own_health: str
    pinned: bool  # flapping: only an operator clears it
    held_by: str  # the workload holding it, or ""
    power_w: float | None
    power_limit_w: float | None
    temperature_c: float | None
    utilization_pct: float | None
    memory_used_bytes: int | None
    ecc_corrected: int | None
    ecc_uncorrected: int | None
    remap_pending: int | None
    remap_failed: bool
    throttle: str


@dataclass(frozen=True)
class HealthChange:
    at: float
    subject: str  # "node" or "device 3"
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True)
class NodeFailure:
    at: float
    job_id: str
    attempt: int
    cause: str
    signal: str
    blame: str
    signals: str


@dataclass(frozen=True)
class LemonEvidence:
    at: float
    job_id: str
    attempt: int
    signals: str


@dataclass(frozen=True)
class NodeEvent:
    id: int
    at: float
    kind: str
    message: str
    job_id: str


@dataclass(frozen=True)
class NodeDetail:
    name: str
    state: str
    health: str
    own_health: str
    pinned: bool
    facts: list[tuple[str, str]]
    labels: dict[str, str]
    cordon_reason: str
    draining: bool
    cordoned: bool
    connected: bool
    hot_spare: bool
    heartbeat_age_s: float | None
    devices: list[DeviceRow]
    health_history: list[HealthChange]
    failures: list[NodeFailure]
    lemon: list[LemonEvidence]
    events: list[NodeEvent]


def node_status(cp: ControlPlane, name: str, now: float) -> tuple[str, str, bool, bool]:
    """(state, health, cordoned, draining) for the polled header; KeyError if no such node."""
    rt = cp.nodes.get(name)
    if rt is None:
        raise KeyError(name)
    return node_state(cp, rt, now), node_health(cp, rt), rt.record.cordoned, rt.record.draining


def node_detail(cp: ControlPlane, name: str, now: float) -> NodeDetail | None:
    rt = cp.nodes.get(name)
    if rt is None:
        return None
    r = rt.record
    own = cp.health.node(name)
    return NodeDetail(
        name=name,
        state=node_state(cp, rt, now),
        health=node_health(cp, rt),
        own_health=own.state.value.lower(),
        pinned=own.pinned,
        facts=[
            ("address", r.address or "–"),
            ("hostname", r.hostname or "–"),
            ("backend", r.backend + (" (simulated)" if r.simulated and "simulated" not in r.backend else "")),
            ("agent version", r.agent_version or "–"),
            ("CPUs", str(r.cpu_count)),
            ("devices", device_summary(rt)),
            ("rack", rack_of(rt)),
        ],
        labels=dict(sorted(r.labels.items())),
        cordon_reason=r.cordon_reason,
        draining=r.draining,
        cordoned=r.cordoned,
        connected=rt.connected,
        hot_spare=name in cp.spares,
        heartbeat_age_s=heartbeat_age(rt, now),
        devices=device_rows(cp, rt),
        health_history=health_history(cp, rt),
        failures=node_failures(cp, name),
        lemon=lemon_evidence(cp, name),
        events=node_events(cp, name),
    )


def device_rows(cp: ControlPlane, rt: NodeRuntime) -> list[DeviceRow]:
    name = rt.record.name
    telemetry = {t.index: t for t in rt.telemetry.devices} if rt.telemetry is not None else {}
    holders = {i: w.workload_id for w in held_by_node(cp).get(name, []) for i in w.device_indices}
    rows = []
    for d, effective in zip(rt.record.devices, device_health_words(cp, rt), strict=True):
        record = cp.health.devices.get((name, d.index))
        t = telemetry.get(d.index)
        rows.append(
            DeviceRow(
                index=d.index,
                vendor=d.vendor,
                model=d.model,
                uuid=d.uuid,
                memory_bytes=d.memory_bytes,
                simulated=d.simulated,
                health=effective,
                own_health=record.state.value.lower() if record else "healthy",
                pinned=bool(record and record.pinned),
                held_by=holders.get(d.index, ""),
                power_w=t.power_w if t else None,
                power_limit_w=t.power_limit_w if t and t.power_limit_w else None,
                temperature_c=t.temperature_c if t else None,
                utilization_pct=t.utilization_pct if t else None,
                memory_used_bytes=t.memory_used_bytes if t else None,
                ecc_corrected=t.ecc_corrected_total if t else None,
                ecc_uncorrected=t.ecc_uncorrected_total if t else None,
                remap_pending=t.remapped_rows_pending if t else None,
                remap_failed=bool(t and t.row_remap_failed),
                throttle=_throttle_text(t),
            )
        )
    return rows


def _throttle_text(t: Any) -> str:
    if t is None or not t.throttle_reasons:
        return ""
    from corral.v1 import common_pb2

    names = [
        common_pb2.ThrottleReason.Name(r).removeprefix("THROTTLE_REASON_").lower() for r in t.throttle_reasons
    ]
    return ", ".join(n for n in names if n != "unspecified")


def health_history(cp: ControlPlane, rt: NodeRuntime) -> list[HealthChange]:
    name = rt.record.name
    changes = [
        HealthChange(h.at, "node", h.from_state.lower(), h.to_state.lower(), h.reason)
        for h in cp.health.node(name).history
    ]
    for d in rt.record.devices:
        record = cp.health.devices.get((name, d.index))
        if record is not None:
            changes += [
                HealthChange(h.at, f"device {d.index}", h.from_state.lower(), h.to_state.lower(), h.reason)
                for h in record.history
            ]
    changes.sort(key=lambda c: c.at, reverse=True)
    return changes[:HISTORY_SHOWN]


def node_failures(cp: ControlPlane, name: str) -> list[NodeFailure]:
    """The newest attempt failures that implicated this node or ran a worker on it. The nodes
    are a JSON list, so rows are read newest first (ix_failures_at) and matched here, at most
    FAILURE_SCAN_LIMIT of them."""
    f = schema.failures
    q = select(f).order_by(f.c.at.desc()).limit(FAILURE_SCAN_LIMIT)
    out: list[NodeFailure] = []
    with cp.store.engine.connect() as conn:
        for row in conn.execute(q):
            m = row._mapping
            if name not in (m["nodes"] or []) and name not in (m["hardware"] or []):
                continue
            signals = [s.get("reason", "") for s in (m["signals"] or []) if isinstance(s, dict)]
            out.append(
                NodeFailure(
                    at=m["at"],
                    job_id=m["job_id"],
                    attempt=m["attempt"],
                    cause=m["cause"],
                    signal=classify_cause(m["cause"]).signal,
                    blame=m["blame"],
                    signals="; ".join(s for s in signals if s),
                )
            )
            if len(out) >= FAILURES_SHOWN:
                break
    return out


def lemon_evidence(cp: ControlPlane, name: str) -> list[LemonEvidence]:
    verdict = cp.lemons.get(name)
    if verdict is None:
        return []
    return [
        LemonEvidence(f.at, f.job_id, f.attempt, "; ".join(f.signals) or "no signal")
        for f in sorted(verdict.evidence, key=lambda f: f.at, reverse=True)
    ]


def node_events(cp: ControlPlane, name: str, limit: int = NODE_EVENTS_LIMIT) -> list[NodeEvent]:
    """The node's newest events (health checks and changes, cordons, drains, faults), newest
    first, through the (node_name, id) index."""
    ev = schema.events
    q = (
        select(ev.c.id, ev.c.at, ev.c.kind, ev.c.message, ev.c.job_id)
        .where(ev.c.node_name == name)
        .order_by(ev.c.id.desc())
        .limit(limit)
    )
    with cp.store.engine.connect() as conn:
        return [NodeEvent(r.id, r.at, r.kind, r.message, r.job_id or "") for r in conn.execute(q)]
