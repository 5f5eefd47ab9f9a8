"""`corral power`'s numbers from hand-built node views, and the runtime around them."""

from __future__ import annotations

import grpc
import pytest
from corral.v1 import agent_pb2, cluster_pb2, common_pb2

from scheduler.model import DeviceRecord, NodeRecord, WorkerRecord
from scheduler.power.domains import DEFAULT_RACK, PowerDomains, Rack, Zone
from scheduler.power.status import (
    ADMISSION_ONLY,
    ENFORCED_BY_CAPS,
    SET_ON_NODE,
    CapInForce,
    DeviceView,
    DomainStatus,
    NodeView,
    PowerReport,
    power_status,
    update_over_since,
)
from scheduler.server.api_services import ClusterServicer
from scheduler.server.nodes import NodeRuntime
from scheduler.server.power_runtime import DISABLED_NOTE, PowerRuntime, disabled_status, report_to_proto


def domains() -> PowerDomains:
    return PowerDomains(
        zones={"z1": Zone("z1", capacity_w=3000.0, inlet_limit_c=27.0)},
        racks={
            "r1": Rack("r1", "z1", budget_w=2000.0, overhead_w_per_node=100.0, nodes=frozenset({"a"})),
            DEFAULT_RACK: Rack(DEFAULT_RACK, "z1", budget_w=1000.0, overhead_w_per_node=50.0),
        },
    )


def gpu(index: int, draw: float, limit: float = 700.0, job: str = "") -> DeviceView:
    return DeviceView(index, draw, limit, default_w=700.0, min_w=200.0, settable=True, job_id=job)


def npu(index: int, draw: float) -> DeviceView:
    return DeviceView(index, draw, 310.0, default_w=310.0, min_w=310.0, settable=False)


NODES = [
    NodeView("a", devices=(gpu(0, 650.0, job="j1"), gpu(1, 400.0, limit=500.0, job="j1"))),
    NodeView("b", labels={"rack": "r1"}, devices=(gpu(0, 300.0),), inlet_c=24.5),  # placed by label
    NodeView("c", devices=(npu(0, 290.0),)),  # default rack
]


def by_name(report: PowerReport) -> dict[str, DomainStatus]:
    return {d.name: d for d in report.domains}


def test_draw_headroom_and_caps_per_domain() -> None:
    caps = {("a", 1): CapInForce(500.0, "rack r1 over budget")}
    report = power_status(domains(), NODES, caps, {}, now=100.0)
    assert [(d.kind, d.name) for d in report.domains] == [("zone", "z1"), ("rack", "default"), ("rack", "r1")]
    rows = by_name(report)
    r1, default, z1 = rows["r1"], rows["default"], rows["z1"]
    # r1: node a 100 + 650 + 400, node b 100 + 300
    assert r1.draw_w == pytest.approx(1550.0)
    assert r1.headroom_w == pytest.approx(450.0)
    assert r1.nodes == ("a", "b") and r1.zone == "z1"
    assert r1.devices_capped == 1 and r1.enforced_by == ENFORCED_BY_CAPS
    assert r1.inlet_c == 24.5
    assert default.draw_w == pytest.approx(340.0)
    assert default.enforced_by == ADMISSION_ONLY and default.inlet_c is None
    assert z1.draw_w == pytest.approx(1890.0) and z1.zone == ""
    assert z1.nodes == ("a", "b", "c")
    assert report.site_draw_w == pytest.approx(1890.0)
    assert [(c.node, c.index, c.cap_w, c.job_id, c.reason) for c in report.caps] == [
        ("a", 1, 500.0, "j1", "rack r1 over budget")
    ]


def test_a_limit_below_default_nobody_here_set_is_shown_as_set_on_the_node() -> None:
    report = power_status(domains(), NODES, {}, {}, now=0.0)
    assert [(c.node, c.index, c.cap_w, c.reason) for c in report.caps] == [("a", 1, 500.0, SET_ON_NODE)]


def test_over_budget_clock_and_effective_budget() -> None:
    report = power_status(domains(), NODES, {}, {}, now=10.0, effective_w={"z1": 1500.0})
    z1 = by_name(report)["z1"]
    assert z1.budget_w == 3000.0 and z1.effective_budget_w == 1500.0
    assert z1.headroom_w == pytest.approx(-390.0)
    assert z1.over_budget_s == 0.0, "it just went over"
    clocks = update_over_since(report, {}, now=10.0)
    assert clocks == {("zone", "z1"): 10.0}
    later = power_status(domains(), NODES, {}, clocks, now=13.5, effective_w={"z1": 1500.0})
    assert by_name(later)["z1"].over_budget_s == pytest.approx(3.5)
    within = power_status(domains(), NODES, {}, clocks, now=14.0)
    assert by_name(within)["z1"].over_budget_s == 0.0
    assert update_over_since(within, clocks, now=14.0) == {}


def test_unmeasured_node_counts_no_draw_but_is_listed() -> None:
    report = power_status(
        domains(), [NodeView("a", devices=(gpu(0, 0.0, limit=0.0),), measured=False)], {}, {}, 0.0
    )
    r1 = by_name(report)["r1"]
    assert r1.draw_w == 0.0 and r1.nodes == ("a",)


