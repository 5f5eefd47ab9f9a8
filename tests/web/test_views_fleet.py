"""Dashboard views 1, 2, 4 and 7 (fleet health, failure feed, nodes, jobs) and the actions:
their query functions against an in-process ControlPlane over a real SQLite store, and pages,
partials and POSTs through the whole ASGI app (routing, templates, the token rule)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from corral.v1 import agent_pb2, common_pb2

from scheduler.jobstate import JobState
from scheduler.model import AttemptRecord, CheckpointRecord, JobRecord, WorkerPhase, WorkerRecord
from scheduler.reliability.health_state import Health, HealthRecord
from scheduler.reliability.lemon import FailureRecord, LemonVerdict
from scheduler.reliability.signals import Blame, Kind, Observation, classify
from scheduler.server.controlplane import ControlPlane
from scheduler.server.faults.recovery import signal_to_dict
from scheduler.server.nodes import NodeRuntime
from scheduler.server.session import AgentSession
from scheduler.store import Store
from scheduler.web.app import create_app
from scheduler.web.queries import fleet as fleet_q
from scheduler.web.queries.codes import classify_cause
from scheduler.web.queries.failures import FailureFilter, FilterError, failure_page, parse_since
from scheduler.web.queries.fleet import fleet_view
from scheduler.web.queries.jobs import JobFilterError, job_detail, job_list, log_tails
from scheduler.web.queries.nodes import NodeFilter, node_detail, node_list
from scheduler.web.templating import format_duration, format_gpu_hours, health_class
from tests.web.conftest import asgi

NOW = 1_800_000_000.0
HOUR = 3600.0
TOKEN = "s3cret-operator"
H100 = "H100-SXM5-80GB"


# --- an in-process control plane ---------------------------------------------------------------


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(Store.open(tmp_path / "db"), tmp_path, clock=lambda: NOW)
    yield plane
    plane.store.close()


def add_node(
    cp: ControlPlane, name: str, *, rack: str = "", devices: int = 8, connected: bool = True
) -> NodeRuntime:
    reg = agent_pb2.Register(
        node_name=name,
        backend="simulated",
        address="127.0.0.1",
        labels={"rack": rack} if rack else {},
        devices=[
            common_pb2.Device(index=i, vendor="nvidia", model=H100, memory_bytes=80 << 30, simulated=True)
            for i in range(devices)
        ],
    )
    session = AgentSession(name, "i-1")
    rt = cp.nodes.register(reg, session, NOW - 2 * HOUR)
    rt.last_seen = NOW - 0.5
    if not connected:
        cp.nodes.disconnect(name, session, NOW - HOUR)
    return rt


def set_device_health(cp: ControlPlane, node: str, index: int, state: str) -> None:
    """What faults/health.py does when a device's health changes: the HealthBook's record,
    mirrored into the registry."""
    cp.health.devices[(node, index)] = HealthRecord(state=Health[state])
    cp.nodes.set_device_health(node, index, state)


def health_event(
    cp: ControlPlane, node: str, device: int, cause: str, at: float, severity: str = "critical"
) -> None:
    cp.store.append_event(
        "health",
        f"device {device} on {node}: {cause}",
        node_name=node,
        at=at,
        data={"device": device, "cause": cause, "severity": severity, "component": "device"},
    )


def add_job(cp: ControlPlane, job_id: str, state: JobState, attempts: list[AttemptRecord]) -> JobRecord:
    spec = {"name": "train", "command": ["python", "train.py"], "workers": 1, "devices_per_worker": 8}
    job = JobRecord(job_id, "train", spec, state, NOW - HOUR, NOW - 60, attempts=attempts, reason="r")
    cp.store.insert_job(job)
    cp._index(job)
    return job


def worker(job_id: str, number: int, node: str, phase: WorkerPhase = WorkerPhase.EXITED) -> WorkerRecord:
    return WorkerRecord(f"{job_id}.{number}.0", job_id, number, 0, node, list(range(8)), phase=phase)


def failure(
    cp: ControlPlane,
    job_id: str,
    attempt: int,
    node: str,
    cause: str,
    blame: str,
    at: float,
    *,
    device: int | None = None,
    restart: bool = True,
) -> None:
    """What faults/recovery.py writes for a failed attempt: a failures row and an event."""
    kind = (
        Observation(Kind.XID, 79, device_index=device)
        if cause.startswith("xid")
        else Observation(Kind.EXIT, 1)
    )
    signals = [signal_to_dict(classify(kind))]
    cp.store.insert_failure(
        {
            "job_id": job_id,
            "attempt": attempt,
            "at": at,
            "blame": blame,
            "cause": cause,
            "hardware": [node],
            "hardware_healthy": False,
            "nodes": [node],
            "signals": signals,
        }
    )
    cp.store.append_event(
        "failure",
        f"attempt {attempt} failed: {cause}",
        job_id=job_id,
        node_name=node,
        at=at,
        data={"cause": cause, "blame": blame, "attempt": attempt, "action": "restart" if restart else "fail",
              "nodes": [node], "hardware": [node], "lost_s": 12.0, "backoff_s": 1.0, "detect_s": 0.3},
    )  # fmt: skip


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- codes and filters ---------------------------------------------------------------------------


def test_causes_read_as_signals_with_meanings() -> None:
    xid = classify_cause("xid:79")
    assert (xid.code, xid.signal) == ("xid:79", "XID 79")
    assert "fallen off the bus" in xid.meaning
    assert classify_cause("ecc_dbe:2").code == "ecc_dbe"
    assert classify_cause("heartbeat lost: node n1 lost: no contact for 31 s").signal == "heartbeat"
    assert classify_cause("hang: no progress for 600 s").code == "hang"
    assert classify_cause("rank 0 on n1 exited with code 3").code == "exit:3"
    assert classify_cause("rank 1 on n1 was killed by SIGKILL").signal == "SIGKILL"
    assert classify_cause("xid:9999").meaning == "not in Corral's XID table"


def test_filters_name_the_bad_field() -> None:
    assert parse_since("30m") == 1800 and parse_since("7d") == 7 * 86400 and parse_since("") is None
    with pytest.raises(FilterError, match="since: 'soon'"):
        FailureFilter(since="soon")
    with pytest.raises(FilterError, match="blame: 'gremlins' is not one of hardware, job, unknown"):
        FailureFilter(blame="gremlins")
    assert NodeFilter(state="asleep").problems() == [
        "state: 'asleep' is not one of ready, cordoned, draining, quarantined, disconnected, lost"
    ]


def test_template_filters() -> None:
    assert format_duration(0.25) == "250 ms" and format_duration(75) == "1 m 15 s"
    assert format_duration(2 * 86400 + 3 * 3600) == "2 d 3 h" and format_duration(None) == "–"
    assert format_gpu_hours(0.0042) == "0.004" and format_gpu_hours(12.345) == "12.3"
    assert health_class("QUARANTINED") == "h-quarantined" and health_class("whatever") == "h-unknown"


# --- fleet health ----------------------------------------------------------------------------------


def test_fleet_counts_grid_and_errors(cp: ControlPlane) -> None:
    add_node(cp, "a1", rack="r1")
    add_node(cp, "a2", rack="r1")
    add_node(cp, "b1", rack="r2")
    add_node(cp, "loose")
    add_node(cp, "gone", rack="r2", connected=False)
    set_device_health(cp, "a1", 3, "SUSPECT")
    cp.nodes.set_marks("a2", cordoned=True, draining=False, reason="maint")
    cp.ft.health.quarantine("b1", "lemon node: 3 failures", "", cause="lemon")
    health_event(cp, "a1", 3, "xid:79", NOW - 60)
    health_event(cp, "a1", 3, "xid:79", NOW - 5 * HOUR)
    health_event(cp, "a1", 2, "ecc_sbe:1", NOW - 60, severity="info")  # below threshold: not an error
    health_event(cp, "a1", 1, "xid:79", NOW - 2 * 86400)  # older than a day
    cp.store.append_event(
        "node", "node gone silent for 12 s", node_name="gone", at=NOW - 30, data={"silent_s": 12}
    )
    add_job(
        cp,
        "j-1",
        JobState.RECOVERING,
        [AttemptRecord("j-1", 1, NOW - HOUR, workers=[worker("j-1", 1, "a1")])],
    )
    failure(cp, "j-1", 1, "a1", "xid:79", "hardware", NOW - 50, device=3)  # counted once, as the device's
    failure(cp, "j-1", 1, "a1", "rank 0 on a1 exited with code 3", "job", NOW - 40)

    view = fleet_view(cp, NOW)

    assert dict(view.node_states) == {
        "ready": 2, "cordoned": 1, "draining": 0, "quarantined": 1, "disconnected": 0, "lost": 1
    }  # fmt: skip
    assert dict(view.device_health) == {"healthy": 31, "suspect": 1, "unhealthy": 0, "quarantined": 8}
    assert [(m.model, m.nodes, m.devices) for m in view.models] == [(H100, 5, 40)]
    racks = {r.name: r for r in view.racks}
    assert list(racks) == ["r1", "r2", "unassigned"]  # unlabelled nodes last
    a1 = next(n for n in racks["r1"].drawn if n.name == "a1")
    assert a1.worst == "suspect" and a1.devices[3] == "suspect" and a1.devices.count("healthy") == 7
    assert {n.name: n.worst for n in racks["r2"].drawn} == {"b1": "quarantined", "gone": "lost"}
    assert view.expanded  # 40 devices: every node drawn with every device
    assert [len(r.drawn) for r in view.racks] == [2, 2, 1]
    assert (racks["r2"].worst, racks["r2"].counts) == ("quarantined", [("quarantined", 1), ("lost", 1)])
    assert view.attention == 4 and view.drawn == 5  # all but "loose" need attention; all drawn
    errors = {e.code: (e.last_hour, e.last_day) for e in view.errors.rows}
    assert errors == {"xid:79": (1, 2), "heartbeat": (1, 1), "exit:3": (1, 1)}
    assert next(e for e in view.errors.rows if e.code == "xid:79").meaning == "GPU has fallen off the bus"


def test_big_fleet_collapses_healthy_racks_and_draws_the_worst_nodes(
    cp: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_q, "EXPAND_ALL_DEVICES_MAX", 16)
    monkeypatch.setattr(fleet_q, "MAX_DRAWN_NODES", 3)
    for i in range(4):
        add_node(cp, f"ok{i}", rack="r1")
        add_node(cp, f"mix{i}", rack="r2")
    add_node(cp, "gone", rack="r3", connected=False)
    set_device_health(cp, "mix2", 5, "UNHEALTHY")
    set_device_health(cp, "mix3", 1, "SUSPECT")
    set_device_health(cp, "mix3", 2, "SUSPECT")
    set_device_health(cp, "mix0", 0, "SUSPECT")
    cp.nodes.set_marks("mix1", cordoned=True, draining=False, reason="maint")

    view = fleet_view(cp, NOW)

    assert not view.expanded
    racks = {r.name: r for r in view.racks}
    # A rack of healthy, ready nodes is one summary: counted, none drawn.
    assert (racks["r1"].worst, racks["r1"].counts, racks["r1"].drawn) == ("healthy", [("healthy", 4)], [])
    assert racks["r2"].counts == [("unhealthy", 1), ("suspect", 2), ("cordoned", 1)]
    # Five nodes need attention; the three most pressing are drawn, with their devices: the
    # unhealthy one, the lost one, then the suspect node with more suspect devices.
    assert view.attention == 5 and view.drawn == 3
    drawn = {n.name: (n.worst, n.devices.count("healthy")) for r in view.racks for n in r.drawn}
    assert drawn == {"mix2": ("unhealthy", 7), "gone": ("lost", 8), "mix3": ("suspect", 6)}
    assert racks["r2"].not_drawn == 2 and racks["r3"].not_drawn == 0
    assert [r.name for r in view.racks_drawn] == ["r2", "r3"]


async def test_big_fleet_page_is_racks_and_attention_nodes(
    cp: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_q, "EXPAND_ALL_DEVICES_MAX", 16)
    for i in range(3):
        add_node(cp, f"ok{i}", rack="r1")
    add_node(cp, "bad", rack="r2")
    add_node(cp, "fine", rack="r2")
    set_device_health(cp, "bad", 4, "UNHEALTHY")
    status, _, body = await asgi(create_app(cp, operator_token=None), "GET", "/fleet/body")
    assert status == 200
    text = text_of(body)
    assert "r1 3 ok" in text and "r2 1 unhealthy 1 ok" in text  # one cell per rack, counts in words
    assert "Nodes needing attention: 1" in text and "1 healthy node not drawn" in text
    assert 'href="/nodes/bad"' in body and 'href="/nodes/ok0"' not in body  # healthy: not drawn
    assert body.count('class="cell h-unhealthy"') == 1 and body.count('class="cell h-healthy"') == 7


# --- failure feed --------------------------------------------------------------------------------


def seed_failures(cp: ControlPlane) -> None:
    add_node(cp, "n1")
    add_node(cp, "n2")
    first = AttemptRecord("j-a", 1, NOW - HOUR, workers=[worker("j-a", 1, "n1")], cause="xid:79",
                          blame="hardware", failed_at=NOW - 600, restart_s=4.5)  # fmt: skip
    second = AttemptRecord("j-a", 2, NOW - 590, workers=[worker("j-a", 2, "n2", WorkerPhase.RUNNING)])
    add_job(cp, "j-a", JobState.RUNNING, [first, second])
    add_job(
        cp, "j-b", JobState.FAILED, [AttemptRecord("j-b", 1, NOW - HOUR, workers=[worker("j-b", 1, "n2")])]
    )
    add_job(
        cp,
        "j-c",
        JobState.RECOVERING,
        [AttemptRecord("j-c", 1, NOW - HOUR, workers=[worker("j-c", 1, "n2")])],
    )
    failure(cp, "j-a", 1, "n1", "xid:79", "hardware", NOW - 600, device=3)
    failure(cp, "j-b", 1, "n2", "rank 0 on n2 exited with code 1", "job", NOW - 300, restart=False)
    failure(cp, "j-c", 1, "n2", "rank 0 on n2 exited with code 1", "unknown", NOW - 10)


def test_failure_feed_rows_newest_first_with_outcomes(cp: ControlPlane) -> None:
    seed_failures(cp)
    page = failure_page(cp, FailureFilter(), NOW)
    assert [r.job_id for r in page.rows] == ["j-c", "j-b", "j-a"]
    c, b, a = page.rows
    assert (a.signal, a.blame, a.device, a.nodes) == ("XID 79", "hardware", "3", ["n1"])
    assert a.outcome == "recovered on attempt 2 after 4.5 s" and a.outcome_word == "recovered"
    assert a.action == "restart after 1 s backoff" and a.lost_s == 12.0
    assert (b.signal, b.outcome, b.action) == ("exit code 1", "FAILED", "job failed: no restart")
    assert c.outcome == "pending: job RECOVERING"
    assert page.older_than is None


def test_failure_feed_filters_and_pages(cp: ControlPlane) -> None:
    seed_failures(cp)

    def only(**kw: str) -> list[str]:
        return [r.job_id for r in failure_page(cp, FailureFilter(**kw), NOW).rows]

    assert only(cause="xid:79") == ["j-a"]
    assert only(cause="exit:1") == ["j-c", "j-b"]  # a code matches as well as a substring
    assert only(blame="job") == ["j-b"]
    assert only(node="n1") == ["j-a"]
    assert only(job="j-b") == ["j-b"]
    assert only(since="6m") == ["j-c", "j-b"]
    first = failure_page(cp, FailureFilter(), NOW, page_size=2)
    assert [r.job_id for r in first.rows] == ["j-c", "j-b"] and first.older_than is not None
    rest = failure_page(cp, FailureFilter(), NOW, before=first.older_than, page_size=2)
    assert [r.job_id for r in rest.rows] == ["j-a"] and rest.older_than is None


# --- nodes -----------------------------------------------------------------------------------------


def test_node_list_filters_and_pages(cp: ControlPlane) -> None:
    for i in range(5):
        add_node(cp, f"gpu-{i}", rack="r1" if i < 3 else "r2")
    cp.nodes.set_marks("gpu-1", cordoned=True, draining=True, reason="drain")
    set_device_health(cp, "gpu-4", 0, "UNHEALTHY")
    listing = node_list(cp, NodeFilter(), 1, NOW, page_size=2)
    assert [r.name for r in listing.rows] == ["gpu-0", "gpu-1"] and listing.pages == 3
    assert listing.by_state == {"ready": 4, "draining": 1}
    assert [r.name for r in node_list(cp, NodeFilter(rack="r2"), 1, NOW).rows] == ["gpu-3", "gpu-4"]
    assert [r.name for r in node_list(cp, NodeFilter(state="draining"), 1, NOW).rows] == ["gpu-1"]
    bad = node_list(cp, NodeFilter(health="unhealthy"), 1, NOW).rows
    assert [(r.name, r.devices_bad) for r in bad] == [("gpu-4", 1)]
    assert node_list(cp, NodeFilter(text="-3"), 9, NOW).page == 1  # clamped to the last page


def test_node_detail_devices_history_failures_and_lemon(cp: ControlPlane) -> None:
    seed_failures(cp)
    rt = cp.node("n1")
    rt.telemetry = agent_pb2.Telemetry(
        devices=[
            common_pb2.DeviceTelemetry(
                index=3,
                power_w=650,
                temperature_c=71,
                utilization_pct=97,
                ecc_uncorrected_total=2,
                remapped_rows_pending=1,
            )
        ]
    )
    signal = classify(Observation(Kind.XID, 79, device_index=3))
    cp.health.observe("n1", signal, NOW - 600)
    cp.lemons["n1"] = LemonVerdict(
        "n1", (FailureRecord(NOW - 600, "j-a", 1, frozenset({"n1"}), Blame.HARDWARE, ("XID 79",)),)
    )
    cp.store.append_event("node", "node n1 cordoned: maint", node_name="n1", at=NOW - 5)
    detail = node_detail(cp, "n1", NOW)
    assert detail is not None
    dev = detail.devices[3]
    assert (dev.power_w, dev.temperature_c, dev.ecc_uncorrected, dev.remap_pending) == (650, 71, 2, 1)
    assert detail.devices[0].power_w is None  # no sample for it
    assert detail.health_history and detail.health_history[0].to_state in ("unhealthy", "suspect")
    assert [(f.job_id, f.signal) for f in detail.failures] == [("j-a", "XID 79")]
    assert [e.signals for e in detail.lemon] == ["XID 79"]
    assert detail.events[0].message == "node n1 cordoned: maint"
    assert node_detail(cp, "nope", NOW) is None


# --- jobs --------------------------------------------------------------------------------------------


def test_job_list_and_detail(cp: ControlPlane) -> None:
    seed_failures(cp)
    job = cp.jobs["j-a"]
    job.lost_device_s = 7200.0
    cp._checkpoints["j-a"] = [
        CheckpointRecord("j-a", 1, 0, 40, "/ck/40", NOW - 700, 100, 0.2, True, "periodic")
    ]
    cp.logs.append("j-a", 2, 0, 0, b"resumed from step 40\nstep 50 loss 0.2\n")
    assert {r.id for r in job_list(cp, "", 1).rows} == {"j-a", "j-b", "j-c"}
    assert [r.id for r in job_list(cp, "failed", 1).rows] == ["j-b"]
    with pytest.raises(JobFilterError, match="state: 'bogus' is not one of PENDING"):
        job_list(cp, "bogus", 1)
    detail = job_detail(cp, "j-a")
    assert detail is not None
    assert detail.lost_gpu_h == 2.0 and detail.blame == {"hardware": 1}
    assert [a.number for a in detail.attempts] == [2, 1]
    assert detail.attempts[1].signal == "XID 79" and detail.attempts[1].restart_s == 4.5
    assert [(p.rank, p.node, p.phase) for p in detail.placement] == [(0, "n2", "running")]
    assert [c.step for c in detail.checkpoints] == [40]
    tails = log_tails(cp, "j-a")
    assert [(t.rank, t.attempt) for t in tails] == [(0, 2)] and "step 50" in tails[0].text
    assert job_detail(cp, "nope") is None


# --- pages and actions through the app ---------------------------------------------------------


async def test_pages_and_partials_render(cp: ControlPlane) -> None:
    seed_failures(cp)
    app = create_app(cp, operator_token=None, refresh_s=2)
    for url, words in [
        ("/", ["Fleet health", "exit:1", "a worker exited with code 1", "every 2.0s"]),
        ("/fleet/body", ["Racks × nodes × devices"]),
        ("/failures", ["Failure feed", "recovered on attempt 2", "device 3"]),
        ("/failures/feed?blame=job", ["exit code 1"]),
        ("/nodes", ["Nodes and quarantine", "n1", "n2"]),
        ("/nodes-table?state=ready", ["n1"]),
        ("/nodes/n1", ["Node n1", "Cordon", "Quarantine", "read-only"]),
        ("/nodes/n1/status", ["ready"]),
        ("/nodes/n1/live", ["Devices", "Failure history"]),
        ("/jobs", ["Jobs", "j-a"]),
        ("/jobs-table?state=FAILED", ["j-b"]),
        ("/jobs/j-a", ["Job j-a", "Gang placement", "Attempts", "Logs"]),
        ("/jobs/j-a/live", ["Attempts", "XID 79"]),
        ("/jobs/j-a/logs", ["rank 0"]),
        ("/healthz", ["ok"]),
    ]:
        status, _, body = await asgi(app, "GET", url)
        assert status == 200, (url, body[:300])
        for word in words:
            assert word in text_of(body) or word in body, (url, word)
    assert (await asgi(app, "GET", "/failures?blame=gremlins"))[0] == 400
    status, _, body = await asgi(app, "GET", "/nodes/nope")
    assert status == 404 and "no node &#39;nope&#39;" in body
    assert (await asgi(app, "GET", "/jobs/nope"))[0] == 404


async def test_user_text_is_escaped(cp: ControlPlane) -> None:
    add_node(cp, "n1")
    cp.store.append_event("node", "<script>alert(1)</script>", node_name="n1", at=NOW)
    _, _, body = await asgi(create_app(cp, operator_token=None), "GET", "/nodes/n1")
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)" in body


async def test_actions_need_the_token(cp: ControlPlane) -> None:
    add_node(cp, "n1")
    open_app = create_app(cp, operator_token=None)
    status, _, body = await asgi(open_app, "POST", "/nodes/n1/cordon", {"HX-Request": "true"})
    assert status == 403 and "no operator token" in body
    app = create_app(cp, operator_token=TOKEN)
    hx = {"HX-Request": "true"}
    status, _, body = await asgi(app, "POST", "/nodes/n1/drain", hx)
    assert status == 403 and "Refused: read-only" in body
    status, _, _ = await asgi(app, "POST", "/nodes/n1/drain", {"Authorization": "Bearer wrong"})
    assert status == 403
    # The cookie alone, from another site (no HX-Request, foreign Origin): refused.
    cookie = {"Cookie": f"corral_operator_token={TOKEN}", "Origin": "http://evil.test"}
    status, _, body = await asgi(app, "POST", "/nodes/n1/drain", cookie)
    assert status == 403 and "cross-site" in body
    assert not cp.node("n1").record.draining

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, body = await asgi(
        app,
        "POST",
        "/nodes/n1/cordon",
        {**hx, **form, "Cookie": f"corral_operator_token={TOKEN}"},
        b"reason=fans",
    )
    assert status == 200 and "n1 cordoned" in body and headers["hx-trigger"] == "node-changed"
    assert cp.node("n1").record.cordon_reason == "fans"
    status, _, _ = await asgi(app, "POST", "/nodes/n1/drain", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and cp.node("n1").record.draining
    status, _, _ = await asgi(app, "POST", "/nodes/n1/uncordon", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and not cp.node("n1").record.cordoned
    assert (await asgi(app, "POST", "/nodes/n1/explode", hx))[0] == 404
    assert (await asgi(app, "POST", "/nodes/zz/cordon", {"Authorization": f"Bearer {TOKEN}"}))[0] == 404


async def test_quarantine_and_clear_health(cp: ControlPlane) -> None:
    add_node(cp, "n1")
    app = create_app(cp, operator_token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = await asgi(app, "POST", "/nodes/n1/quarantine", bearer)
    assert status == 200 and "quarantined" in body
    assert cp.health.node("n1").state is Health.QUARANTINED
    assert cp.node("n1").record.draining and cp.node("n1").record.cordoned
    assert "quarantined" in text_of((await asgi(app, "GET", "/nodes/n1/status"))[2])
    status, _, _ = await asgi(app, "POST", "/nodes/n1/clear-health", bearer)
    assert status == 200 and cp.health.node("n1").state is Health.HEALTHY


async def test_token_form_sets_an_httponly_strict_cookie(cp: ControlPlane) -> None:
    app = create_app(cp, operator_token=TOKEN)
    form = {"Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true"}
    status, _, body = await asgi(app, "POST", "/operator/token", form, b"token=nope")
    assert status == 403 and "Wrong operator token" in body
    status, headers, _ = await asgi(app, "POST", "/operator/token", form, f"token={TOKEN}".encode())
    cookie = headers["set-cookie"]
    assert status == 200 and headers["hx-refresh"] == "true"
    assert f"corral_operator_token={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    _, _, page = await asgi(app, "GET", "/", {"Cookie": f"corral_operator_token={TOKEN}"})
    assert ">operator<" in page and "read-only" not in text_of(page.split("</header>")[0])


def test_create_app_refuses_a_bad_refresh(cp: ControlPlane) -> None:
    with pytest.raises(ValueError, match="refresh_s: must be > 0"):
        create_app(cp, operator_token=None, refresh_s=0)


def test_error_counts_top_up_with_new_events_only(cp: ControlPlane) -> None:
    from scheduler.web.queries.errors import error_counts

    add_node(cp, "n1")
    health_event(cp, "n1", 0, "xid:48", NOW - 3 * 86400)  # long before the window
    assert error_counts(cp, NOW).rows == []
    health_event(cp, "n1", 0, "xid:48", NOW - 10)
    health_event(cp, "n1", 1, "ecc_dbe:1", NOW - 5)
    rows = {e.code: e.last_day for e in error_counts(cp, NOW).rows}
    assert rows == {"xid:48": 1, "ecc_dbe": 1}
    # A day later both have aged out; a new one counts.
    health_event(cp, "n1", 2, "thermal", NOW + 86400)
    later = error_counts(cp, NOW + 86400 + 1)
    assert [(e.code, e.last_hour) for e in later.rows] == [("thermal", 1)] and not later.truncated
