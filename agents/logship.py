"""Ships worker log files to the control plane as LogChunk messages.

The file on the node is the buffer: chunks are best-effort, and after every (re)connect
shipping resumes at the offsets the control plane says it holds (RegisterAck.log_offsets).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from corral.v1 import agent_pb2

log = logging.getLogger("corral.agent.logship")

CHUNK_BYTES = 64 * 1024

# Hands one message to the current connection; False once that connection is gone.
Send = Callable[[agent_pb2.AgentMessage], Awaitable[bool]]


class LogShipper:
    def __init__(self, paths: Callable[[], Mapping[str, Path]], chunk_bytes: int = CHUNK_BYTES) -> None:
        self._paths = paths
        self._chunk = chunk_bytes
        self._offsets: dict[str, int] = {}
        self._send: Send | None = None
        self._lock = asyncio.Lock()

    def attach(self, send: Send, offsets: Mapping[str, int]) -> None:
        """A new connection: resume every workload at the offset the control plane holds."""
        self._send = send
        self._offsets = dict(offsets)

    def detach(self) -> None:
        self._send = None

    def offset(self, workload_id: str) -> int:
        return self._offsets.get(workload_id, 0)

    def forget(self, workload_id: str) -> None:
        self._offsets.pop(workload_id, None)

    async def flush(self, workload_id: str) -> bool:
        """Ship the rest of one worker's log; True when it all went out on a connection."""
        path = self._paths().get(workload_id)
        if path is None:
            return True
        async with self._lock:
            return await self._ship(workload_id, path)

    async def ship_all(self) -> bool:
        async with self._lock:
            ok = True
            for workload_id, path in self._paths().items():
                ok = await self._ship(workload_id, path) and ok
                if self._send is None:
                    return False
            return ok

    async def _ship(self, workload_id: str, path: Path) -> bool:
        send = self._send
        if send is None:
            return False
        offset = self._offsets.get(workload_id, 0)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                while data := f.read(self._chunk):
                    chunk = agent_pb2.LogChunk(workload_id=workload_id, offset=offset, data=data)
                    if not await send(agent_pb2.AgentMessage(log=chunk)):
                        self._send = None
                        return False
                    offset += len(data)
                    self._offsets[workload_id] = offset
        except FileNotFoundError:
            return True  # never started, so nothing was written
        except OSError as e:
            log.warning("cannot read log of %s (%s): %s", workload_id, path, e)
        return True
