"""Transport: how the agent reaches the control plane, and one live stream's send side.

The channel comes from a ChannelFactory so transport security is configuration: insecure
on loopback today, `tls_channel(grpc.ssl_channel_credentials(...))` for mTLS.

The send side has a single writer, reliable and best-effort traffic in order.
grpc.aio allows one write in flight per call, so every message goes through one queue.
Reliable messages are always queued (the outbox holds them anyway); best-effort ones are
dropped (telemetry) or wait for room (log chunks) when the control plane reads slowly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from corral.v1 import agent_pb2

HIGH_WATER = 256

ChannelFactory = Callable[[str], grpc.aio.Channel]


def insecure_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target)


def tls_channel(credentials: grpc.ChannelCredentials) -> ChannelFactory:
    """mTLS: pass `grpc.ssl_channel_credentials(root, key, cert)`."""
    return lambda target: grpc.aio.secure_channel(target, credentials)


class Connection:
    def __init__(self, call: grpc.aio.StreamStreamCall[Any, Any], high_water: int = HIGH_WATER) -> None:
        self._call = call
        self._high_water = high_water
        self._queue: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
        self._room = asyncio.Event()
        self._room.set()
        self.closed = False

    def put(self, message: agent_pb2.AgentMessage) -> None:
        self._queue.put_nowait(message)

    def offer(self, message: agent_pb2.AgentMessage) -> bool:
        """Queue a best-effort message unless the stream is backed up (a stale sample is useless)."""
        if self.closed or self._queue.qsize() >= self._high_water:
            return False
        self._queue.put_nowait(message)
        return True

    async def send_best_effort(self, message: agent_pb2.AgentMessage) -> bool:
        """Queue once there is room; False when the connection is gone."""
        while not self.closed and self._queue.qsize() >= self._high_water:
            self._room.clear()
            await self._room.wait()
        if self.closed:
            return False
        self._queue.put_nowait(message)
        return True

    async def write_loop(self) -> None:
        try:
            while True:
                message = await self._queue.get()
                await self._call.write(message)
                if self._queue.qsize() < self._high_water // 2:
                    self._room.set()
        finally:
            self.close()

    def close(self) -> None:
        self.closed = True
        self._room.set()
