"""The `corral` app: every command wired to its implementation.

Command modules import grpc, protobuf and the server/agent packages inside the command
functions, so `corral --help` only pays for typer and rich. Exit codes: scheduler.cli.errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from scheduler.cli import daemons, events, inventory, jobs, nodes, power, queues, report, sim, up
from scheduler.cli.common import handle_errors
from scheduler.cli.errors import EXIT_CODE_HELP

EPILOG = "Exit codes:\n\n" + "\n".join(f"{int(code):>3}  {text}" for code, text in EXIT_CODE_HELP.items())

app = typer.Typer(
    name="corral",
    help="Corral — GPU cluster scheduler and fault-tolerance orchestrator.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
sim_app = typer.Typer(
    help="Simulated devices: inject faults.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
agent_app = typer.Typer(
    help="Run a node agent; `corral agent inventory` lists this node's devices.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
power_app = typer.Typer(
    help="Power and cooling: budgets, measured draw and caps per rack and zone.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"corral {version('corral')}")
        except PackageNotFoundError:
            typer.echo("corral (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Corral — GPU cluster scheduler and fault-tolerance orchestrator.

    Start a whole cluster on this machine with `corral up`, then `corral submit job.yaml -f`.
    """


_COMMANDS: list[tuple[str, Callable[..., None], str]] = [
    # (name, function, help panel)
    ("up", up.up, "Cluster"),
    ("server", daemons.server, "Cluster"),
    ("status", nodes.status, "Cluster"),
    ("events", events.list_events, "Cluster"),
    ("report", report.report, "Cluster"),
    ("submit", jobs.submit, "Jobs"),
    ("jobs", jobs.list_jobs, "Jobs"),
    ("queues", queues.list_queues, "Jobs"),
    ("job", jobs.show_job, "Jobs"),
    ("cancel", jobs.cancel, "Jobs"),
    ("logs", jobs.logs, "Jobs"),
    ("nodes", nodes.list_nodes, "Nodes"),
    ("node", nodes.show_node, "Nodes"),
    ("cordon", nodes.cordon, "Nodes"),
    ("uncordon", nodes.uncordon, "Nodes"),
    ("drain", nodes.drain, "Nodes"),
    ("clear-health", nodes.clear_health, "Nodes"),
]
for _name, _func, _panel in _COMMANDS:
    app.command(_name, rich_help_panel=_panel)(handle_errors(_func))
sim_app.command("inject")(handle_errors(sim.inject))
app.add_typer(sim_app, name="sim", rich_help_panel="Nodes")
# `corral power` shows; `corral power budget` changes a budget; `corral power inlet` feeds a
# zone's inlet temperature.
power_app.callback(invoke_without_command=True)(handle_errors(power.show))
power_app.command("budget")(handle_errors(power.budget))
power_app.command("inlet")(handle_errors(power.inlet))
app.add_typer(power_app, name="power", rich_help_panel="Cluster")
# `corral agent` runs a node agent; `corral agent inventory` lists what it would register.
agent_app.callback(invoke_without_command=True)(handle_errors(daemons.agent))
agent_app.command("inventory")(handle_errors(inventory.inventory))
app.add_typer(agent_app, name="agent", rich_help_panel="Cluster")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
