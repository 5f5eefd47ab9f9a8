"""The agent's side of `AgentService/Connect` (docs/protocol.md).

One session = one stream: register, wait for the ack, ship logs up to date, resend the
outbox, then run until the stream breaks. Sessions are retried forever with capped
exponential backoff and jitter; workers are never touched by a lost control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from corral.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from tenacity import AsyncRetrying, RetryCallState, retry_if_not_exception_type, wait_random_exponential
from tenacity.wait import wait_base

from agents.backends.base import DeviceBackend
from agents.commands import CommandHandler
from agents.connection import ChannelFactory, Connection, insecure_channel
from agents.executor import Executor
from agents.health_watch import NodeWatch
from agents.logship import LogShipper
from agents.metrics import DeviceMetrics
from agents.outbox import DEFAULT_CAPACITY, Outbox
from agents.power_guard import PowerLimits
from agents.timeutil import timestamp

log = logging.getLogger("corral.agent.stream")

DEFAULT_TELEMETRY_INTERVAL_S = 1.0
# A session shorter than this counts as a failed attempt, so a control plane that accepts
# and drops at once is met with growing backoff rather than a reconnect loop.
STABLE_SESSION_S = 10.0
_FINISHED = (common_pb2.WORKLOAD_PHASE_EXITED, common_pb2.WORKLOAD_PHASE_FAILED_TO_START)


def agent_version() -> str:
    try:
        return importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class SessionLost(Exception):
    """A registered session ended; the next one starts with fresh backoff."""


@dataclass
class NodeIdentity:
    node_name: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class StreamClient:
    def __init__(
        self,
        server: str,
        identity: NodeIdentity,
        backend: DeviceBackend,
        executor: Executor,
        *,
        channel_factory: ChannelFactory = insecure_channel,
        outbox_capacity: int = DEFAULT_CAPACITY,
        wait: wait_base | None = None,
        register_timeout_s: float = 10.0,
        log_interval_s: float = 0.5,
        power: PowerLimits | None = None,
        metrics: DeviceMetrics | None = None,
    ) -> None:
        self.server = server
        self.identity = identity
        self.backend = backend
        self.executor = executor
        self.outbox = Outbox(outbox_capacity)
        self.shipper = LogShipper(executor.log_paths)
        self.commands = CommandHandler(executor, backend, power)
        # Outlives sessions: its counter baselines are what a rise is measured from.
        self.watch = NodeWatch(backend.health_thresholds(), next((d.vendor for d in backend.inventory()), ""))
        self.connected = asyncio.Event()
        # The exporter's counters (agents/metrics.py) and where it serves them, sent in Register.
        self.metrics = metrics
        self.metrics_url = ""
        self.sessions = 0
        self.telemetry_interval_s = DEFAULT_TELEMETRY_INTERVAL_S
        self._channel_factory = channel_factory
        self._wait = wait or wait_random_exponential(multiplier=0.2, max=5)
        self._register_timeout_s = register_timeout_s
        self._log_interval_s = log_interval_s
        self._conn: Connection | None = None
        self._stop = asyncio.Event()
        self._pumping = False
        self._down_since: float | None = None
        # Since when no session is registered, counting from the start: an agent that has not
        # reached the control plane yet is as cut off as one that lost it (the safe cap).
        self._cut_off_since: float | None = None

    # -- reliable messages ---------------------------------------------------------------

    def send_reliable(self, on_ack: Callable[[], None] | None = None, **body: Any) -> None:
        message = self.outbox.add(agent_pb2.AgentMessage(**body), on_ack)
        if self._conn is not None:
            self._conn.put(message)

    def _on_health(self, event: common_pb2.HealthEvent) -> None:
        self.watch.note(event)
        if self.metrics is not None:
            self.metrics.observe_health(event)
        self.send_reliable(health=event)

    def _watch_telemetry(self, devices: list[common_pb2.DeviceTelemetry]) -> None:
        """Counter and flag changes in one sample → health events, sent like the backend's."""
        for event in self.watch.observe(devices, time.monotonic()):
            level = logging.INFO if event.severity == common_pb2.SEVERITY_INFO else logging.WARNING
            log.log(level, "device %d: %s", event.device_index, event.message)
            if self.metrics is not None:
                self.metrics.observe_health(event)
            self.send_reliable(health=event)

    async def _pump_workload_updates(self) -> None:
        """Executor phase changes → reliable messages; an exit only after its log is shipped."""
        while True:
            status = await self.executor.updates.get()
            self._pumping = True
            try:
                if status.phase in _FINISHED:
                    # The executor queued the worker's last checkpoints before its exit; they
                    # go first, so the control plane knows what to resume from when it sees it.
                    self._send_checkpoints()
                    await self.shipper.flush(status.workload_id)
                    self.send_reliable(
                        functools.partial(self._exit_acked, status.workload_id), workload=status
                    )
                else:
                    self.send_reliable(workload=status)
            finally:
                self._pumping = False

    def _send_checkpoints(self) -> None:
        while not self.executor.checkpoints.empty():
            self.send_reliable(checkpoint=self.executor.checkpoints.get_nowait())

    async def _pump_checkpoints(self) -> None:
        """Checkpoint reports from the workers' channels → reliable messages."""
        while True:
            report = await self.executor.checkpoints.get()
            self.send_reliable(checkpoint=report)
            self._send_checkpoints()

    def _exit_acked(self, workload_id: str) -> None:
        self.executor.acknowledge_exit(workload_id)
        self.shipper.forget(workload_id)

    async def settle(self, timeout_s: float) -> bool:
        """Wait until every status is reported and acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            idle = self.executor.updates.empty() and self.executor.checkpoints.empty() and not self._pumping
            if idle and not len(self.outbox):
                return True
            await asyncio.sleep(0.05)
        return False

    def disconnected_for(self) -> float:
        """Seconds without a registered session (0 while connected or before `run`)."""
        if self._cut_off_since is None:
            return 0.0
        return time.monotonic() - self._cut_off_since

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a session open until `stop` is set."""
        self._stop = stop
        self._cut_off_since = time.monotonic()
        loop = asyncio.get_running_loop()

        def from_any_thread(event: common_pb2.HealthEvent) -> None:
            try:
                loop.call_soon_threadsafe(self._on_health, event)
            except RuntimeError:  # the loop is closing; the agent is going away
                log.warning("health event after shutdown dropped: %s", event.message)

        self.backend.set_health_listener(from_any_thread)
        pumps = [
            asyncio.create_task(self._pump_workload_updates(), name="workload updates"),
            asyncio.create_task(self._pump_checkpoints(), name="checkpoint reports"),
        ]
        try:
            while not stop.is_set():
                retrying = AsyncRetrying(
                    wait=self._wait,
                    sleep=self._sleep,
                    retry=retry_if_not_exception_type(SessionLost),
                    before_sleep=self._log_retry,
                    reraise=True,
                )
                with contextlib.suppress(SessionLost):
                    async for attempt in retrying:
                        with attempt:
                            await self._attempt()
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self.backend.set_health_listener(None)

    async def _attempt(self) -> None:
        """One session, abandoned (and cleaned up) the moment the agent is told to stop."""
        if self._stop.is_set():
            return
        session = asyncio.create_task(self._session(), name="stream session")
        stopper = asyncio.create_task(self._stop.wait(), name="stop")
        try:
            await asyncio.wait([session, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not session.done():
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await session
        if not session.cancelled():
            session.result()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _log_retry(self, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        level = logging.WARNING if state.attempt_number == 1 else logging.INFO
        log.log(
            level,
            "control plane %s unreachable (%s); retrying in %.1f s (attempt %d)",
            self.server,
            _describe(err),
            delay,
            state.attempt_number,
        )

    def _register(self) -> agent_pb2.Register:
        info = self.backend.node_info()
        return agent_pb2.Register(
            node_name=self.identity.node_name,
            hostname=socket.gethostname(),
            address=self.identity.address,
            agent_version=agent_version(),
            backend=self.backend.name,
            devices=self.backend.inventory(),
            workloads=self.executor.statuses(),
            labels=self.identity.labels,
            cpu_count=info.cpu_count,
            memory_bytes=info.memory_bytes,
            instance_id=self.identity.instance_id,
            metrics_url=self.metrics_url,
        )

    def _apply_ack(self, message: agent_pb2.ControlMessage) -> None:
        if message.ack_seq:
            self.outbox.ack(message.ack_seq)

    async def _session(self) -> None:
        channel = self._channel_factory(self.server)
        conn: Connection | None = None
        tasks: list[asyncio.Task[Any]] = []
        started = time.monotonic()
        try:
            call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
            await call.write(agent_pb2.AgentMessage(register=self._register()))
            first = await asyncio.wait_for(call.read(), self._register_timeout_s)
            if first is grpc.aio.EOF or not first.HasField("register_ack"):
                raise ConnectionError("the control plane did not answer register with register_ack")
            self._apply_ack(first)
            ack = first.register_ack
            self.telemetry_interval_s = ack.telemetry_interval_s or DEFAULT_TELEMETRY_INTERVAL_S
            conn = Connection(call)
            tasks = [
                asyncio.create_task(conn.write_loop(), name="stream writer"),
                asyncio.create_task(self._read_loop(call), name="stream reader"),
            ]
            # Logs first, then the resent outbox: the control plane sees a worker's whole log
            # before it sees that worker's exit (docs/protocol.md).
            self.shipper.attach(conn.send_best_effort, ack.log_offsets)
            await self.shipper.ship_all()
            for message in self.outbox.pending():
                conn.put(message)
            self._conn = conn
            self.sessions += 1
            self.connected.set()
            down = f" after {time.monotonic() - self._down_since:.1f} s" if self._down_since else ""
            log.info(
                "connected to %s as node %s%s; resent %d message(s)",
                self.server,
                self.identity.node_name,
                down,
                len(self.outbox),
            )
            self._down_since = None
            self._cut_off_since = None
            tasks += [
                asyncio.create_task(self._telemetry_loop(conn), name="telemetry"),
                asyncio.create_task(self._log_loop(), name="log shipping"),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            err = next(iter(done)).exception()
            log.warning("stream to %s lost: %s", self.server, _describe(err))
            if time.monotonic() - started >= STABLE_SESSION_S:
                raise SessionLost(_describe(err)) from err
            raise ConnectionError(f"stream lost after {time.monotonic() - started:.1f} s: {_describe(err)}")
        finally:
            if self._down_since is None:
                self._down_since = time.monotonic()
            if self._cut_off_since is None:
                self._cut_off_since = time.monotonic()
            self._conn = None
            self.connected.clear()
            self.shipper.detach()
            if conn is not None:
                conn.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await channel.close(grace=None)

    async def _read_loop(self, call: grpc.aio.StreamStreamCall[Any, Any]) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                raise ConnectionError("the control plane closed the stream")
            assert isinstance(message, agent_pb2.ControlMessage)
            self._apply_ack(message)
            if message.HasField("register_ack"):
                self.telemetry_interval_s = (
                    message.register_ack.telemetry_interval_s or DEFAULT_TELEMETRY_INTERVAL_S
                )
            elif self.commands.is_command(message):
                result = await self.commands.handle(message)
                self.send_reliable(command_result=result)

    async def _telemetry_loop(self, conn: Connection) -> None:
        failing = False
        while True:
            try:
                devices = await asyncio.to_thread(self.backend.sample)
            except Exception:
                if not failing:  # once per failure streak, not once per interval
                    log.exception("telemetry sample failed")
                failing = True
            else:
                failing = False
                if self.metrics is not None:
                    self.metrics.observe_sample(devices)
                self._watch_telemetry(devices)
                conn.offer(
                    agent_pb2.AgentMessage(
                        telemetry=agent_pb2.Telemetry(sampled_at=timestamp(), devices=devices)
                    )
                )
            await asyncio.sleep(self.telemetry_interval_s)

    async def _log_loop(self) -> None:
        while True:
            await asyncio.sleep(self._log_interval_s)
            await self.shipper.ship_all()


def _describe(err: BaseException | None) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {err.details()}"
    if err is None:
        return "stream ended"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
