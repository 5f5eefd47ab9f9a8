"""Node and cluster commands: nodes, node, cordon, uncordon, drain, clear-health, status."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from scheduler.cli.common import DEFAULT_SERVER, Output, OutputOpt, ServerOpt, console, print_json

NodeNameArg = Annotated[
    str, typer.Argument(help="Node name, as `corral nodes` shows it.", show_default=False)
]
ReasonOpt = Annotated[str, typer.Option(help="Why, recorded with the node.")]


def list_nodes(server: ServerOpt = DEFAULT_SERVER, output: OutputOpt = Output.table) -> None:
    """List nodes: state, backend (simulated ones marked), devices, power and temperature."""
    from corral.v1 import node_pb2

    from scheduler.cli.client import connect
    from scheduler.cli.render_nodes import nodes_table

    with connect(server) as client:
        reply = client.nodes.List(node_pb2.ListNodesRequest(), timeout=client.timeout)
    if output is Output.json:
        print_json(reply)
    elif not reply.nodes:
        console().print("no nodes have registered (start one with `corral agent` or `corral up`)")
    else:
        console().print(nodes_table(sorted(reply.nodes, key=lambda n: n.name), time.time()))


def show_node(
    name: NodeNameArg, server: ServerOpt = DEFAULT_SERVER, output: OutputOpt = Output.table
) -> None:
    """Show one node: devices with their latest telemetry, health and its history.

    A quarantined node also lists the hardware failures that condemned it.
    """
    from corral.v1 import node_pb2

    from scheduler.cli.client import connect
    from scheduler.cli.render_nodes import node_detail

    with connect(server) as client:
        node = client.nodes.Get(node_pb2.GetNodeRequest(name=name), timeout=client.timeout)
    if output is Output.json:
        print_json(node)
    else:
        console().print(node_detail(node, time.time()))


def _node_action(action: str, name: str, reason: str, server: str, output: Output) -> None:
    from corral.v1 import node_pb2
    from rich.text import Text

    from scheduler.cli.client import connect
    from scheduler.cli.render import DASH
    from scheduler.cli.render_nodes import node_flags

    with connect(server) as client:
        call: Any = getattr(client.nodes, action)
        node = call(node_pb2.NodeActionRequest(name=name, reason=reason), timeout=client.timeout)
    if output is Output.json:
        print_json(node)
    else:
        flags = node_flags(node)
        why = f" ({node.cordon_reason})" if node.cordon_reason else ""
        console().print(Text(f"node {node.name}: {'schedulable' if flags == DASH else flags + why}"))


def cordon(
    name: NodeNameArg,
    reason: ReasonOpt = "",
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Stop placing new work on a node; what runs there keeps running."""
    _node_action("Cordon", name, reason, server, output)


def uncordon(name: NodeNameArg, server: ServerOpt = DEFAULT_SERVER, output: OutputOpt = Output.table) -> None:
    """Allow new work on a node again."""
    _node_action("Uncordon", name, "", server, output)


def drain(
    name: NodeNameArg,
    reason: ReasonOpt = "",
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Cordon a node and move its jobs elsewhere (checkpoint, stop, reschedule)."""
    _node_action("Drain", name, reason, server, output)


def clear_health(
    name: NodeNameArg,
    device: Annotated[
        int | None,
        typer.Option(
            "--device", min=0, help="Only this device index (default: the node and all its devices)."
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (what was repaired), recorded in the history.")] = "",
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Mark a node or one device HEALTHY after a repair: out of quarantine, flap count reset.

    Does not uncordon: `corral uncordon NAME` makes the node schedulable again.
    """
    from corral.v1 import node_pb2
    from rich.text import Text

    from scheduler.cli.client import connect
    from scheduler.cli.render_nodes import node_health_text

    request = node_pb2.ClearHealthRequest(
        name=name, device_index=-1 if device is None else device, reason=reason
    )
    with connect(server) as client:
        node = client.nodes.ClearHealth(request, timeout=client.timeout)
    if output is Output.json:
        print_json(node)
        return
    what = f"device {device} of node {node.name}" if device is not None else f"node {node.name}"
    out = console()
    out.print(Text.assemble(f"cleared {what}; node health now ", node_health_text(node)))
    if node.cordoned:
        out.print(Text(f"still cordoned: `corral uncordon {node.name}` makes it schedulable again"))


def status(server: ServerOpt = DEFAULT_SERVER, output: OutputOpt = Output.table) -> None:
    """Control-plane status: version, nodes, devices, jobs by state, telemetry ingest lag."""
    from corral.v1 import cluster_pb2

    from scheduler.cli.client import connect
    from scheduler.cli.render_nodes import status_view

    with connect(server) as client:
        reply = client.cluster.GetStatus(cluster_pb2.GetStatusRequest(), timeout=client.timeout)
    if output is Output.json:
        print_json(reply)
    else:
        console().print(status_view(reply, time.time()))
