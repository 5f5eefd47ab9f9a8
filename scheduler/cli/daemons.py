"""The long-running processes: `corral server` (the control plane) and `corral agent`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scheduler.cli.common import DEFAULT_SERVER, ServerOpt
from scheduler.cli.errors import CliError, ExitCode
from scheduler.cli.inventory import BackendOpt, ViaOpt
from scheduler.placement.policies import DEFAULT_POLICY, POLICIES

if TYPE_CHECKING:
    from agents.power_guard import SafeCapConfig
    from scheduler.power.domains import PowerDomains
    from scheduler.server.main import ServerConfig

DATA_DIR_ENV = "CORRAL_DATA_DIR"
OPERATOR_TOKEN_ENV = "CORRAL_OPERATOR_TOKEN"
DEFAULT_HTTP_PORT = 7080


# Shared by `corral server` and `corral up`, which passes them on to the server it starts.
QueuesOpt = Annotated[
    Path | None,
    typer.Option(help="Queues with quotas and weights, YAML (see examples/queues.yaml).", dir_okay=False),
]
PolicyOpt = Annotated[str, typer.Option(help=f"Placement policy: {', '.join(POLICIES)}.")]
PowerTopologyOpt = Annotated[
    Path | None,
    typer.Option(
        help="Power topology: cooling zones, racks and their budgets, YAML (see examples/power.yaml). "
        "Turns on power-aware placement and capping.",
        dir_okay=False,
    ),
]
HttpListenOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Dashboard and /metrics HOST:PORT; 'off' serves none (default: 127.0.0.1:{DEFAULT_HTTP_PORT}, "
        "or any free port when --listen's port is 0).",
        show_default=False,
    ),
]
OperatorTokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        help=f"File holding the operator token that unlocks dashboard actions (or ${OPERATOR_TOKEN_ENV}); "
        "without one the dashboard is read-only.",
        dir_okay=False,
    ),
]
DashboardRefreshOpt = Annotated[
    float, typer.Option(help="Seconds between the dashboard's live refreshes.", min=0.2, max=3600)
]


def default_http_listen(listen: str) -> str:
    """Beside an ephemeral gRPC port (tests, several servers on one machine) the dashboard
    takes an ephemeral port too, so two servers never fight over the fixed one."""
    host, _, port = listen.rpartition(":")
    if port == "0":
        return f"{host or '127.0.0.1'}:0"
    return f"127.0.0.1:{DEFAULT_HTTP_PORT}"


def read_operator_token(path: Path | None) -> str | None:
    """The token from --operator-token-file, else $CORRAL_OPERATOR_TOKEN, else None (read-only).
    A file that is missing, unreadable or empty is an error naming the flag: a server meant
    to be guarded must not start open, nor silently read-only."""
    if path is None:
        return os.environ.get(OPERATOR_TOKEN_ENV, "").strip() or None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CliError(f"--operator-token-file {path}: no such file", ExitCode.BAD_INPUT) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--operator-token-file {path}: cannot read it ({exc})", ExitCode.BAD_INPUT) from None
    if not token:
        raise CliError(
            f"--operator-token-file {path}: the file is empty; put the operator token in it",
            ExitCode.BAD_INPUT,
        )
    return token


def check_http_listen(http_listen: str) -> None:
    from scheduler.web.serve import HttpListenError, parse_listen

    try:
        parse_listen(http_listen)
    except HttpListenError as exc:
        raise CliError(str(exc), ExitCode.BAD_INPUT) from None


def default_data_dir() -> Path:
    """$CORRAL_DATA_DIR, else $XDG_DATA_HOME/corral, else ~/.local/share/corral."""
    if env := os.environ.get(DATA_DIR_ENV):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "corral"


def server(
    listen: Annotated[
        str, typer.Option(help="HOST:PORT to listen on (port 0: any free port).")
    ] = "127.0.0.1:7070",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help=f"Store and logs (default: ${DATA_DIR_ENV} or ~/.local/share/corral).", file_okay=False
        ),
    ] = None,
    queues: QueuesOpt = None,
    policy: PolicyOpt = DEFAULT_POLICY,
    heartbeat_timeout: Annotated[
        float, typer.Option(help="Seconds of silence on an agent stream before it is closed as dead.")
    ] = 10.0,
    node_grace: Annotated[
        float,
        typer.Option(help="Seconds a node may stay disconnected before its gangs are moved elsewhere."),
    ] = 30.0,
    hot_spares: Annotated[
        int,
        typer.Option(
            help="Idle healthy nodes held back per device model for gangs recovering from a failure."
        ),
    ] = 0,
    restart_backoff: Annotated[
        float,
        typer.Option(help="Seconds before a failed gang's first restart; doubles per failure in a row."),
    ] = 1.0,
    restart_backoff_max: Annotated[float, typer.Option(help="Cap on the restart backoff, seconds.")] = 60.0,
    checkpoint_timeout: Annotated[
        float,
        typer.Option(help="Seconds a job asked to checkpoint before a move may take before it moves anyway."),
    ] = 60.0,
    stop_grace: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL when workers are stopped.")
    ] = 30.0,
    power_topology: PowerTopologyOpt = None,
    http_listen: HttpListenOpt = None,
    operator_token_file: OperatorTokenFileOpt = None,
    dashboard_refresh: DashboardRefreshOpt = 5.0,
) -> None:
    """Run the control plane (with its embedded store) in the foreground."""
    from scheduler.server.main import serve
    from scheduler.web.serve import HttpListenError

    directory = data_dir or default_data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    config = load_server_config(
        queues,
        policy,
        heartbeat_timeout,
        node_grace,
        hot_spares=hot_spares,
        restart_backoff=restart_backoff,
        restart_backoff_max=restart_backoff_max,
        checkpoint_timeout=checkpoint_timeout,
        stop_grace=stop_grace,
        power_topology=power_topology,
        http_listen=default_http_listen(listen) if http_listen is None else http_listen,
        operator_token=read_operator_token(operator_token_file),
        dashboard_refresh=dashboard_refresh,
    )
    try:
        serve(listen, directory, config)
    except HttpListenError as exc:
        raise CliError(str(exc), ExitCode.BAD_INPUT) from None


def load_server_config(
    queues: Path | None,
    policy: str,
    heartbeat_timeout: float = 10.0,
    node_grace: float = 30.0,
    *,
    hot_spares: int = 0,
    restart_backoff: float = 1.0,
    restart_backoff_max: float = 60.0,
    checkpoint_timeout: float = 60.0,
    stop_grace: float = 30.0,
    power_topology: Path | None = None,
    http_listen: str = f"127.0.0.1:{DEFAULT_HTTP_PORT}",
    operator_token: str | None = None,
    dashboard_refresh: float = 5.0,
) -> ServerConfig:
    """Check the configuration before anything starts: a bad file or flag stops the server
    with the field named, instead of a control plane running with the wrong rules."""
    from scheduler.queueing import QueueConfigError, QueueSet
    from scheduler.reliability.liveness import LivenessConfig
    from scheduler.reliability.recovery import RecoveryPolicy
    from scheduler.reliability.spares import SparePolicy
    from scheduler.server.faults import FaultToleranceConfig
    from scheduler.server.main import ServerConfig

    if policy not in POLICIES:
        raise CliError(
            f"--policy: unknown policy {policy!r}; choose one of {', '.join(POLICIES)}", ExitCode.BAD_INPUT
        )
    try:
        queue_set = QueueSet.load(queues) if queues else QueueSet.default()
    except QueueConfigError as e:
        raise CliError(str(e), ExitCode.BAD_INPUT) from e
    liveness = LivenessConfig(heartbeat_timeout_s=heartbeat_timeout, grace_s=node_grace)
    # The control plane asks agents for telemetry every second: the floor for the timeout.
    if problems := liveness.problems(telemetry_interval_s=1.0):
        raise CliError("--heartbeat-timeout / --node-grace: " + "; ".join(problems), ExitCode.BAD_INPUT)
    if hot_spares < 0:
        raise CliError(
            f"--hot-spares: must be ≥ 0 nodes per device model (got {hot_spares})", ExitCode.BAD_INPUT
        )
    if restart_backoff < 0 or restart_backoff_max < restart_backoff:
        raise CliError(
            f"--restart-backoff {restart_backoff:g} / --restart-backoff-max {restart_backoff_max:g}: "
            "need 0 ≤ backoff ≤ max",
            ExitCode.BAD_INPUT,
        )
    if checkpoint_timeout <= 0:
        raise CliError(
            f"--checkpoint-timeout: must be > 0 s (got {checkpoint_timeout:g})", ExitCode.BAD_INPUT
        )
    if not stop_grace > 0:
        raise CliError(f"--stop-grace: must be > 0 s (got {stop_grace:g})", ExitCode.BAD_INPUT)
    check_http_listen(http_listen)
    if not dashboard_refresh > 0:
        raise CliError(f"--dashboard-refresh: must be > 0 s (got {dashboard_refresh:g})", ExitCode.BAD_INPUT)
    power: PowerDomains | None = None
    if power_topology is not None:
        from scheduler.power.topology import TopologyError, load_topology

        try:
            power = load_topology(power_topology)
        except TopologyError as e:
            raise CliError(
                f"--power-topology: {len(e.problems)} problem(s) in {e.source}",
                ExitCode.BAD_INPUT,
                [f"{e.source}: {p}" for p in e.problems],
            ) from e
    fault_tolerance = FaultToleranceConfig(
        recovery=RecoveryPolicy(backoff_initial_s=restart_backoff, backoff_max_s=restart_backoff_max),
        spares=SparePolicy(per_model=hot_spares),
        checkpoint_timeout_s=checkpoint_timeout,
    )
    return ServerConfig(
        queues=queue_set,
        policy=policy,
        liveness=liveness,
        fault_tolerance=fault_tolerance,
        stop_grace_s=stop_grace,
        power=power,
        http_listen=http_listen,
        operator_token=operator_token,
        dashboard_refresh_s=dashboard_refresh,
    )


def parse_labels(labels: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"label {item!r} is not KEY=VALUE", ExitCode.BAD_INPUT)
        result[key.strip()] = value.strip()
    return result


def safe_cap_config(after_s: float, cap_w: float | None, fraction: float | None) -> SafeCapConfig:
    """The agent's safe-cap flags, checked: exit 2 naming the flag."""
    from agents.power_guard import DEFAULT_SAFE_CAP_FRACTION, SafeCapConfig

    if cap_w is not None and fraction is not None:
        raise CliError("--safe-cap-w and --safe-cap-fraction: give one, not both", ExitCode.BAD_INPUT)
    config = SafeCapConfig(
        after_s=after_s, cap_w=cap_w, fraction=DEFAULT_SAFE_CAP_FRACTION if fraction is None else fraction
    )
    if problems := config.problems():
        raise CliError(problems[0], ExitCode.BAD_INPUT, problems[1:])
    return config


