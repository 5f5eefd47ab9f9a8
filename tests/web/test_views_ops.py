"""Dashboard views 3, 5, 6 and 8 (Reliability, Queues and scheduling, Power and thermal,
Control plane): their query functions against an in-process ControlPlane over a real SQLite
store, and each page and live partial rendered through the whole ASGI app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corral.v1 import agent_pb2, common_pb2

from scheduler import __version__
from scheduler.jobstate import JobState
from scheduler.model import AttemptRecord, JobRecord, WorkerPhase, WorkerRecord
from scheduler.power.domains import PowerDomains, Rack, Zone
from scheduler.queueing import QueueSet, queue_usage
from scheduler.queueing.usage import QueueUsage
from scheduler.reliability.signals import Kind, Observation, classify
from scheduler.server.controlplane import ControlPlane
from scheduler.server.faults.recovery import signal_to_dict
from scheduler.server.nodes import NodeRuntime
from scheduler.server.session import AgentSession
from scheduler.store import Store
from scheduler.web.app import create_app
from scheduler.web.queries.controlplane import controlplane_page, heartbeat_lag, rpc_rows
from scheduler.web.queries.power import RACKS_PER_PAGE, band_index, power_page, thermal
from scheduler.web.queries.queues import (
    PAGE_SIZE,
    Percentiles,
    preemption_kind,
    queues_page,
    reason_category,
)
from scheduler.web.queries.reliability import (
    cached_reliability_page,
    keep_for,
    parse_window,
    reliability_page,
)

NOW = 1_800_000_000.0
HOUR = 3600.0
H100 = "H100-SXM5-80GB"
QUEUES = """
queues:
  - name: research
    cohort: lab
    quotas:
      - {vendor: nvidia, nominal: 8}
  - name: prod
    weight: 3
    cohort: lab
    quotas:
      - {vendor: nvidia, nominal: 16}
"""
THROTTLE = common_pb2.ThrottleReason


# --- seeding ---------------------------------------------------------------------------------


def make_cp(tmp_path: Path, *, power: PowerDomains | None = None) -> ControlPlane:
    store = Store.open(tmp_path / "db")
    return ControlPlane(
        store,
        tmp_path,
        clock=lambda: NOW,
        queues=QueueSet.parse(QUEUES),
        power=power,
        telemetry_interval_s=1.0,
    )


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = make_cp(tmp_path)
    yield plane
    plane.store.close()


def add_node(
    cp: ControlPlane,
    name: str,
    *,
    devices: int = 8,
    version: str = __version__,
    rack: str = "",
    lag_s: float = 0.2,
    connected: bool = True,
    model: str = H100,
) -> NodeRuntime:
    reg = agent_pb2.Register(
        node_name=name,
        agent_version=version,
        backend="simulated",
        address=f"10.0.0.{len(cp.nodes) + 1}",
        labels={"rack": rack} if rack else {},
        devices=[
            common_pb2.Device(
                index=i, vendor="nvidia", model=model, power_limit_min_w=200, power_limit_max_w=700,
                power_limit_default_w=700, power_limit_settable=True, simulated=True,
            )
            for i in range(devices)
        ],
    )  # fmt: skip
    session = AgentSession(name, "instance-1")
    rt = cp.nodes.register(reg, session, NOW - 10 * HOUR)
    rt.last_seen = NOW - lag_s
    if not connected:
        cp.nodes.disconnect(name, session, NOW - HOUR)
    return rt


def sample(
    rt: NodeRuntime,
    temps: list[float],
    *,
    power_w: float = 500.0,
    limit_w: float = 700.0,
    throttles: Any = None,
) -> None:
    rt.telemetry = agent_pb2.Telemetry(
        devices=[
            common_pb2.DeviceTelemetry(
                index=i,
                power_w=power_w,
                temperature_c=t,
                power_limit_w=limit_w,
                utilization_pct=90.0,
                throttle_reasons=(throttles or {}).get(i, []),
            )
            for i, t in enumerate(temps)
        ]
    )


def add_job(
    cp: ControlPlane,
    job_id: str,
    state: JobState,
    *,
    queue: str = "default",
    workers: int = 1,
    per_worker: int = 8,
    created: float = NOW - HOUR,
    updated: float | None = None,
    reason: str = "",
    priority: int = 0,
    attempts: tuple[AttemptRecord, ...] = (),
) -> JobRecord:
    spec = {
        "name": f"train-{job_id}",
        "command": ["python", "train.py"],
        "workers": workers,
        "devices_per_worker": per_worker,
        "queue": queue,
        "priority": priority,
    }
    job = JobRecord(
        job_id, f"train-{job_id}", spec, state, created, updated if updated is not None else created,
        reason=reason, queue=queue, priority=priority, attempts=list(attempts),
    )  # fmt: skip
    cp.store.insert_job(job)
    cp.jobs[job.id] = job
    for attempt in job.attempts:
        for w in attempt.workers:
            cp.workers[w.workload_id] = (job, attempt, w)
    return job


def attempt(
    job_id: str,
    number: int,
    started: float,
    *,
    node: str = "n0",
    ended: float | None = None,
    outcome: str = "",
    phase: WorkerPhase = WorkerPhase.EXITED,
    devices: tuple[int, ...] = tuple(range(8)),
    **failure: Any,
) -> AttemptRecord:
    worker = WorkerRecord(f"{job_id}.{number}.0", job_id, number, 0, node, list(devices), phase=phase)
    return AttemptRecord(
        job_id, number, started, ended_at=ended, outcome=outcome, workers=[worker], **failure
    )


# --- ASGI: the whole app, no network ---------------------------------------------------------


async def get(app: Any, url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One GET through the app's full ASGI stack (routing, templates, static mounts)."""
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body.decode()


