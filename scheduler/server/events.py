"""Fan-out of event-log rows to live watchers (JobService.Watch)."""

from __future__ import annotations

import asyncio
from typing import Any

Event = dict[str, Any]


class EventBus:
    def __init__(self, max_backlog: int = 10_000) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._max_backlog = max_backlog

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._max_backlog)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: Event) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A watcher that cannot keep up is cut off rather than slowing the control
                # plane; it can reconnect with after_event_id and miss nothing.
                self._subscribers.discard(queue)