def agent(
    ctx: typer.Context,
    server: ServerOpt = DEFAULT_SERVER,
    simulate: Annotated[
        str | None,
        typer.Option(
            help="Simulate devices from this profile: a YAML path or a built-in name (h100-sxm-8, ...)."
        ),
    ] = None,
    node_name: Annotated[str | None, typer.Option(help="Node name (default: the host name).")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help=f"Agent state and worker logs (default: ${DATA_DIR_ENV}/agent, else "
            "~/.local/share/corral/agent).",
            file_okay=False,
        ),
    ] = None,
    address: Annotated[
        str, typer.Option(help="Address workers on this node are reached at (MASTER_ADDR).")
    ] = "127.0.0.1",
    label: Annotated[list[str] | None, typer.Option(help="Node label KEY=VALUE (repeatable).")] = None,
    safe_cap_after: Annotated[
        float,
        typer.Option(
            help="Seconds cut off from the control plane before every settable device is capped "
            "(--safe-cap-w / --safe-cap-fraction); lifted when it is back. 0: never."
        ),
    ] = 60.0,
    safe_cap_w: Annotated[
        float | None,
        typer.Option(
            help="The safe cap in W for every device (default: --safe-cap-fraction of each default).",
            show_default=False,
        ),
    ] = None,
    safe_cap_fraction: Annotated[
        float | None,
        typer.Option(
            help="The safe cap as a share of each device's default limit, never below its minimum "
            "(default 0.7).",
            show_default=False,
        ),
    ] = None,
    metrics_listen: Annotated[
        str,
        typer.Option(
            help="Serve Prometheus metrics on HOST:PORT (port 0: any free one; the control plane "
            "lists the URL for discovery); 'off' serves none."
        ),
    ] = "127.0.0.1:0",
    backend: BackendOpt = "auto",
    backend_via: ViaOpt = "auto",
) -> None:
    """Run a node agent: report this node's devices to the control plane and run its workers.

    Uses NVML when an NVIDIA driver is present, else the vendor whose devices this machine has
    (or --backend NAME); --simulate runs simulated devices instead. Exits 2 when there is no
    device backend at all. `corral agent inventory` lists the devices without connecting.
    """
    if ctx.invoked_subcommand is not None:
        return
    labels = parse_labels(label or [])
    safe_cap = safe_cap_config(safe_cap_after, safe_cap_w, safe_cap_fraction)
    from agents.backends.base import BackendError
    from agents.main import AgentConfig, main_sync
    from agents.metrics import MetricsListenError, parse_listen

    try:
        parse_listen(metrics_listen)
    except MetricsListenError as exc:
        raise CliError(str(exc), ExitCode.BAD_INPUT) from None
    from agents.profiles import ProfileError, resolve_profile

    try:
        profile = resolve_profile(simulate) if simulate else None
        config = AgentConfig(
            server=server,
            node_name=node_name,
            simulate=profile,
            data_dir=data_dir or default_data_dir() / "agent",
            address=address,
            labels=labels,
            safe_cap=safe_cap,
            metrics_listen=metrics_listen,
            backend=backend.strip().lower(),
            backend_via=backend_via,
        )
        main_sync(config)
    except (BackendError, ProfileError, MetricsListenError) as exc:
        lines = str(exc).splitlines()
        raise CliError(lines[0], ExitCode.BAD_INPUT, [line.strip() for line in lines[1:]]) from None
