"""Fixtures for the node-agent tests: a tiny real AgentService on loopback.

The fake control plane speaks the stream protocol for real (grpc.aio, 127.0.0.1, port 0),
stores what it receives, acks reliable messages (unless told not to), keeps worker logs by
offset, and can push commands down the open stream.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from corral.v1 import agent_pb2, agent_pb2_grpc

from agents.executor import Executor


class FakeControlPlane(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, *, auto_ack: bool = True, telemetry_interval_s: float = 0.1) -> None:
        self.auto_ack = auto_ack
        self.telemetry_interval_s = telemetry_interval_s
        self.registers: list[agent_pb2.Register] = []
        self.received: list[agent_pb2.AgentMessage] = []  # everything after register, in order
        self.logs: dict[str, bytearray] = {}
        self.log_gaps: list[str] = []
        self.stored_seq = 0
        self._out: asyncio.Queue[agent_pb2.ControlMessage] | None = None
        self._command_seq = 0

    # -- what tests look at ----------------------------------------------------------------

    def reliable(self, body: str | None = None) -> list[agent_pb2.AgentMessage]:
        return [m for m in self.received if m.seq and (body is None or m.WhichOneof("body") == body)]

    def of(self, body: str) -> list[Any]:
        return [getattr(m, body) for m in self.received if m.WhichOneof("body") == body]

    def results(self) -> dict[int, agent_pb2.CommandResult]:
        return {r.command_seq: r for r in self.of("command_result")}

    async def command(self, **body: Any) -> int:
        """Push one command down the open stream; returns its seq."""
        assert self._out is not None, "no agent connected"
        self._command_seq += 1
        await self._out.put(agent_pb2.ControlMessage(seq=self._command_seq, **body))
        return self._command_seq

    # -- the service -------------------------------------------------------------------------

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:  # type: ignore[override]
        first = await context.read()
        if first is grpc.aio.EOF or not first.HasField("register") or not first.register.node_name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "register.node_name: required")
        # The command queue exists before the register is visible: a test that sees the
        # register may push a command at once (it is written after the ack).
        out: asyncio.Queue[agent_pb2.ControlMessage] = asyncio.Queue()
        self._out = out
        self.registers.append(first.register)
        offsets = {wid: len(data) for wid, data in self.logs.items()}
        await context.write(
            agent_pb2.ControlMessage(
                ack_seq=self.stored_seq,
                register_ack=agent_pb2.RegisterAck(
                    node_name=first.register.node_name,
                    telemetry_interval_s=self.telemetry_interval_s,
                    log_offsets=offsets,
                ),
            )
        )

        async def writer() -> None:
            while True:
                await context.write(await out.get())

        write_task = asyncio.create_task(writer())
        try:
            while True:
                message = await context.read()
                if message is grpc.aio.EOF:
                    return
                self._store(message)
                if message.seq and self.auto_ack:
                    self.stored_seq = max(self.stored_seq, message.seq)
                    await out.put(agent_pb2.ControlMessage(ack_seq=self.stored_seq, ack=agent_pb2.Ack()))
        finally:
            write_task.cancel()
            if self._out is out:
                self._out = None

    def _store(self, message: agent_pb2.AgentMessage) -> None:
        self.received.append(message)
        if message.HasField("log"):
            chunk = message.log
            held = self.logs.setdefault(chunk.workload_id, bytearray())
            if chunk.offset > len(held):
                self.log_gaps.append(f"{chunk.workload_id}: chunk at {chunk.offset}, held {len(held)}")
            else:
                held[chunk.offset :] = chunk.data


class ServerHandle:
    """A grpc.aio server that can be stopped and started again on the same port."""

    def __init__(self, servicer: FakeControlPlane) -> None:
        self.servicer = servicer
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


@pytest.fixture
async def control_plane() -> AsyncIterator[ServerHandle]:
    handle = ServerHandle(FakeControlPlane())
    await handle.start()
    yield handle
    await handle.stop()


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll until `predicate()` is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return eventually


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def py() -> Callable[[str], list[str]]:
    return python_command


@pytest.fixture
async def executor(tmp_path: Path) -> AsyncIterator[Executor]:
    ex = Executor(tmp_path / "data", "CUDA_VISIBLE_DEVICES", device_count=8)
    yield ex
    ex.kill_all()
    for wid in ex.running_ids():
        await ex.wait(wid)
