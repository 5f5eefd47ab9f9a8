"""One connected agent stream, seen from the control plane."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from corral.v1 import agent_pb2


class AgentSession:
    """Commands queue here and a writer task drains them into the gRPC stream.

    `ack_seq` is stamped on every outgoing message at write time, so a pure ack is only
    queued when nothing else is about to carry it.
    """

    def __init__(self, node_name: str, instance_id: str) -> None:
        self.node_name = node_name
        self.instance_id = instance_id
        self.outbox: asyncio.Queue[agent_pb2.ControlMessage | None] = asyncio.Queue()
        self.acked = 0
        self._ack_pending = False
        self._seq = itertools.count(1)
        self.closed = False

    def send(self, **body: Any) -> int:
        seq = next(self._seq)
        self.outbox.put_nowait(agent_pb2.ControlMessage(seq=seq, **body))
        return seq

    def ack(self, seq: int) -> None:
        if seq > self.acked:
            self.acked = seq
        if not self._ack_pending:
            self._ack_pending = True
            self.outbox.put_nowait(agent_pb2.ControlMessage(ack=agent_pb2.Ack()))

    def stamp(self, msg: agent_pb2.ControlMessage) -> agent_pb2.ControlMessage:
        if msg.WhichOneof("body") == "ack":
            self._ack_pending = False
        msg.ack_seq = self.acked
        return msg

    def close(self) -> None:
        """Ends the writer; used when the same node connects again on a new stream."""
        self.closed = True
        self.outbox.put_nowait(None)
