"""The node agent process: pick the device backend, run workers, keep the stream up.

Stopping: when the agent itself is asked to stop (SIGTERM/SIGINT, or `stop` set), it stops
its workers (SIGTERM, SIGKILL after `worker_grace_s`), reports their exits for a few
seconds, and exits — a node whose agent is gone cannot be supervised, so its workers
should not run on unseen. `detach=True` leaves workers running instead (for agent
upgrades by hand); a restarted agent does not adopt them. Losing the control plane never
stops a worker. A second SIGTERM/SIGINT kills the workers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from corral.v1 import agent_pb2

from agents.backends.base import DeviceBackend
from agents.backends.detect import detect_backend
from agents.connection import ChannelFactory, insecure_channel
from agents.executor import Executor
from agents.metrics import AgentCollector, DeviceMetrics, MetricsListenError, MetricsServer, parse_listen
from agents.power_guard import PowerLimits, SafeCapConfig
from agents.stream import NodeIdentity, StreamClient, agent_version

log = logging.getLogger("corral.agent")

REPORT_EXITS_S = 5.0
# How often the agent checks whether it has been cut off long enough for the safe cap.
POWER_GUARD_INTERVAL_S = 1.0


def default_data_dir() -> Path:
    return Path.home() / ".corral" / "agent"


@dataclass
class AgentConfig:
    server: str
    node_name: str | None = None
    simulate: Path | None = None
    # "auto" (NVML, then any domestic vendor found here), "nvidia" or a vendor name; and for a
    # domestic vendor, how to read it: "auto" (library, else tool), "library" or "cli".
    backend: str = "auto"
    backend_via: str = "auto"
    data_dir: Path = field(default_factory=default_data_dir)
    address: str = "127.0.0.1"
    labels: dict[str, str] = field(default_factory=dict)
    detach: bool = False
    worker_grace_s: float = 10.0
    safe_cap: SafeCapConfig = field(default_factory=SafeCapConfig)
    channel_factory: ChannelFactory = insecure_channel
    # Prometheus exporter (agents/metrics.py): HOST:PORT, port 0 for any free one; "" or "off": none.
    metrics_listen: str = "127.0.0.1:0"


class Agent:
    """The assembled agent; `run_agent` is the usual way in."""

    def __init__(self, config: AgentConfig, backend: DeviceBackend) -> None:
        self.config = config
        self.backend = backend
        self.data_dir = config.data_dir.expanduser().resolve()
        self.node_name = config.node_name or backend.node_info().default_name
        self.executor = Executor(
            self.data_dir,
            backend.visibility_env,
            device_count=len(backend.inventory()),
            on_busy=backend.set_busy,
        )
        self.power = PowerLimits(backend, self.data_dir, config.safe_cap)
        self.metrics = DeviceMetrics(
            self.node_name, backend.inventory(), backend=backend.name, version=agent_version()
        )
        self.client = StreamClient(
            config.server,
            NodeIdentity(node_name=self.node_name, address=config.address, labels=dict(config.labels)),
            backend,
            self.executor,
            channel_factory=config.channel_factory,
            power=self.power,
            metrics=self.metrics,
        )
        self.metrics.connected = self.client.connected.is_set
        self.metrics_server: MetricsServer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "agent %s starting: backend %s, control plane %s, data in %s",
            self.node_name,
            self.backend.name,
            self.config.server,
            self.data_dir,
        )
        # Before the stream opens, so the caps the control plane last set hold from the start.
        await asyncio.to_thread(self.power.restore)
        self._serve_metrics()
        try:
            await self._run(stop)
        finally:
            if self.metrics_server is not None:
                self.metrics_server.close()

    def _serve_metrics(self) -> None:
        """Start the exporter before the stream, so Register carries its URL."""
        listen = parse_listen(self.config.metrics_listen)
        if listen is None:
            return
        host, port = listen
        collector = AgentCollector(self.metrics, self.backend.sample)
        try:
            self.metrics_server = MetricsServer(collector, host, port, advertise=self.config.address)
        except OSError as exc:
            raise MetricsListenError(
                f"--metrics-listen: cannot listen on {self.config.metrics_listen}: {exc.strerror or exc}"
                " (pick another port, 0 for any free one, or off)"
            ) from None
        self.client.metrics_url = self.metrics_server.url
        log.info("serving Prometheus metrics at %s", self.metrics_server.url)

    async def _run(self, stop: asyncio.Event) -> None:
        client_stop = asyncio.Event()
        stream = asyncio.create_task(self.client.run(client_stop), name="stream client")
        guard = asyncio.create_task(self._guard_power(), name="power guard")
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stream, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        guard.cancel()
        if stream.done():
            stream.result()
            return
        running = self.executor.running_ids()
        # Tell the control plane first, so it places nothing here while workers stop.
        self.client.send_reliable(leaving=agent_pb2.Leaving(reason="agent stopping"))
        if running and not self.config.detach:
            log.info(
                "stopping %d workload(s) before exiting (grace %g s)",
                len(running),
                self.config.worker_grace_s,
            )
            await self.executor.stop_all(self.config.worker_grace_s, reason="agent stopping")
        elif running:
            log.info("detaching: leaving %d workload(s) running", len(running))
        if not await self.client.settle(REPORT_EXITS_S):
            log.warning(
                "exiting with %d report(s) not acknowledged by the control plane", len(self.client.outbox)
            )
        client_stop.set()
        await stream
        log.info("agent %s stopped", self.node_name)

    async def _guard_power(self) -> None:
        """The safe cap: on after the agent has been cut off too long, off once it is back."""
        if self.config.safe_cap.after_s <= 0:
            return
        while True:
            await asyncio.sleep(POWER_GUARD_INTERVAL_S)
            try:
                if self.client.connected.is_set():
                    await asyncio.to_thread(self.power.lift)
                else:
                    await asyncio.to_thread(self.power.check, self.client.disconnected_for())
            except Exception:  # a backend failure must not end the agent; try again next time
                log.exception("power guard check failed")


async def run_agent(config: AgentConfig, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (forever if None). NoDeviceBackend / ProfileError come first."""
    backend = detect_backend(
        config.simulate, node_name=config.node_name, backend=config.backend, via=config.backend_via
    )
    try:
        await Agent(config, backend).run(stop or asyncio.Event())
    finally:
        backend.close()


def main_sync(config: AgentConfig) -> None:
    """Entry point for `corral agent`: logging (unless set up already) and signal handling."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(config))


async def _main(config: AgentConfig) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    backend = detect_backend(
        config.simulate, node_name=config.node_name, backend=config.backend, via=config.backend_via
    )
    agent = Agent(config, backend)

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info("%s received: stopping", name)
            stop.set()
        else:
            log.warning("%s received again: killing workers now", name)
            agent.executor.kill_all()

    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await agent.run(stop)
    finally:
        backend.close()
        for signum in signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