def text_of(html: str) -> str:
    """The page's words without markup, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- Queues and scheduling -------------------------------------------------------------------


def test_reason_categories_follow_the_scheduling_pass_words() -> None:
    cases = {
        "waiting: needs 16 devices (2 × 8); largest free block 8 devices": "not enough free devices",
        "waiting: needs 8 devices; it would fit now; queue research at quota 8/8 on nvidia": "queue quota",
        "waiting: needs 16 devices; largest free block 8 devices; preempting j-1 to make room": (
            "preempting to make room"
        ),
        "waiting for power: rack r1 at 15.2 of 16.0 kW, needs 5.6 kW": "power budget",
        "waiting: no connected device matches 8 devices Ascend-910B": "no matching device",
        "waiting: needs 64 devices; largest free block 8; reserved 8 nodes for it": "holds a reservation",
        "waiting for devices after a failure: no devices": "recovering: no devices",
        "requeued: node n1 is draining (maint)": "requeued, not yet tried",
        "waiting for placement": "not yet tried",
        "something new": "other",
    }
    assert {reason: reason_category(reason) for reason in cases} == cases
    assert preemption_kind("preempted: preempted for j-9 (priority 5 > 0) after 30 s running") == "priority"
    assert preemption_kind("preempted: preempted for j-9: queue prod reclaims its nominal quota on x") == (
        "quota reclaim"
    )
    assert preemption_kind("preempted: node n1 is draining (maint)") == "node drain"
    assert preemption_kind("preempted: the agent on n1 shut down") == "agent shutdown"


def test_percentiles_are_values_that_occurred() -> None:
    p = Percentiles.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (p.count, p.p50, p.p95, p.max) == (5, 3.0, 5.0, 5.0)
    assert Percentiles.of([]).count == 0


def seed_queues(cp: ControlPlane) -> None:
    add_node(cp, "n0")
    add_node(cp, "n1")
    # prod runs 8 devices on n0, research its nominal 8 on n1.
    add_job(
        cp,
        "run-p",
        JobState.RUNNING,
        queue="prod",
        attempts=(attempt("run-p", 1, NOW - HOUR, phase=WorkerPhase.RUNNING),),
    )
    add_job(
        cp, "run-r", JobState.RUNNING, queue="research",
        attempts=(attempt("run-r", 1, NOW - HOUR, node="n1", phase=WorkerPhase.RUNNING),),
    )  # fmt: skip
    add_job(
        cp, "big", JobState.PENDING, queue="prod", workers=2, updated=NOW - 600,
        reason="waiting: needs 16 devices (2 × 8); largest free block 0 devices",
    )  # fmt: skip
    add_job(
        cp, "quota", JobState.PENDING, queue="research", updated=NOW - 60,
        reason="waiting: needs 8 devices; largest free block 0; queue research at quota 8/8 on nvidia",
    )  # fmt: skip
    # Placed 5 minutes after submission, within the last day; and a placement long ago.
    add_job(
        cp,
        "quick",
        JobState.SUCCEEDED,
        created=NOW - 2 * HOUR,
        attempts=(attempt("quick", 1, NOW - 2 * HOUR + 300, ended=NOW - HOUR, outcome="succeeded"),),
    )
    add_job(
        cp,
        "old",
        JobState.SUCCEEDED,
        created=NOW - 90 * HOUR,
        attempts=(attempt("old", 1, NOW - 80 * HOUR, ended=NOW - 79 * HOUR, outcome="succeeded"),),
    )
    # Preempted twice: for priority, then by a drain; requeued and pending again now.
    add_job(
        cp, "victim", JobState.PENDING, queue="research", created=NOW - 5 * HOUR - 60, updated=NOW - 120,
        reason="requeued: node n1 is draining (maint)",
        attempts=(
            attempt("victim", 1, NOW - 5 * HOUR, ended=NOW - 4 * HOUR,
                    outcome="preempted: preempted for big (priority 5 > 0) after 3600 s running"),
            attempt("victim", 2, NOW - 3 * HOUR, ended=NOW - 120,
                    outcome="preempted: node n1 is draining (maint)"),
        ),
    )  # fmt: skip


def test_queues_page_groups_waits_quota_and_preemptions(cp: ControlPlane) -> None:
    seed_queues(cp)
    q = queues_page(cp)
    assert q.pending_total == 3 and q.pending_devices == 32.0
    assert [(r.job_id, r.wait_s, r.category) for r in q.pending] == [
        ("big", 600.0, "not enough free devices"),
        ("victim", 120.0, "requeued, not yet tried"),
        ("quota", 60.0, "queue quota"),
    ]
    assert [(g.queue, g.category, g.jobs, g.devices) for g in q.groups] == [
        ("prod", "not enough free devices", 1, 16.0),
        ("research", "queue quota", 1, 8.0),
        ("research", "requeued, not yet tried", 1, 8.0),
    ]
    assert (q.current_waits.p50, q.current_waits.max) == (120.0, 600.0)
    # First placements in the last day: "quick" after 300 s, "victim" after 60 s, "run-p" and
    # "run-r" at once; "old" was placed too long ago.
    assert q.placement_waits.count == 4 and q.placement_waits.max == 300.0
    # quota against usage: `corral queues`' answer, and the one the full placement snapshot gives
    assert q.queues == tuple(cp.queue_usage()) == tuple(snapshot_usage(cp))
    by_name = {u.name: u for u in q.queues}
    assert by_name["prod"].in_use == 8.0 and by_name["prod"].rows[0].nominal == 16
    assert by_name["research"].in_use == 8.0 and by_name["research"].pending_jobs == 2
    # preemptions: newest first, classified, counted over the last day
    assert [(p.job_id, p.attempt, p.kind) for p in q.preemptions] == [
        ("victim", 2, "node drain"),
        ("victim", 1, "priority"),
    ]
    assert q.preemptions_recent == 2 and dict(q.preemptions_by_kind) == {"node drain": 1, "priority": 1}


def snapshot_usage(cp: ControlPlane) -> list[QueueUsage]:
    """Queue usage from the scheduling pass's own inputs: what `ControlPlane.queue_usage`'s
    cheaper inputs must agree with."""
    inputs = cp.inputs()
    return queue_usage(inputs.running, cp.queues, inputs.cluster, inputs.pending)


def test_usage_matches_the_full_snapshot_in_edge_cases(cp: ControlPlane) -> None:
    """Shares of a device, a gang checkpointing before a move, one recovering (its devices
    not yet released), a queue the config no longer has, and pools only unschedulable
    nodes offer: the view's usage is still exactly `corral queues`'."""
    add_node(cp, "n0")
    add_node(cp, "a100", model="A100-SXM4-80GB").record.cordoned = True
    add_node(cp, "l40", model="L40S", connected=False)
    running = WorkerPhase.RUNNING
    add_job(
        cp, "share", JobState.RUNNING, queue="research", per_worker=1,
        attempts=(attempt("share", 1, NOW - HOUR, phase=running, devices=(0,)),),
    )  # fmt: skip
    cp.jobs["share"].spec["device_milli"] = 250
    add_job(
        cp, "ckpt", JobState.CHECKPOINTING, queue="prod", per_worker=2,
        attempts=(attempt("ckpt", 1, NOW - HOUR, phase=running, devices=(1, 2)),),
    )  # fmt: skip
    add_job(
        cp, "recov", JobState.RECOVERING, per_worker=1,
        attempts=(attempt("recov", 1, NOW - HOUR, phase=running, devices=(3,)),),
    )  # fmt: skip
    add_job(cp, "ghost", JobState.PENDING, queue="retired", per_worker=4, reason="waiting: unknown queue")
    add_job(
        cp, "gone", JobState.RUNNING, queue="prod",
        attempts=(attempt("gone", 1, NOW - HOUR, node="nowhere", phase=running),),
    )  # fmt: skip
    q = queues_page(cp)
    assert q.queues == tuple(cp.queue_usage()) == tuple(snapshot_usage(cp))
    by_name = {u.name: u for u in q.queues}
    assert by_name["research"].in_use == 0.25 and by_name["prod"].in_use == 2.0
    assert not by_name["retired"].known and by_name["retired"].pending_jobs == 1


def test_queues_page_filters_by_queue_and_pages(cp: ControlPlane) -> None:
    for i in range(PAGE_SIZE + 5):
        add_job(
            cp,
            f"p{i:03d}",
            JobState.PENDING,
            queue="research",
            per_worker=1,
            updated=NOW - i,
            reason="waiting for placement",
        )
    add_job(cp, "other", JobState.PENDING, queue="prod", per_worker=1, reason="waiting for placement")
    first = queues_page(cp, queue="research")
    assert first.listed_total == PAGE_SIZE + 5 and first.pages == 2 and len(first.pending) == PAGE_SIZE
    assert first.pending[0].job_id == f"p{PAGE_SIZE + 4:03d}"  # the longest wait
    last = queues_page(cp, queue="research", page=99)  # clamped to the last page
    assert last.page == 2 and [r.job_id for r in last.pending] == [f"p{i:03d}" for i in range(4, -1, -1)]
    assert queues_page(cp).pending_total == PAGE_SIZE + 6


# --- Power and thermal -----------------------------------------------------------------------


def test_thermal_bands_hottest_and_throttles_from_telemetry(cp: ControlPlane) -> None:
    a = add_node(cp, "a")
    b = add_node(cp, "b")
    add_node(cp, "gone", connected=False)
    hw_thermal, power_cap = THROTTLE.THROTTLE_REASON_HW_THERMAL, THROTTLE.THROTTLE_REASON_SW_POWER_CAP
    throttles = {4: [hw_thermal], 5: [hw_thermal, power_cap], 0: [THROTTLE.THROTTLE_REASON_GPU_IDLE]}
    sample(a, [45, 55, 72, 81, 86, 90, 60, 60], limit_w=700.0, throttles=throttles)
    sample(b, [50.0] * 8, power_w=300.0, limit_w=450.0)
    heat = thermal(cp.nodes)
    assert (heat.nodes_reporting, heat.devices_reporting) == (2, 16)
    assert [band.devices for band in heat.bands] == [1, 11, 1, 1, 2]
    assert [(h.node, h.index, h.temperature_c) for h in heat.hottest[:3]] == [
        ("a", 5, 90.0),
        ("a", 4, 86.0),
        ("a", 3, 81.0),
    ]
    assert len(heat.hottest) == 10
    assert {r.reason: (r.devices, r.costly) for r in heat.throttles} == {
        "thermal (hardware)": (2, True), "power cap (software)": (1, True), "idle": (1, False),
    }  # fmt: skip
    assert heat.throttled_devices == 2
    assert heat.below_default == 8  # b's devices run at 450 of 700 W
    assert heat.draw_w == pytest.approx(8 * 500 + 8 * 300)
    assert band_index(84.99) == 3 and band_index(85.0) == 4 and band_index(-5.0) == 0


def test_power_page_without_topology_says_how_to_enable(cp: ControlPlane) -> None:
    sample(add_node(cp, "a"), [60.0] * 8)
    p = power_page(cp)
    assert not p.enabled and "--power-topology" in p.note
    assert p.thermal.devices_reporting == 8 and not p.zones and not p.racks


def test_power_page_with_topology_reports_domains_and_caps(tmp_path: Path) -> None:
    domains = PowerDomains(
        racks={"r1": Rack("r1", "hall", 10_000.0, 1_000.0, frozenset({"a"}))},
        zones={"hall": Zone("hall", 6_000.0)},
    )
    cp = make_cp(tmp_path, power=domains)
    try:
        sample(add_node(cp, "a"), [60.0] * 8, power_w=700.0)
        assert cp.power is not None
        cp.power.set_inlet("hall", 24.5)
        from scheduler.power.status import CapInForce

        cp.power.record_caps({("a", 2): CapInForce(450.0, "zone hall over budget")})
        p = power_page(cp)
        assert p.enabled
        (zone,) = p.zones
        (rack,) = p.racks
        assert zone.draw_w == pytest.approx(8 * 700 + 1000) and zone.over and zone.inlet_c == 24.5
        assert rack.headroom_w == pytest.approx(10_000 - 6_600) and not rack.over
        assert p.domains_over == 1 and p.caps_total == 1 and p.caps[0].cap_w == 450.0
    finally:
        cp.store.close()


def test_power_page_lists_the_most_constrained_racks_first_in_pages(tmp_path: Path) -> None:
    names = [f"r{i:02d}" for i in range(RACKS_PER_PAGE + 5)]
    racks = {n: Rack(n, "hall", 10_000.0, 0.0, frozenset({f"node-{n}"})) for n in names}
    cp = make_cp(tmp_path, power=PowerDomains(racks=racks, zones={"hall": Zone("hall", 1e9)}))
    try:
        for i, n in enumerate(names):
            # r07 draws 10.4 kW of its 10 kW; the others less the later they come.
            draw = 1300.0 if n == "r07" else 1000.0 - i
            sample(add_node(cp, f"node-{n}"), [50.0] * 8, power_w=draw)
        first = power_page(cp)
        assert first.racks_total == len(names) and first.rack_pages == 2
        assert [d.name for d in first.racks[:3]] == ["r07", "r00", "r01"] and first.racks[0].over
        assert first.domains_over == 1
        last = power_page(cp, rack_page=9)
        assert last.rack_page == 2 and [d.name for d in last.racks] == names[-5:]
    finally:
        cp.store.close()


# --- Control plane ---------------------------------------------------------------------------


def test_heartbeat_lag_buckets_and_worst_agents(cp: ControlPlane) -> None:
    for i, lag in enumerate([0.1, 0.5, 1.5, 3.0, 7.0]):
        add_node(cp, f"n{i}", lag_s=lag)
    add_node(cp, "down", connected=False)
    hb = heartbeat_lag(cp.nodes, NOW, interval_s=1.0, timeout_s=10.0)
    assert (hb.connected, hb.disconnected) == (5, 1)
    assert [b.agents for b in hb.buckets] == [2, 1, 1, 1]
    assert [(a.node, a.lag_s) for a in hb.worst[:2]] == [("n4", 7.0), ("n3", 3.0)]
    assert hb.percentiles.max == 7.0


class _Stats:
    """What scheduler/metrics/runtime.py's ControlPlaneStats answers."""

    def rpc_totals(self) -> list[Any]:
        from scheduler.metrics.runtime import RpcTotal

        return [
            RpcTotal("corral.v1.JobService", "Submit", "OK", 98, 1.0),
            RpcTotal("corral.v1.JobService", "Submit", "INVALID_ARGUMENT", 2, 0.01),
            RpcTotal("corral.v1.AgentService", "Connect", "CANCELLED", 3, 9.0),
            RpcTotal("corral.v1.NodeService", "List", "OK", 10, 0.2),
        ]

    def store_latency(self) -> Any:
        from scheduler.metrics.histogram import WindowSummary

        return WindowSummary(300.0, 1234, 0.0004, 0.003, 0.05)


