"""The control plane's /metrics against an in-process ControlPlane over a real SQLite store:
the exposition is parsed back with prometheus_client's own parser and read by name and labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corral.v1 import agent_pb2, common_pb2
from prometheus_client.parser import text_string_to_metric_families

from scheduler.jobstate import JobState
from scheduler.metrics.classes import NODE_STATES, node_state, pending_reason
from scheduler.metrics.controlplane import collector_of, render_metrics
from scheduler.metrics.discovery import scrape_targets, target_group
from scheduler.metrics.interruptions import cause_label, recovery_phases
from scheduler.model import AttemptRecord, JobRecord, WorkerPhase, WorkerRecord
from scheduler.power.domains import PowerDomains, Rack, Zone
from scheduler.queueing import QueueSet
from scheduler.reliability.health_state import Health, HealthRecord
from scheduler.reliability.signals import Kind, Observation, classify
from scheduler.server.controlplane import ControlPlane
from scheduler.server.faults.recovery import signal_to_dict
from scheduler.server.nodes import NodeRuntime
from scheduler.server.session import AgentSession
from scheduler.store import Store

NOW = 1_800_000_000.0
H100 = "H100-SXM5-80GB"
QUEUES = """
queues:
  - name: research
    quotas:
      - {vendor: nvidia, nominal: 16}
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_cp(tmp_path: Path, clock: Clock, power: PowerDomains | None = None) -> ControlPlane:
    store = Store.open(tmp_path / "db")
    cp = ControlPlane(store, tmp_path, clock=clock, queues=QueueSet.parse(QUEUES), power=power)
    cp.started_at = NOW - 100.0
    return cp


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def cp(tmp_path: Path, clock: Clock) -> Iterator[ControlPlane]:
    plane = make_cp(tmp_path, clock)
    yield plane
    plane.store.close()


def add_node(
    cp: ControlPlane, name: str, *, rack: str = "", metrics_url: str = "", connected: bool = True
) -> NodeRuntime:
    reg = agent_pb2.Register(
        node_name=name,
        agent_version="0.1.0",
        backend="simulated",
        labels={"rack": rack} if rack else {},
        metrics_url=metrics_url,
        devices=[
            common_pb2.Device(
                index=i, vendor="nvidia", model=H100, power_limit_min_w=200, power_limit_max_w=700,
                power_limit_default_w=700, power_limit_settable=True, simulated=True,
            )
            for i in range(8)
        ],
    )  # fmt: skip
    session = AgentSession(name, "instance-1")
    rt = cp.nodes.register(reg, session, NOW - 50.0)
    rt.last_seen = NOW - 0.5
    if not connected:
        cp.nodes.disconnect(name, session, NOW - 20.0)
        rt.last_seen = 0.0
    return rt


def add_job(
    cp: ControlPlane, job_id: str, state: JobState, *attempts: AttemptRecord, **extra: Any
) -> JobRecord:
    spec = {"name": job_id, "command": ["true"], "workers": 1, "devices_per_worker": 8, "queue": "research"}
    job = JobRecord(job_id, job_id, spec, state, NOW - 500.0, NOW - 500.0, queue="research", **extra)
    job.attempts = list(attempts)
    cp.store.insert_job(job)
    cp.jobs[job.id] = job
    for a in attempts:
        for w in a.workers:
            cp.workers[w.workload_id] = (job, a, w)
    return job


def attempt(job_id: str, number: int, started: float, node: str = "n0", **fields: Any) -> AttemptRecord:
    phase = WorkerPhase.RUNNING if not fields.get("outcome") else WorkerPhase.EXITED
    worker = WorkerRecord(
        f"{job_id}.{number}.0", job_id, number, 0, node, list(range(8)), phase=phase, started_at=started
    )
    return AttemptRecord(job_id, number, started, workers=[worker], **fields)


