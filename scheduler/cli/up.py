"""`corral up`: a whole cluster on this machine — the control plane with its embedded store,
and local agents on the real NVIDIA devices (NVML) or, where there are none, a simulated
heterogeneous cluster."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from scheduler.cli.common import Output, console
from scheduler.cli.daemons import (
    DEFAULT_HTTP_PORT,
    DashboardRefreshOpt,
    HttpListenOpt,
    OperatorTokenFileOpt,
    PolicyOpt,
    PowerTopologyOpt,
    QueuesOpt,
    default_http_listen,
    load_server_config,
    read_operator_token,
)
from scheduler.cli.errors import CliError, ExitCode
from scheduler.placement.policies import DEFAULT_POLICY

if TYPE_CHECKING:
    from scheduler.cli.client import Client
    from scheduler.cli.procs import Child, Supervisor

# (node name, built-in profile) of the simulated cluster
SIMULATED_CLUSTER: tuple[tuple[str, str], ...] = (
    ("sim-h100-0", "h100-sxm-8"),
    ("sim-h100-1", "h100-sxm-8"),
    ("sim-ascend-0", "ascend-910b-8"),
    ("sim-mlu-0", "mlu370-x8-4"),
)
SERVER_START_TIMEOUT_S = 30.0
NODES_READY_TIMEOUT_S = 60.0
LOGS_WAIT_S = 30.0


def nvml_probe() -> tuple[bool, str]:
    """(True, what was found) when NVML initialises and sees a device, else (False, why not)."""
    try:
        import pynvml
    except ImportError as exc:
        return False, f"nvidia-ml-py is not installed ({exc})"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return False, str(exc) or type(exc).__name__
    try:
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception as exc:
        return False, str(exc) or type(exc).__name__
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    if count == 0:
        return False, "the driver is loaded but reports no devices"
    return True, f"{count} NVIDIA device{'s' if count != 1 else ''}"


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise CliError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:7070", ExitCode.BAD_INPUT)
    return host.strip("[]"), int(port)


def dial_address(address: str) -> str:
    """An address a client can dial: a wildcard listen host becomes loopback."""
    host, port = split_listen(address)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port_in_use(address: str) -> bool:
    host, port = split_listen(dial_address(address))
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _lock_data_dir(data_dir: Path) -> IO[str]:
    handle = (data_dir / "up.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise CliError(
            f"another `corral up` is running with data dir {data_dir}; stop it or pass --data-dir",
            ExitCode.BAD_INPUT,
        ) from None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _probe(address: str) -> bool:
    """True when a control plane answers GetStatus at this address."""
    import grpc
    from corral.v1 import cluster_pb2

    from scheduler.cli.client import Client

    client = Client(address)
    try:
        client.cluster.GetStatus(cluster_pb2.GetStatusRequest(), timeout=1.0)
        return True
    except grpc.RpcError:
        return False
    finally:
        client.close()


def start_server(sup: Supervisor, data_dir: Path, listen: str, *extra: str) -> tuple[Child, str]:
    """Start `corral server`; return it and its address once it answers GetStatus."""
    from scheduler.cli.procs import corral_argv

    addr_file = data_dir / "server.addr"
    addr_file.unlink(missing_ok=True)
    child = sup.start(
        "server", "server", corral_argv("server", "--listen", listen, "--data-dir", str(data_dir), *extra)
    )
    started = time.monotonic()
    _, port = split_listen(listen)
    while time.monotonic() - started < SERVER_START_TIMEOUT_S:
        if not child.running:
            raise CliError(
                f"the control plane exited with code {child.popen.returncode} while starting",
                ExitCode.ERROR,
                child.log_tail(),
            )
        address = None
        if addr_file.is_file() and (text := addr_file.read_text().strip()):
            address = dial_address(text)
        elif port and time.monotonic() - started > 2.0:
            address = dial_address(listen)  # in case this server writes no server.addr for a fixed port
        if address and _probe(address):
            return child, address
        time.sleep(0.1)
    raise CliError(
        f"the control plane did not answer within {SERVER_START_TIMEOUT_S:.0f} s",
        ExitCode.ERROR,
        child.log_tail(),
    )


def wait_ready(client: Client, agents: list[Child], names: list[str]) -> list[Any]:
    """Wait until every named node is READY; return them in the given order."""
    from corral.v1 import node_pb2

    started = time.monotonic()
    missing = names
    while time.monotonic() - started < NODES_READY_TIMEOUT_S:
        for agent in agents:
            if not agent.running:
                raise CliError(
                    f"agent {agent.name} exited with code {agent.popen.returncode}",
                    ExitCode.ERROR,
                    agent.log_tail(),
                )
        reply = client.nodes.List(node_pb2.ListNodesRequest(), timeout=client.timeout)
        ready = {n.name: n for n in reply.nodes if n.state == node_pb2.NODE_STATE_READY}
        missing = [name for name in names if name not in ready]
        if not missing:
            return [ready[name] for name in names]
        time.sleep(0.25)
    raise CliError(
        f"nodes not ready after {NODES_READY_TIMEOUT_S:.0f} s: {', '.join(missing)}",
        ExitCode.ERROR,
        [f"see {agent.log_path}" for agent in agents if agent.name in missing],
    )


def _plan_agents(simulate: bool | None) -> tuple[list[tuple[str, str | None]], str]:
    """[(node name, profile or None for real devices)] and the sentence saying which."""
    if simulate:
        found, why = False, "--simulate given"
    else:
        found, why = nvml_probe()
        if not found and simulate is False:
            raise CliError(f"--real given, but NVML did not initialise: {why}", ExitCode.BAD_INPUT)
    if found:
        node = socket.gethostname().split(".")[0].lower() or "local"
        return [(node, None)], f"NVML found {why} — starting one agent on this machine's real devices"
    counts: dict[str, int] = {}
    for _, profile in SIMULATED_CLUSTER:
        counts[profile] = counts.get(profile, 0) + 1
    cluster = ", ".join(f"{n}× {profile}" for profile, n in counts.items())
    reason = why if simulate else f"no NVIDIA device found (NVML: {why})"
    return [(n, p) for n, p in SIMULATED_CLUSTER], f"{reason} — starting a SIMULATED cluster: {cluster}"


def choose_http_listen(listen: str, http_listen: str | None) -> tuple[str, str]:
    """The dashboard's HOST:PORT for the server, and a note for the user ("" if none).

    Asked for explicitly, a busy port is an error; by default a busy 7080 (another cluster,
    another program) moves the dashboard to a free port and says so."""
    from scheduler.web.serve import parse_listen

    if http_listen is not None:
        where = parse_listen(http_listen)
        if where is not None and where[1] and port_in_use(http_listen):
            raise CliError(
                f"something already listens on {http_listen}; stop it, or pass --http-listen 127.0.0.1:0 "
                "(any free port) or --http-listen off",
                ExitCode.BAD_INPUT,
            )
        return http_listen, ""
    chosen = default_http_listen(listen)
    if chosen.endswith(f":{DEFAULT_HTTP_PORT}") and port_in_use(chosen):
        return (
            "127.0.0.1:0",
            f"{chosen} is busy: the dashboard takes a free port instead (--http-listen to choose one)",
        )
    return chosen, ""


def _print_summary(nodes: list[Any], address: str, data_dir: Path, example: bool, status: Any) -> None:
    from scheduler.cli.render_nodes import cluster_summary

    out = console()
    devices = sum(len(n.devices) for n in nodes)
    simulated = any(n.simulated for n in nodes)
    vendors = sorted({d.vendor for n in nodes for d in n.devices if d.vendor})
    kind = "[bold magenta]SIMULATED[/]" if simulated else "real"
    plural = "s" if len(nodes) != 1 else ""
    out.print(
        f"\n[bold green]corral is up[/]: control plane at {address}, "
        f"{len(nodes)} node{plural}, {devices} {kind} devices ({', '.join(vendors) or '-'})"
    )
    out.print(cluster_summary(nodes))
    if status.dashboard_url:
        out.print(
            f"\n[bold]dashboard[/]: {escape(status.dashboard_url)}  (metrics at {escape(status.metrics_url)})"
        )
    out.print(f"\ndata and logs: {escape(str(data_dir))} (logs/)")
    if example:
        return
    out.print(f"\n  export CORRAL_SERVER={address}\n")
    first = nodes[0].name if nodes else "NODE"
    out.print("next:")
    out.print("  corral nodes")
    out.print("  corral submit job.yaml --follow")
    out.print("  corral jobs")
    if simulated:
        out.print(f"  corral sim inject --node {first} --device 0 --fault xid:79")
    out.print("\nCtrl-C stops the cluster.")


def _run_example(client: Client, spec: Any) -> ExitCode:
    import grpc
    from corral.v1 import job_pb2

    from scheduler.cli.jobs import default_owner, follow_job, stream_logs

    out = console()
    job = client.jobs.Submit(
        job_pb2.SubmitJobRequest(spec=spec, owner=default_owner()), timeout=client.timeout
    )
    out.print(f"\nsubmitted job [bold]{escape(job.id)}[/] ({spec.name})")
    code = follow_job(client, job.id, Output.table, detached_hint=False)
    out.print(f"\n[bold]logs of job {escape(job.id)}:[/]")
    # follow=True on an ended job waits until every worker's exit (and so its whole log) is
    # in; the deadline guards against a worker whose exit never arrives.
    try:
        stream_logs(client, job.id, None, 0, True, Output.table, timeout=LOGS_WAIT_S)
    except grpc.RpcError as err:
        if err.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        console(stderr=True).print(f"[yellow](logs incomplete after {LOGS_WAIT_S:.0f} s)[/]")
    return code


def _watch(sup: Supervisor, server: Child) -> None:
    """Stay in the foreground until a stop signal; fail if the control plane dies."""
    reported: set[str] = set()
    while True:
        if not server.running:
            raise CliError(
                f"the control plane exited with code {server.popen.returncode}",
                ExitCode.ERROR,
                server.log_tail(),
            )
        for child in sup.children:
            if child.role == "agent" and not child.running and child.name not in reported:
                reported.add(child.name)
                code, log = child.popen.returncode, escape(str(child.log_path))
                console(stderr=True).print(
                    f"[yellow]agent {child.name} exited with code {code}; see {log}[/]"
                )
        sup.reap_orphans()
        time.sleep(0.5)


def up(
    data_dir: Annotated[Path, typer.Option(help="Store, agent state and logs.", file_okay=False)] = Path(
        ".corral"
    ),
    listen: Annotated[
        str, typer.Option(help="Control plane HOST:PORT (port 0: any free port).")
    ] = "127.0.0.1:7070",
    simulate: Annotated[
        bool | None,
        typer.Option(
            "--simulate/--real", help="Simulated devices, or real ones (default: real if NVML works)."
        ),
    ] = None,
    example: Annotated[
        Path | None,
        typer.Option(
            help="Submit this job spec, follow it, print its logs, stop, and exit with its result.",
            dir_okay=False,
        ),
    ] = None,
    queues: QueuesOpt = None,
    policy: PolicyOpt = DEFAULT_POLICY,
    power_topology: PowerTopologyOpt = None,
    http_listen: HttpListenOpt = None,
    operator_token_file: OperatorTokenFileOpt = None,
    dashboard_refresh: DashboardRefreshOpt = 5.0,
) -> None:
    """Start a whole cluster on this machine: control plane, store and local agents.

    Stays in the foreground until Ctrl-C; with --example it runs that job and exits with its
    result (0 SUCCEEDED, 1 FAILED, 5 CANCELLED).
    """
    from corral.v1 import cluster_pb2

    from scheduler.cli.client import connect
    from scheduler.cli.jobs import load_job_spec
    from scheduler.cli.procs import StopSignals, Supervisor, corral_argv

    spec = load_job_spec(example) if example is not None else None  # bad spec: exit 2 before starting
    # A bad queue or topology file, policy, token file or address: exit 2 before starting anything.
    read_operator_token(operator_token_file)
    load_server_config(
        queues,
        policy,
        power_topology=power_topology,
        http_listen=http_listen or "off",
        dashboard_refresh=dashboard_refresh,
    )
    server_args = ["--policy", policy, *(["--queues", str(queues.resolve())] if queues else [])]
    if power_topology is not None:
        server_args += ["--power-topology", str(power_topology.resolve())]
    if operator_token_file is not None:
        server_args += ["--operator-token-file", str(operator_token_file.resolve())]
    server_args += ["--dashboard-refresh", f"{dashboard_refresh:g}"]
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _, port = split_listen(listen)
    if port and port_in_use(listen):
        raise CliError(
            f"something already listens on {listen}; stop it, or pass --listen 127.0.0.1:0",
            ExitCode.BAD_INPUT,
        )
    chosen_http, http_note = choose_http_listen(listen, http_listen)
    server_args += ["--http-listen", chosen_http]
    lock = _lock_data_dir(data_dir)
    plan, sentence = _plan_agents(simulate)
    out = console()
    if http_note:
        out.print(f"[yellow]{escape(http_note)}[/]")
    signals = StopSignals()
    sup = Supervisor(data_dir / "logs", signals)
    sup.adopt_orphans()
    signals.install()
    code = ExitCode.OK
    try:
        out.print(f"starting the control plane (data dir {escape(str(data_dir))}) ...")
        server, address = start_server(sup, data_dir, listen, *server_args)
        out.print(escape(sentence))
        agents = []
        for name, profile in plan:
            argv = [
                "agent",
                "--server",
                address,
                "--node-name",
                name,
                "--data-dir",
                str(data_dir / "agents" / name),
            ]
            argv += ["--simulate", profile] if profile else []
            agents.append(sup.start(name, "agent", corral_argv(*argv)))
        with connect(address) as client:
            nodes = wait_ready(client, agents, [name for name, _ in plan])
            status = client.cluster.GetStatus(cluster_pb2.GetStatusRequest(), timeout=client.timeout)
            _print_summary(nodes, address, data_dir, example is not None, status)
            if spec is not None:
                code = _run_example(client, spec)
        if spec is None:
            with contextlib.suppress(KeyboardInterrupt):
                _watch(sup, server)
    finally:
        if sup.children:
            console(stderr=True).print("stopping the cluster ...")
        sup.stop_all()
        signals.restore()
        lock.close()
    if code is not ExitCode.OK:
        raise typer.Exit(int(code))
