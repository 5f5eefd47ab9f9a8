"""`corral sim inject`: make a simulated device misbehave, to watch recovery happen."""

from __future__ import annotations

from typing import Annotated

import typer

from agents.faults import FAULT_FORMS, parse_fault
from scheduler.cli.common import DEFAULT_SERVER, Output, OutputOpt, ServerOpt, console, print_json
from scheduler.cli.errors import CliError, ExitCode


def inject(
    node: Annotated[str, typer.Option("--node", help="Node name.", show_default=False)],
    device: Annotated[
        int, typer.Option("--device", min=0, help="Device index on the node.", show_default=False)
    ],
    fault: Annotated[
        str,
        typer.Option("--fault", help=f"One of: {', '.join(FAULT_FORMS)} (e.g. xid:79).", show_default=False),
    ],
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Inject a fault into one device of a simulated node (refused for real devices: exit 6)."""
    try:
        normalised = str(parse_fault(fault))
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.BAD_INPUT) from None

    from corral.v1 import node_pb2
    from rich.text import Text

    from scheduler.cli.client import connect

    request = node_pb2.InjectFaultRequest(node_name=node, device_index=device, fault=normalised)
    with connect(server) as client:
        reply = client.nodes.InjectFault(request, timeout=client.timeout)
    if output is Output.json:
        print_json(reply)
    else:
        console().print(Text(reply.message or f"injected {normalised} into {node} device {device}"))