def scrape(cp: ControlPlane) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name → [(labels, value)]."""
    body, content_type = render_metrics(cp)
    assert content_type.startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    found = [v for got, v in samples.get(name, []) if all(got.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {samples.get(name)}"
    return found[0]


# --- pure label classes ----------------------------------------------------------------------


def test_node_state_precedence() -> None:
    base: dict[str, Any] = {"connected": True, "lost": False, "health": "HEALTHY", "draining": False}
    assert node_state(**base, cordoned=False) == "ready"
    assert node_state(**{**base, "health": "SUSPECT"}, cordoned=False) == "suspect"
    assert node_state(**base, cordoned=True) == "cordoned"
    assert node_state(**{**base, "draining": True}, cordoned=True) == "draining"
    assert node_state(**{**base, "health": "UNHEALTHY", "draining": True}, cordoned=True) == "unhealthy"
    assert node_state(**{**base, "health": "QUARANTINED"}, cordoned=True) == "quarantined"
    assert (
        node_state(**{**base, "connected": False, "health": "QUARANTINED"}, cordoned=True) == "disconnected"
    )
    assert node_state(**{**base, "connected": False, "lost": True}, cordoned=False) == "lost"


def test_pending_reasons_fold_the_scheduler_sentences_into_few_classes() -> None:
    cases = {
        "waiting for placement": "not_yet_tried",
        "waiting: needs 16 devices (2 × 8); largest free block 8 devices": "capacity",
        "waiting: needs 8 devices; it would fit now; queue research at quota 8/8 on nvidia": "quota",
        "waiting: needs 16 devices; largest free block 8 devices; preempting j-1 to make room": "preempting",
        "waiting: needs 8; largest free block 0 devices; waiting for the jobs preempted for it to stop": (
            "preempting"
        ),
        "waiting for power: rack r1 at 15.2 of 16.0 kW, needs 5.6 kW": "power",
        "waiting: no connected device matches 8 devices Ascend-910B": "no_matching_devices",
        "waiting: needs 64 devices; largest free block 8 devices; reserved 8 nodes for it": "reserved",
        "waiting for devices after a failure: no devices": "recovering",
        "waiting: unknown queue 'reserch' (did you mean 'research'?); known queues: default": "unknown_queue",
        "requeued: node n1 is draining (maint)": "requeued",
        "something new": "other",
    }
    assert {reason: pending_reason(reason) for reason in cases} == cases


def test_cause_labels_are_slugs_of_the_report_categories() -> None:
    assert cause_label("Faulty GPU (fell off the bus)") == "faulty_gpu_fell_off_the_bus"
    assert cause_label("GPU HBM memory") == "gpu_hbm_memory"
    assert cause_label("") == "unclassified"


def test_recovery_phases_of_a_finished_recovery() -> None:
    failed = attempt(
        "j", 1, NOW - 300, outcome="failed: xid:79", failed_at=NOW - 100, detect_s=0.5, restart_s=12
    )
    successor = attempt("j", 2, NOW - 95)
    phases = recovery_phases(failed, successor)
    assert phases is not None
    assert phases.by_phase() == {"detect": 0.5, "reschedule": 5.0, "restore": 7.0, "total": 12.5}
    failed.restart_s = 0.0  # the successor is not running yet
    assert recovery_phases(failed, successor) is None


# --- the scrape ------------------------------------------------------------------------------


def test_node_state_set_heartbeat_and_counts(cp: ControlPlane, clock: Clock) -> None:
    add_node(cp, "n0", rack="r1")
    add_node(cp, "n1")
    cp.nodes.set_marks("n1", cordoned=True, draining=False, reason="maint")
    add_node(cp, "n2", connected=False)  # silent 20 s: within the 30 s grace
    add_node(cp, "n3")
    cp.health.nodes["n3"] = HealthRecord(state=Health.QUARANTINED)
    cp.lemons["n3"] = None  # type: ignore[assignment]
    s = scrape(cp)
    expected = {"n0": "ready", "n1": "cordoned", "n2": "disconnected", "n3": "quarantined"}
    # One series per node, on its current state: no zero series for the other states.
    assert {(labels["node"], labels["state"], v) for labels, v in s["corral_node_state"]} == {
        (node, state, 1) for node, state in expected.items()
    }
    assert set(expected.values()) <= set(NODE_STATES)
    assert value(s, "corral_agent_heartbeat_age_seconds", node="n0") == pytest.approx(0.5)
    assert value(s, "corral_agent_heartbeat_age_seconds", node="n2") == pytest.approx(20.0)
    assert value(s, "corral_node_info", node="n0", rack="r1", backend="simulated", simulated="true") == 1
    assert value(s, "corral_nodes", state="ready") == 1
    assert value(s, "corral_agent_streams") == 3
    assert value(s, "corral_lemon_nodes") == 1
    clock.now += 15.0  # n2 now silent past the grace period; the cached text follows
    s = scrape(cp)
    assert value(s, "corral_node_state", node="n2", state="lost") == 1
    assert [labels["state"] for labels, _ in s["corral_node_state"] if labels["node"] == "n2"] == ["lost"]
    assert value(s, "corral_nodes", state="lost") == 1 and value(s, "corral_nodes", state="disconnected") == 0
    # A node that registers again (new labels) and one that leaves: the kept text follows.
    add_node(cp, "n0", rack="r9")
    del cp.nodes._nodes["n1"]
    s = scrape(cp)
    assert value(s, "corral_node_info", node="n0", rack="r9") == 1
    assert {labels["node"] for labels, _ in s["corral_node_info"]} == {"n0", "n2", "n3"}
    assert {labels["node"] for labels, _ in s["corral_node_state"]} == {"n0", "n2", "n3"}
    assert value(s, "corral_devices", vendor="nvidia", model=H100, health="healthy") == 16
    assert value(s, "corral_devices", vendor="nvidia", model=H100, health="quarantined") == 8


def test_only_unhealthy_devices_have_series_and_counts_cover_all(cp: ControlPlane) -> None:
    add_node(cp, "n0")
    add_node(cp, "n1")
    cp.health.devices[("n0", 3)] = HealthRecord(state=Health.SUSPECT)
    cp.health.devices[("n0", 4)] = HealthRecord(state=Health.HEALTHY)  # recovered: no series
    cp.health.nodes["n1"] = HealthRecord(state=Health.UNHEALTHY)  # the node takes its devices
    s = scrape(cp)
    rows = {(labels["node"], labels["device"]): labels["state"] for labels, _ in s["corral_device_health"]}
    assert rows == {("n0", "3"): "suspect", **{("n1", str(i)): "unhealthy" for i in range(8)}}
    assert value(s, "corral_devices", vendor="nvidia", model=H100, health="healthy") == 7
    assert value(s, "corral_devices", vendor="nvidia", model=H100, health="suspect") == 1
    assert value(s, "corral_devices", vendor="nvidia", model=H100, health="unhealthy") == 8


def test_jobs_pending_gangs_checkpoint_age_and_queue_devices(cp: ControlPlane) -> None:
    add_node(cp, "n0")
    add_job(cp, "j-wait", JobState.PENDING, reason="waiting: needs 8 devices; largest free block 0 devices")
    add_job(cp, "j-new", JobState.PENDING, reason="waiting for placement")
    add_job(cp, "j-back", JobState.RECOVERING)
    add_job(cp, "j-run", JobState.RUNNING, attempt("j-run", 1, NOW - 60))
    add_job(cp, "j-done", JobState.SUCCEEDED, attempt("j-done", 1, NOW - 400, outcome="succeeded"))
    s = scrape(cp)
    assert value(s, "corral_scheduler_pending_gangs", queue="research", reason="capacity") == 1
    assert value(s, "corral_scheduler_pending_gangs", queue="research", reason="not_yet_tried") == 1
    assert value(s, "corral_scheduler_pending_gangs", queue="research", reason="recovering") == 1
    assert value(s, "corral_scheduler_pending_devices", queue="research") == 24
    assert value(s, "corral_scheduler_oldest_pending_seconds", queue="research") == 500
    assert value(s, "corral_jobs", queue="research", state="running") == 1
    assert "j-done" not in {labels.get("job_id") for labels, _ in s["corral_job_checkpoint_age_seconds"]}
    assert value(s, "corral_job_checkpoint_age_seconds", job_id="j-run") == 60  # no checkpoint yet
    assert value(s, "corral_queue_devices", queue="research", vendor="nvidia", model=H100, kind="used") == 8
    assert value(s, "corral_queue_devices", queue="research", vendor="nvidia", model="", kind="quota") == 16
    assert value(s, "corral_queue_weight", queue="research", cohort="") == 1
    assert value(s, "corral_queue_weight", queue="default") == 1


def insert_failure(cp: ControlPlane, job_id: str, number: int, at: float, cause: str, kind: Kind) -> None:
    signal = classify(Observation(kind, 79 if kind is Kind.XID else None))
    cp.store.insert_failure(
        {
            "job_id": job_id,
            "attempt": number,
            "at": at,
            "blame": signal.blame.value,
            "cause": cause,
            "hardware": ["n0"],
            "hardware_healthy": False,
            "nodes": ["n0"],
            "signals": [signal_to_dict(signal)],
        }
    )


def test_interruptions_are_read_once_and_only_from_this_process_life(cp: ControlPlane) -> None:
    add_node(cp, "n0")
    add_job(cp, "j", JobState.RUNNING)
    insert_failure(cp, "j", 1, cp.started_at - 10, "xid:79", Kind.XID)  # before this process: not counted
    s = scrape(cp)
    assert s.get("corral_job_interruptions_total", []) == []
    insert_failure(cp, "j", 1, NOW - 5, "xid:79", Kind.XID)
    insert_failure(cp, "j", 2, NOW - 4, "heartbeat lost: silent 12 s", Kind.HEARTBEAT_LOST)
    s = scrape(cp)
    gpu = value(s, "corral_job_interruptions_total", component="gpu", detected_by="xid", blame="hardware")
    assert gpu == 1
    rows = {labels["cause"]: labels for labels, _ in s["corral_job_interruptions_total"]}
    assert rows["host_lost_heartbeat"]["component"] == "host"
    assert rows["host_lost_heartbeat"]["detected_by"] == "heartbeat"
    s = scrape(cp)  # nothing new: the same totals
    assert (
        value(s, "corral_job_interruptions_total", component="gpu", detected_by="xid", blame="hardware") == 1
    )


def test_recoveries_and_planned_moves_are_counted_when_they_end(cp: ControlPlane) -> None:
    failed = attempt("j", 1, NOW - 90, outcome="failed: xid:79", failed_at=NOW - 50, detect_s=0.5)
    job = add_job(cp, "j", JobState.RECOVERING, failed)
    moved = attempt("k", 1, NOW - 80, outcome="preempted: node n0 is draining (maint)", ended_at=NOW - 40)
    add_job(cp, "k", JobState.PENDING, moved)
    s = scrape(cp)
    assert value(s, "corral_job_recoveries_total", result="restarted") == 0
    assert value(s, "corral_job_interruptions_total", component="planned", cause="drain_maintenance") == 1
    # The next attempt runs 10 s after the failure: the recovery is done.
    job.attempts.append(attempt("j", 2, NOW - 46))
    failed.restart_s = 10.0
    job.state = JobState.RUNNING
    s = scrape(cp)
    assert value(s, "corral_job_recoveries_total", result="restarted") == 1
    assert value(s, "corral_job_recovery_duration_seconds_count", phase="total") == 1
    assert value(s, "corral_job_recovery_duration_seconds_sum", phase="total") == 10.5
    assert value(s, "corral_job_recovery_duration_seconds_sum", phase="reschedule") == 4.0
    assert value(s, "corral_job_recovery_duration_seconds_bucket", phase="restore", le="10.0") == 1
    s = scrape(cp)  # counted once
    assert value(s, "corral_job_recoveries_total", result="restarted") == 1


def test_no_series_uses_a_label_prometheus_sets_on_every_target(cp: ControlPlane) -> None:
    add_node(cp, "n0")
    add_job(cp, "j-run", JobState.RUNNING, attempt("j-run", 1, NOW - 60))
    for name, rows in scrape(cp).items():
        for labels, _ in rows:
            assert not {"job", "instance"} & labels.keys(), name


def test_gpu_seconds_counter_and_build_info(cp: ControlPlane) -> None:
    add_node(cp, "n0")
    add_job(cp, "j", JobState.SUCCEEDED, attempt("j", 1, NOW - 400, outcome="succeeded", ended_at=NOW - 100))
    s = scrape(cp)
    states = {labels["state"] for labels, _ in s["corral_gpu_seconds_total"]}
    assert states == {"productive", "recompute_lost", "restart_lost", "queued", "idle"}
    assert value(s, "corral_gpu_seconds_total", state="productive") == pytest.approx(8 * 300)
    assert value(s, "corral_build_info") == 1


def test_power_domains_when_power_is_managed(tmp_path: Path, clock: Clock) -> None:
    domains = PowerDomains(
        racks={
            "r1": Rack(
                name="r1", zone="z1", budget_w=8000.0, overhead_w_per_node=1000.0, nodes=frozenset({"n0"})
            )
        },
        zones={"z1": Zone(name="z1", capacity_w=20000.0)},
    )
    cp = make_cp(tmp_path, clock, power=domains)
    rt = add_node(cp, "n0")
    rt.telemetry = agent_pb2.Telemetry(
        devices=[common_pb2.DeviceTelemetry(index=i, power_w=500.0, power_limit_w=700.0) for i in range(8)]
    )
    s = scrape(cp)
    assert value(s, "corral_power_budget_watts", kind="rack", domain="r1", budget="configured") == 8000
    assert value(s, "corral_power_draw_watts", kind="rack", domain="r1") == 5000
    assert value(s, "corral_power_over_budget_seconds", kind="rack", domain="r1") == 0
    cp.store.close()


def test_collector_serves_a_prometheus_client_registry_too(cp: ControlPlane) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    add_node(cp, "n0")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector_of(cp))
    text = generate_latest(registry).decode()
    assert 'corral_node_state{node="n0",state="ready"} 1.0' in text


# --- discovery -------------------------------------------------------------------------------


def test_scrape_targets_lists_connected_agents_with_an_exporter(cp: ControlPlane) -> None:
    add_node(cp, "n1", rack="r7", metrics_url="http://10.0.0.2:9400/metrics")
    add_node(cp, "n0", metrics_url="http://127.0.0.1:40001/metrics")
    add_node(cp, "n2")  # no exporter
    add_node(cp, "n3", metrics_url="http://127.0.0.1:40003/metrics", connected=False)
    groups = scrape_targets(cp)
    assert groups == [
        {
            "targets": ["127.0.0.1:40001"],
            "labels": {
                "__scheme__": "http",
                "__metrics_path__": "/metrics",
                "node": "n0",
                "rack": "",
                "backend": "simulated",
                "simulated": "true",
            },
        },
        {
            "targets": ["10.0.0.2:9400"],
            "labels": {
                "__scheme__": "http",
                "__metrics_path__": "/metrics",
                "node": "n1",
                "rack": "r7",
                "backend": "simulated",
                "simulated": "true",
            },
        },
    ]
    assert target_group("n", "not a url", {}) is None
