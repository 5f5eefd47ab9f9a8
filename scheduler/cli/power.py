"""`corral power`: budgets, measured draw and caps per rack and cooling zone; `corral power
budget` changes a budget at runtime (a demand-response event)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from scheduler.cli.common import DEFAULT_SERVER, Output, OutputOpt, ServerOpt, console, print_json
from scheduler.cli.errors import CliError, ExitCode


def _unimplemented(err: Any, server: str) -> CliError | None:
    import grpc

    if hasattr(err, "code") and err.code() is grpc.StatusCode.UNIMPLEMENTED:
        return CliError(
            f"the control plane at {server} does not manage power (an older version?)", ExitCode.ERROR
        )
    return None


def _print(reply: Any, output: Output) -> None:
    from scheduler.cli.render_power import power_view

    if output is Output.json:
        print_json(reply)
    else:
        console().print(power_view(reply))


def show(
    ctx: typer.Context,
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Power per cooling zone and rack: budget, measured draw, headroom, caps in force."""
    if ctx.invoked_subcommand is not None:
        return
    import grpc
    from corral.v1 import cluster_pb2

    from scheduler.cli.client import connect

    with connect(server) as client:
        try:
            reply = client.cluster.GetPower(cluster_pb2.GetPowerRequest(), timeout=client.timeout)
        except grpc.RpcError as err:
            if (error := _unimplemented(err, server)) is not None:
                raise error from None
            raise
    _print(reply, output)


def budget_request(zone: str | None, rack: str | None, kw: float | None) -> tuple[str, str, float]:
    """(kind, name, watts) from the flags; CliError (exit 2) naming the flag otherwise."""
    if (zone is None) == (rack is None):
        raise CliError("give exactly one of --zone NAME or --rack NAME", ExitCode.BAD_INPUT)
    if kw is None:
        raise CliError("--kw: required: the new budget in kW, e.g. --kw 70", ExitCode.BAD_INPUT)
    if not (math.isfinite(kw) and kw > 0):
        raise CliError(f"--kw: must be a number of kW > 0 (got {kw:g})", ExitCode.BAD_INPUT)
    name = (zone if zone is not None else rack) or ""
    if not name.strip():
        flag = "--zone" if zone is not None else "--rack"
        raise CliError(f"{flag}: must name a {flag[2:]}", ExitCode.BAD_INPUT)
    return ("zone" if zone is not None else "rack"), name.strip(), kw * 1000.0


def budget(
    zone: Annotated[
        str | None, typer.Option("--zone", help="Cooling zone whose capacity to set.", show_default=False)
    ] = None,
    rack: Annotated[
        str | None, typer.Option("--rack", help="Rack whose budget to set.", show_default=False)
    ] = None,
    kw: Annotated[float | None, typer.Option("--kw", help="New budget, kW.", show_default=False)] = None,
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Set a zone's capacity or a rack's budget now, until the control plane restarts
    (the topology file is not changed). Enforced by capping within seconds."""
    kind, name, watts = budget_request(zone, rack, kw)

    import grpc
    from corral.v1 import cluster_pb2

    from scheduler.cli.client import connect
    from scheduler.cli.render_power import format_kw

    request = cluster_pb2.SetPowerBudgetRequest(kind=kind, name=name, budget_w=watts)
    with connect(server) as client:
        try:
            reply = client.cluster.SetPowerBudget(request, timeout=client.timeout)
        except grpc.RpcError as err:
            if (error := _unimplemented(err, server)) is not None:
                raise error from None
            raise
    if output is Output.table:
        console().print(f"{kind} {name}: budget set to {format_kw(watts)}", markup=False)
    _print(reply, output)


def inlet(
    zone: Annotated[
        str, typer.Option("--zone", help="Cooling zone the reading is from.", show_default=False)
    ],
    c: Annotated[float, typer.Option("--c", help="Inlet temperature, °C.", show_default=False)],
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Report a zone's inlet temperature (what a building-management system reads): near the
    zone's limit its effective capacity falls, caps follow, and new work goes elsewhere."""
    if not zone.strip():
        raise CliError("--zone: must name a zone", ExitCode.BAD_INPUT)
    if not (math.isfinite(c) and -20.0 <= c <= 60.0):
        raise CliError(f"--c: must be a temperature between -20 and 60 °C (got {c:g})", ExitCode.BAD_INPUT)

    import grpc
    from corral.v1 import cluster_pb2

    from scheduler.cli.client import connect

    request = cluster_pb2.SetZoneInletRequest(zone=zone.strip(), inlet_c=c)
    with connect(server) as client:
        try:
            reply = client.cluster.SetZoneInlet(request, timeout=client.timeout)
        except grpc.RpcError as err:
            if (error := _unimplemented(err, server)) is not None:
                raise error from None
            raise
    if output is Output.table:
        console().print(f"zone {zone.strip()}: inlet {c:g} °C", markup=False)
    _print(reply, output)
