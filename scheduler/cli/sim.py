"""`corral sim inject`: make a simulated device misbehave, to watch recovery happen."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from scheduler.cli.common import DEFAULT_SERVER, Output, OutputOpt, ServerOpt, console, print_json
from scheduler.cli.errors import CliError, ExitCode

FAULT_KINDS = ("xid", "ecc-dbe", "fell-off-bus", "thermal", "hang")
ACCEPTED_FAULTS = "xid:<code> (e.g. xid:79), ecc-dbe, fell-off-bus, thermal, hang"
_XID_RE = re.compile(r"xid:(\d{1,5})")


def parse_fault(text: str) -> str:
    """Validate a fault string and return it normalised (lower case, no spaces).
    Raises ValueError naming the accepted forms."""
    fault = text.strip().lower()
    if fault in FAULT_KINDS[1:]:
        return fault
    match = _XID_RE.fullmatch(fault)
    if match and int(match.group(1)) > 0:
        return f"xid:{int(match.group(1))}"
    if fault in ("xid", "xid:"):
        raise ValueError(f"xid needs its code, e.g. xid:79; accepted: {ACCEPTED_FAULTS}")
    raise ValueError(f"unknown fault {text!r}; accepted: {ACCEPTED_FAULTS}")


def inject(
    node: Annotated[str, typer.Option("--node", help="Node name.", show_default=False)],
    device: Annotated[
        int, typer.Option("--device", min=0, help="Device index on the node.", show_default=False)
    ],
    fault: Annotated[str, typer.Option("--fault", help=f"One of: {ACCEPTED_FAULTS}.", show_default=False)],
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Inject a fault into one device of a simulated node (refused for real devices: exit 6)."""
    try:
        normalised = parse_fault(fault)
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
