"""`corral power` and `corral power budget`: rendering from recorded PowerStatus messages,
flag errors (exit 2), and the --power-topology flag of `corral server` / `corral up`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from corral.v1 import cluster_pb2, cluster_pb2_grpc
from rich_text import text_of
from typer.testing import CliRunner

from scheduler.cli.common import message_dict
from scheduler.cli.daemons import load_server_config
from scheduler.cli.errors import CliError, ExitCode
from scheduler.cli.main import app
from scheduler.cli.power import budget_request
from scheduler.cli.render_power import format_kw, power_view
from scheduler.placement.policies import DEFAULT_POLICY
from scheduler.server.power_runtime import disabled_status

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "power.yaml"


def status() -> cluster_pb2.PowerStatus:
    zone = cluster_pb2.PowerDomainStatus(
        kind="zone",
        name="hall-a",
        budget_w=18_000,
        effective_budget_w=14_400,
        draw_w=15_100,
        devices_capped=3,
        headroom_w=-700,
        over_budget_s=4.2,
        enforced_by="caps",
        inlet_c=26.0,
        nodes=["sim-h100-0", "sim-h100-1"],
    )
    rack = cluster_pb2.PowerDomainStatus(
        kind="rack",
        name="r-h100",
        zone="hall-a",
        budget_w=16_000,
        effective_budget_w=16_000,
        draw_w=15_100,
        devices_capped=3,
        headroom_w=900,
        enforced_by="caps",
        nodes=["sim-h100-0", "sim-h100-1"],
    )
    ascend = cluster_pb2.PowerDomainStatus(
        kind="rack",
        name="r-ascend",
        zone="hall-b",
        budget_w=5_000,
        effective_budget_w=5_000,
        draw_w=4_300,
        headroom_w=700,
        enforced_by="admission only",
        nodes=["sim-ascend-0"],
    )
    caps = [
        cluster_pb2.DeviceCap(
            node="sim-h100-0",
            index=3,
            cap_w=450,
            default_w=700,
            min_w=200,
            draw_w=447.5,
            job_id="j-7",
            reason="zone hall-a over budget",
        ),
        cluster_pb2.DeviceCap(
            node="sim-h100-1",
            index=0,
            cap_w=490,
            default_w=700,
            min_w=200,
            draw_w=120,
            reason="set on the node (agent safe cap, or by hand)",
        ),
    ]
    return cluster_pb2.PowerStatus(enabled=True, domains=[zone, rack, ascend], caps=caps, site_draw_w=19_400)


def rows(out: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def test_domains_then_caps_then_site_draw() -> None:
    cells = rows(text_of(power_view(status())))
    assert cells[0] == [
        "KIND", "NAME", "ZONE", "BUDGET", "EFFECTIVE", "DRAW", "HEADROOM", "CAPPED", "OVER", "ENFORCED BY",
        "INLET", "NODES",
    ]  # fmt: skip
    assert cells[1] == [
        "zone", "hall-a", "-", "18.0 kW", "14.4 kW", "15.1 kW", "-0.7 kW", "3", "4s", "caps", "26.0 °C", "2",
    ]  # fmt: skip
    assert cells[2] == [
        "rack", "r-h100", "hall-a", "16.0 kW", "16.0 kW", "15.1 kW", "0.9 kW", "3", "-", "caps", "-", "2",
    ]  # fmt: skip
    assert cells[3][9] == "admission only"
    assert cells[4] == ["caps in force (2):"]
    assert cells[5] == ["NODE", "DEVICE", "CAP/DEFAULT", "DRAW", "JOB", "REASON"]
    assert cells[6] == ["sim-h100-0", "3", "450/700 W", "448 W", "j-7", "zone hall-a over budget"]
    assert cells[7] == [
        "sim-h100-1",
        "0",
        "490/700 W",
        "120 W",
        "-",
        "set on the node (agent safe cap, or by hand)",
    ]
    assert cells[-1] == ["site draw: 19.4 kW"]


def test_no_caps_says_so() -> None:
    reply = status()
    del reply.caps[:]
    out = text_of(power_view(reply))
    assert "caps in force: none (every device at its default limit)" in out
    assert "CAP/DEFAULT" not in out


def test_disabled_shows_how_to_enable() -> None:
    out = text_of(power_view(disabled_status()))
    assert "corral server --power-topology FILE" in out


@pytest.mark.parametrize(
    ("watts", "text"),
    [(16_000, "16.0 kW"), (700, "0.7 kW"), (-1_234, "-1.2 kW"), (250_000, "250 kW"), (0, "0.0 kW")],
)
def test_format_kw(watts: float, text: str) -> None:
    assert format_kw(watts) == text


# ----------------------------------------------------------------------------- the commands


class _Power(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self) -> None:
        self.budgets: list[cluster_pb2.SetPowerBudgetRequest] = []

    def GetPower(self, request: Any, context: Any) -> Any:
        return status()

    def SetPowerBudget(self, request: Any, context: Any) -> Any:
        if request.name != "hall-a":
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"name: unknown zone {request.name!r}; known: hall-a"
            )
        self.budgets.append(request)
        return status()


@pytest.fixture
def power_server() -> Iterator[tuple[_Power, str]]:
    servicer = _Power()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def test_power_table_and_json(power_server: tuple[_Power, str]) -> None:
    _, address = power_server
    runner = CliRunner()
    table = runner.invoke(app, ["power", "--server", address])
    assert table.exit_code == 0, table.output
    assert "r-h100" in table.output and "caps in force (2):" in table.output
    as_json = runner.invoke(app, ["power", "-o", "json", "--server", address])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == json.loads(json.dumps(message_dict(status())))


def test_budget_sends_watts(power_server: tuple[_Power, str]) -> None:
    servicer, address = power_server
    result = CliRunner().invoke(
        app, ["power", "budget", "--zone", "hall-a", "--kw", "12.6", "--server", address]
    )
    assert result.exit_code == 0, result.output
    assert "zone hall-a: budget set to 12.6 kW" in result.output
    assert [(r.kind, r.name, r.budget_w) for r in servicer.budgets] == [("zone", "hall-a", 12_600.0)]


def test_budget_rejected_by_the_server_is_exit_2(power_server: tuple[_Power, str]) -> None:
    _, address = power_server
    result = CliRunner().invoke(
        app, ["power", "budget", "--zone", "hall-z", "--kw", "5", "--server", address]
    )
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "name: unknown zone 'hall-z'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kw", "5"], "give exactly one of --zone NAME or --rack NAME"),
        (["--zone", "a", "--rack", "b", "--kw", "5"], "give exactly one of --zone NAME or --rack NAME"),
        (["--zone", "a"], "--kw: required"),
        (["--rack", "a", "--kw", "0"], "--kw: must be a number of kW > 0 (got 0)"),
        (["--rack", "a", "--kw", "-3"], "--kw: must be a number of kW > 0 (got -3)"),
        (["--rack", "a", "--kw", "nan"], "--kw: must be a number of kW > 0"),
        (["--rack", " ", "--kw", "3"], "--rack: must name a rack"),
    ],
)
def test_budget_flag_errors_exit_2_before_any_call(args: list[str], message: str, dead_address: str) -> None:
    result = CliRunner().invoke(app, ["power", "budget", *args, "--server", dead_address])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert message in result.output


def test_budget_request_converts_kw() -> None:
    assert budget_request(None, "r1", 20) == ("rack", "r1", 20_000.0)
    with pytest.raises(CliError):
        budget_request(None, None, 20)


def test_power_unimplemented_server() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(cluster_pb2_grpc.ClusterServiceServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = CliRunner().invoke(app, ["power", "--server", f"127.0.0.1:{port}"])
    finally:
        server.stop(grace=None)
    assert result.exit_code == ExitCode.ERROR
    assert "does not manage power" in result.output


# ----------------------------------------------------------------------------- --power-topology


def test_server_config_loads_the_topology() -> None:
    config = load_server_config(None, DEFAULT_POLICY, power_topology=EXAMPLE)
    assert config.power is not None and "r-h100" in config.power.racks
    assert load_server_config(None, DEFAULT_POLICY).power is None


def test_bad_topology_stops_the_server_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "power.yaml"
    bad.write_text("zones: [{name: z1, capacity_kw: 9}]\nracks: [{name: r1, zone: z9, budget_kw: 1}]\n")
    with pytest.raises(CliError) as info:
        load_server_config(None, DEFAULT_POLICY, power_topology=bad)
    assert info.value.code is ExitCode.BAD_INPUT
    assert info.value.message.startswith("--power-topology: 1 problem(s) in ")
    assert info.value.details == [f"{bad}: racks[0] (r1).zone: unknown zone 'z9'; known: z1"]


@pytest.mark.parametrize("command", ["server", "up"])
def test_bad_topology_flag_exits_2(command: str, tmp_path: Path) -> None:
    bad = tmp_path / "power.yaml"
    bad.write_text("zones: [{name: z1, capacity_kw: 0}]\n")
    result = CliRunner().invoke(
        app,
        [command, "--power-topology", str(bad), "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"],
    )
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "zones[0] (z1).capacity_kw: must be > 0 kW (got 0)" in result.output