def test_runtime_budget_changes_and_their_errors() -> None:
    rt = PowerRuntime(domains())
    rt.set_budget("zone", "z1", 2100.0)
    rt.set_budget("rack", "r1", 1200.0)
    assert rt.domains.zones["z1"].capacity_w == 2100.0
    assert rt.domains.racks["r1"].budget_w == 1200.0
    assert rt.domains.racks["r1"].nodes == frozenset({"a"})
    with pytest.raises(ValueError, match=r"^kind: must be 'zone' or 'rack'"):
        rt.set_budget("row", "z1", 1.0)
    with pytest.raises(ValueError, match=r"^name: unknown zone 'z9'; known: z1"):
        rt.set_budget("zone", "z9", 1.0)
    with pytest.raises(ValueError, match=r"^name: unknown rack 'r9'; known: default, r1"):
        rt.set_budget("rack", "r9", 1.0)
    with pytest.raises(ValueError, match=r"^budget_w: must be a number of W > 0"):
        rt.set_budget("rack", "r1", 0.0)


def test_runtime_report_keeps_clocks_and_converts_to_proto() -> None:
    rt = PowerRuntime(domains())
    rt.set_budget("rack", "r1", 1000.0)
    rt.record_caps({("a", 1): CapInForce(500.0, "rack r1 over budget")})
    assert rt.caps_for_node("a") == {1: 500.0} and rt.caps_for_node("b") == {}
    rt.report(NODES, now=5.0)
    report = rt.report(NODES, now=7.0)
    assert by_name(report)["r1"].over_budget_s == pytest.approx(2.0)
    msg = report_to_proto(report)
    assert msg.enabled and msg.site_draw_w == pytest.approx(1890.0)
    rows = {d.name: d for d in msg.domains}
    assert rows["r1"].HasField("inlet_c") and rows["r1"].inlet_c == 24.5
    assert not rows["default"].HasField("inlet_c")
    assert [(c.node, c.index, c.cap_w) for c in msg.caps] == [("a", 1, 500.0)]


def test_disabled_status_says_how_to_enable() -> None:
    msg = disabled_status()
    assert not msg.enabled and msg.note == DISABLED_NOTE
    assert "--power-topology" in msg.note


# -- the API ------------------------------------------------------------------------------


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise _Aborted(details)


def _node(name: str, draw: float) -> NodeRuntime:
    record = NodeRecord(
        name=name,
        first_seen=0.0,
        last_seen=0.0,
        devices=[
            DeviceRecord(name, 0, "nvidia", "H100", power_limit_min_w=200, power_limit_max_w=700,
                         power_limit_default_w=700, power_limit_settable=True),
        ],
    )  # fmt: skip
    rt = NodeRuntime(record=record, session=object())  # type: ignore[arg-type]
    rt.telemetry = agent_pb2.Telemetry(
        devices=[common_pb2.DeviceTelemetry(index=0, power_w=draw, power_limit_w=450)]
    )
    return rt


class _ControlPlane:
    def __init__(self, power: PowerRuntime | None) -> None:
        self.power = power
        self.nodes = [_node("a", 430.0)]

    def kick(self) -> None:
        pass

    def clock(self) -> float:
        return 50.0

    def active_workers_by_node(self) -> dict[str, list[WorkerRecord]]:
        return {"a": [WorkerRecord("w", "job-1", 1, 0, "a", [0])]}


async def test_get_power_without_a_topology_says_how_to_enable() -> None:
    servicer = ClusterServicer(_ControlPlane(None), agents=None)  # type: ignore[arg-type]
    reply = await servicer.GetPower(cluster_pb2.GetPowerRequest(), _Context())
    assert not reply.enabled and "--power-topology" in reply.note
    context = _Context()
    with pytest.raises(_Aborted):
        await servicer.SetPowerBudget(
            cluster_pb2.SetPowerBudgetRequest(kind="zone", name="z1", budget_w=1), context
        )
    assert context.code is grpc.StatusCode.FAILED_PRECONDITION


async def test_get_power_from_telemetry_and_set_budget() -> None:
    runtime = PowerRuntime(domains())
    runtime.record_caps({("a", 0): CapInForce(450.0, "rack r1 over budget")})
    servicer = ClusterServicer(_ControlPlane(runtime), agents=None)  # type: ignore[arg-type]
    reply = await servicer.GetPower(cluster_pb2.GetPowerRequest(), _Context())
    assert reply.enabled
    r1 = next(d for d in reply.domains if d.name == "r1")
    assert r1.draw_w == pytest.approx(530.0) and r1.devices_capped == 1 and list(r1.nodes) == ["a"]
    assert [(c.node, c.index, c.cap_w, c.job_id) for c in reply.caps] == [("a", 0, 450.0, "job-1")]

    reply = await servicer.SetPowerBudget(
        cluster_pb2.SetPowerBudgetRequest(kind="rack", name="r1", budget_w=500.0), _Context()
    )
    r1 = next(d for d in reply.domains if d.name == "r1")
    assert r1.budget_w == 500.0 and r1.headroom_w == pytest.approx(-30.0)


@pytest.mark.parametrize(
    ("kind", "name", "budget", "field"),
    [
        ("zone", "z9", 1.0, "name: unknown zone"),
        ("row", "r1", 1.0, "kind: "),
        ("rack", "r1", -1.0, "budget_w: "),
    ],
)
async def test_set_budget_invalid_argument_names_the_field(
    kind: str, name: str, budget: float, field: str
) -> None:
    servicer = ClusterServicer(_ControlPlane(PowerRuntime(domains())), agents=None)  # type: ignore[arg-type]
    context = _Context()
    with pytest.raises(_Aborted):
        await servicer.SetPowerBudget(
            cluster_pb2.SetPowerBudgetRequest(kind=kind, name=name, budget_w=budget), context
        )
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT and context.details.startswith(field)
