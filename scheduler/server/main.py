"""`corral server`: the control plane process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from corral.v1 import agent_pb2_grpc, cluster_pb2_grpc, job_pb2_grpc, node_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from scheduler.metrics.runtime import RpcMetricsInterceptor
from scheduler.placement.policies import DEFAULT_POLICY
from scheduler.queueing import QueueSet
from scheduler.reliability.liveness import LivenessConfig
from scheduler.server.agent_service import AgentServicer
from scheduler.server.api_services import ClusterServicer, JobServicer, NodeServicer
from scheduler.server.controlplane import ControlPlane
from scheduler.server.faults import FaultToleranceConfig
from scheduler.store import Store
from scheduler.web.serve import start_http

if TYPE_CHECKING:
    from scheduler.power.domains import PowerDomains

log = logging.getLogger("corral.server")

SERVICE_NAMES = (
    "corral.v1.AgentService",
    "corral.v1.JobService",
    "corral.v1.NodeService",
    "corral.v1.ClusterService",
)


def tune_gc() -> None:
    """Make CPython's cyclic GC stop pausing the event loop.

    Measured with benchmarks/ingest.py at 5,000 agent streams: under the default thresholds
    a full collection ran every few seconds, paused the loop for 300-700 ms and freed almost
    nothing; those pauses were the whole telemetry-lag p99 (0.5-0.7 s). With larger young
    generations, rare full collections, and what start-up loaded frozen out of them, p99 fell
    to about 0.06 s. Reference counting still frees everything acyclic at once.
    """
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)


def _server_credentials() -> grpc.ServerCredentials | None:
    """The seam for mTLS: credentials will come from configuration, not code changes."""
    return None


POWER_TELEMETRY_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ServerConfig:
    queues: QueueSet = field(default_factory=QueueSet.default)
    policy: str = DEFAULT_POLICY
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    fault_tolerance: FaultToleranceConfig = field(default_factory=FaultToleranceConfig)
    stop_grace_s: float = 30.0
    power: PowerDomains | None = None  # from --power-topology; None: power management off
    # The dashboard and /metrics: HOST:PORT ("off" or "": none; port 0: any free port).
    http_listen: str = "127.0.0.1:7080"
    operator_token: str | None = None  # None: the dashboard is read-only
    dashboard_refresh_s: float = 5.0


async def run_server(
    listen: str, data_dir: Path, stop: asyncio.Event | None = None, config: ServerConfig | None = None
) -> None:
    config = config or ServerConfig()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(data_dir)
    cp = ControlPlane(
        store,
        data_dir,
        queues=config.queues,
        policy=config.policy,
        liveness=config.liveness,
        fault_tolerance=config.fault_tolerance,
        stop_grace_s=config.stop_grace_s,
        power=config.power,
        # The power controller acts every 0.5 s (scheduler/power/controller.py); it needs a
        # sample as often. Clusters without power management keep 1 s and half the traffic.
        telemetry_interval_s=POWER_TELEMETRY_INTERVAL_S if config.power is not None else 1.0,
    )
    cp.load()
    tune_gc()
    server = grpc.aio.server(
        interceptors=[RpcMetricsInterceptor(cp.stats)],
        options=[
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.max_concurrent_streams", 100_000),
            # gRPC core cancels calls the application has not picked up once more than
            # 1,000 wait (its default). A control-plane restart makes every agent reconnect at
            # once: with the default, 1% of 2,000 streams opened at 1,000/s were CANCELLED
            # before registering; with these, 5,000 at 2,500/s all registered.
            ("grpc.server.max_pending_requests", 20_000),
            ("grpc.server.max_pending_requests_hard_limit", 50_000),
        ],
    )
    agents = AgentServicer(cp)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(agents, server)
    job_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(cp), server)
    node_pb2_grpc.add_NodeServiceServicer_to_server(NodeServicer(cp), server)
    cluster = ClusterServicer(cp, agents)
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(cluster, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    creds = _server_credentials()
    port = server.add_secure_port(listen, creds) if creds else server.add_insecure_port(listen)
    host = listen.rsplit(":", 1)[0]
    # HTTP first: a busy dashboard port stops the server before it takes any gRPC traffic.
    http = await start_http(
        cp, config.http_listen, operator_token=config.operator_token, refresh_s=config.dashboard_refresh_s
    )
    await server.start()
    await cp.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = f"{host}:{port}"
    # Written only once listening, so `corral up` and tests can wait on it.
    _write_atomically(data_dir / "server.addr", address)
    log.info(
        "corral server listening on %s (store %s, schema %s)", address, store.url, store.schema_version()
    )
    print(f"corral server listening on {address}", flush=True)
    if http is not None:
        cluster.dashboard_url, cluster.metrics_url = f"{http.url}/", http.metrics_url
        _write_atomically(data_dir / "http.addr", http.url)
        log.info("corral dashboard at %s/ (metrics at %s)", http.url, http.metrics_url)
        print(f"corral dashboard at {http.url}/ (metrics at {http.metrics_url})", flush=True)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("corral server stopping")
        await health_servicer.enter_graceful_shutdown()
        if http is not None:
            await http.stop()
            (data_dir / "http.addr").unlink(missing_ok=True)
        await cp.stop()
        agents.close_all()
        await server.stop(grace=2.0)
        (data_dir / "server.addr").unlink(missing_ok=True)
        store.close()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)


def serve(listen: str, data_dir: Path, config: ServerConfig | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_server(listen, data_dir, config=config))