def test_controlplane_page_versions_store_and_stats(
    cp: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_node(cp, "a")
    add_node(cp, "b", version="0.0.9")
    add_node(cp, "c", connected=False, version="0.0.1")
    c = controlplane_page(cp)
    assert c.version == __version__ and c.store_backend == "sqlite" and c.schema_version not in ("", "(none)")
    assert c.nodes_total == 3 and c.agent_streams == 2
    assert [(v.version, v.agents, v.matches_server) for v in c.versions] == [
        ("0.0.9", 1, False),
        (__version__, 1, True),
    ]
    assert c.version_skew == 1
    # The control plane's own stats: no RPC served here, but the store's statements were timed.
    assert c.rpc == () and c.store_latency is not None and c.store_latency.count > 0

    monkeypatch.setattr(cp, "stats", None, raising=False)
    c = controlplane_page(cp)
    assert c.rpc is None and c.store_latency is None  # the page says "not available"

    monkeypatch.setattr(cp, "stats", _Stats(), raising=False)
    c = controlplane_page(cp, agent_streams=7)
    assert c.agent_streams == 7
    assert c.rpc is not None and [(r.method, r.calls, r.errors) for r in c.rpc] == [
        ("AgentService/Connect", 3, 3), ("JobService/Submit", 100, 2), ("NodeService/List", 10, 0),
    ]  # fmt: skip
    assert c.rpc[1].error_codes == (("INVALID_ARGUMENT", 2),) and c.rpc[1].error_ratio == 0.02
    assert c.store_latency is not None and c.store_latency.count == 1234


def test_rpc_rows_without_stats_is_not_available() -> None:
    assert rpc_rows(None) is None and rpc_rows(object()) is None


# --- Reliability -----------------------------------------------------------------------------


def seed_reliability(cp: ControlPlane) -> None:
    add_node(cp, "n0")
    add_node(cp, "n1")
    xid79 = classify(Observation(Kind.XID, 79, device_index=3))
    failed = attempt(
        "big", 1, NOW - 10 * HOUR, ended=NOW - 6 * HOUR, outcome="failed: xid:79",
        cause="xid:79", blame="hardware", failed_at=NOW - 6 * HOUR, lost_s=1800.0, detect_s=0.5,
        restart_s=60.0,
    )  # fmt: skip
    resumed = attempt("big", 2, NOW - 6 * HOUR + 30, node="n1", phase=WorkerPhase.RUNNING)
    add_job(cp, "big", JobState.RUNNING, created=NOW - 10 * HOUR, attempts=(failed, resumed))
    cp.store.insert_failure(
        {
            "job_id": "big", "attempt": 1, "at": NOW - 6 * HOUR, "blame": "hardware", "cause": "xid:79",
            "hardware": ["n0/3"], "hardware_healthy": False, "nodes": ["n0"],
            "signals": [signal_to_dict(xid79)],
        }
    )  # fmt: skip
    add_job(
        cp, "small", JobState.SUCCEEDED, per_worker=1, created=NOW - 3 * HOUR, updated=NOW - 2 * HOUR,
        attempts=(attempt("small", 1, NOW - 3 * HOUR, ended=NOW - 2 * HOUR, outcome="succeeded"),),
    )  # fmt: skip


def test_parse_window_names_the_field_and_choices() -> None:
    assert parse_window("") == "7d" and parse_window(" 30D ") == "30d"
    with pytest.raises(ValueError, match=r"^window: must be one of 1d, 7d, 30d, all \(got '2w'\)"):
        parse_window("2w")


def test_reliability_page_splits_gpu_time_and_counts_interruptions(cp: ControlPlane) -> None:
    seed_reliability(cp)
    r = reliability_page(cp, "1d")
    rep = r.report
    assert rep.interruptions == 1 and rep.unexpected == 1
    (row,) = rep.by_cause
    assert row.component == "gpu" and row.share == 1.0 and row.blame == "hardware"
    assert [(c.component, c.count, c.share) for c in r.components] == [("gpu", 1, 1.0)]
    assert [g.state for g in r.gpu] == ["productive", "recompute_lost", "restart_lost", "queued", "idle"]
    assert sum(g.share for g in r.gpu) == pytest.approx(1.0)
    assert r.gpu_total_hours == pytest.approx(sum(g.hours for g in r.gpu))
    recompute = next(g for g in r.gpu if g.state == "recompute_lost")
    assert recompute.hours == pytest.approx(1800.0 * 8 / HOUR)
    assert r.hardware_failures == 1 and r.hardware_mtbf_hours > 0
    assert [j.job_id for j, _ in r.jobs] == ["big", "small"]
    assert all(level in ("healthy", "suspect", "unhealthy") for _, level in r.jobs)
    # A window that ends before the failure sees none of it.
    assert reliability_page(cp, "1d", now=NOW - 7 * HOUR).report.interruptions == 0


def test_reliability_page_is_kept_for_what_it_cost_to_build(tmp_path: Path) -> None:
    assert keep_for(0.002) == pytest.approx(0.04)  # a small cluster's: rebuilt at once
    assert keep_for(0.5) == 10.0 and keep_for(4.0) == 30.0  # a big store's: at most 30 s
    clock = [NOW]
    cp = ControlPlane(Store.open(tmp_path / "db"), tmp_path, clock=lambda: clock[0])
    try:
        seed_reliability(cp)
        first = cached_reliability_page(cp, "1d")
        assert first.page.report.interruptions == 1 and first.keep_s == keep_for(first.build_s)
        assert cached_reliability_page(cp, "1d") is first  # same instant: kept
        cp.store.insert_failure(
            {"job_id": "big", "attempt": 2, "at": NOW, "blame": "job", "cause": "exit:1",
             "hardware": [], "hardware_healthy": True, "nodes": ["n1"], "signals": []}
        )  # fmt: skip
        # Once the time it is kept for has passed, the new failure shows.
        clock[0] = NOW + first.keep_s + 0.01
        assert cached_reliability_page(cp, "1d").page.report.interruptions == 2
    finally:
        cp.store.close()


# --- the pages, through the app --------------------------------------------------------------


async def test_pages_render_with_their_headline_figures(cp: ControlPlane) -> None:
    seed_queues(cp)
    seed_reliability_extra = add_node(cp, "hot")
    sample(seed_reliability_extra, [91.0] + [40.0] * 7, throttles={0: [THROTTLE.THROTTLE_REASON_HW_THERMAL]})
    app = create_app(cp, operator_token=None, refresh_s=7)

    status, html = await get(app, "/queues")
    words = text_of(html)
    assert status == 200, html
    assert 'hx-get="/queues/live?page=1"' in html and re.search(r'hx-trigger="every 7(\.0)?s"', html)
    assert "pending gangs" in words and "not enough free devices" in words and "node drain" in words
    assert "8 / 16" in words  # prod's quota row
    assert '<a href="/jobs/big">big</a>' in html

    status, html = await get(app, "/queues/live?queue=research&page=1")
    assert status == 200 and html.lstrip().startswith('<div id="queues-live"')
    assert "queue=research" in html and "<html" not in html

    status, html = await get(app, "/power")
    words = text_of(html)
    assert status == 200 and "Power management is off" in words and "--power-topology" in words
    assert "91.0 °C" in words and "thermal (hardware)" in words and "≥ 85 °C" in words

    status, html = await get(app, "/controlplane")
    words = text_of(html)
    assert status == 200 and __version__ in words and "sqlite" in words
    assert "no RPC finished yet" in words and "Statements" in words
    assert "Most lagging agents" in words and "same as server" in words

    status, html = await get(app, "/reliability?window=1d")
    words = text_of(html)
    assert status == 200 and "fleet ETTR" in words and "Where the GPU time went" in words
    assert 'aria-current="true">last 1d' in html

    setattr(cp, "stats", None)  # noqa: B010 - a control plane without the metrics side's stats
    status, html = await get(app, "/controlplane/live")
    assert status == 200 and 'id="rpc-na"' in html and 'id="store-na"' in html

    for live in ("/power/live", "/controlplane/live", "/reliability/live?window=all"):
        status, html = await get(app, live)
        assert status == 200 and "<html" not in html and "hx-trigger" in html, live


async def test_reliability_page_shows_the_failure_and_refuses_a_bad_window(cp: ControlPlane) -> None:
    seed_reliability(cp)
    app = create_app(cp, operator_token=None)
    status, html = await get(app, "/reliability?window=1d")
    words = text_of(html)
    assert status == 200
    assert "Faulty GPU (fell off the bus)" in words and "unexpected" in words
    assert re.search(r"interruptions \(unexpected\)", words) and "1 (1)" in words
    assert "H100-SXM5-80GB" in words and '<a href="/jobs/big">big</a>' in html
    status, html = await get(app, "/reliability?window=fortnight")
    assert status == 400 and "window: must be one of 1d, 7d, 30d, all" in html


async def test_power_page_with_topology_renders_domains(tmp_path: Path) -> None:
    domains = PowerDomains(
        racks={"r1": Rack("r1", "hall", 10_000.0, 1_000.0, frozenset({"a"}))},
        zones={"hall": Zone("hall", 6_000.0)},
    )
    cp = make_cp(tmp_path, power=domains)
    try:
        sample(add_node(cp, "a"), [60.0] * 8, power_w=700.0)
        status, html = await get(create_app(cp, operator_token=None), "/power")
        words = text_of(html)
        assert status == 200 and "Power management is off" not in words
        assert "Zones (cooling)" in words and "hall" in words and "r1" in words
        assert "6.6 kW" in words  # the rack's draw: 8 × 700 W + 1 kW node overhead
        assert "over" in words and "None: every device runs at its default limit." in words
    finally:
        cp.store.close()


async def test_pages_render_on_an_empty_cluster(cp: ControlPlane) -> None:
    """No node, no job, no telemetry: every view says so instead of failing."""
    app = create_app(cp, operator_token=None)
    expected = {
        "/queues": "nothing is waiting",
        "/power": "no telemetry from any connected node yet",
        "/controlplane": "no agent is connected",
        "/reliability": "no interruptions in this window",
    }
    for path, empty in expected.items():
        status, html = await get(app, path)
        assert status == 200 and empty in text_of(html), path
