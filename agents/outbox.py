"""Reliable upward messages, kept until the control plane acknowledges them.

Sequence numbers are per agent process (1, 2, 3, ...); the control plane acks the highest
seq it has stored, so everything up to it can be forgotten and the rest is resent in
order on the next connection.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from corral.v1 import agent_pb2

log = logging.getLogger("corral.agent.outbox")

DEFAULT_CAPACITY = 100_000


@dataclass
class _Entry:
    message: agent_pb2.AgentMessage
    on_ack: Callable[[], None] | None


class Outbox:
    """Bounded: past capacity the oldest message is dropped (and counted), never the newest.

    Dropping is a last resort for a control plane gone for days; the state it describes is
    still re-reported in the next register (running and unacknowledged workloads).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._entries: deque[_Entry] = deque()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_seq(self) -> int:
        return self._seq

    def add(
        self, message: agent_pb2.AgentMessage, on_ack: Callable[[], None] | None = None
    ) -> agent_pb2.AgentMessage:
        """Number the message and keep it; `on_ack` runs once the control plane stored it."""
        self._seq += 1
        message.seq = self._seq
        self._entries.append(_Entry(message, on_ack))
        if len(self._entries) > self.capacity:
            lost = self._entries.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "outbox full (%d messages): dropped the oldest, seq %d (%d dropped so far)",
                    self.capacity,
                    lost.message.seq,
                    self.dropped,
                )
        return message

    def ack(self, ack_seq: int) -> int:
        """Forget every message with seq <= ack_seq; returns how many were forgotten."""
        count = 0
        while self._entries and self._entries[0].message.seq <= ack_seq:
            entry = self._entries.popleft()
            count += 1
            if entry.on_ack is not None:
                try:
                    entry.on_ack()
                except Exception:
                    log.exception("ack callback for seq %d failed", entry.message.seq)
        return count

    def pending(self) -> list[agent_pb2.AgentMessage]:
        return [entry.message for entry in self._entries]
