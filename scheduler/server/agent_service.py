"""AgentService: the one bidirectional stream each node agent holds open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from corral.v1 import agent_pb2, agent_pb2_grpc

from scheduler.server.agent_reports import AgentReports
from scheduler.server.controlplane import ControlPlane
from scheduler.server.nodes import NodeRuntime
from scheduler.server.session import AgentSession

log = logging.getLogger("corral.server.agents")


def register_problems(reg: agent_pb2.Register) -> list[str]:
    """Everything wrong with a Register message, each naming its field."""
    problems = []
    if not reg.node_name:
        problems.append("register.node_name: must not be empty (set --node-name on the agent)")
    seen: set[int] = set()
    for i, d in enumerate(reg.devices):
        where = f"register.devices[{i}]"
        if d.index in seen:
            problems.append(f"{where}.index: {d.index} is reported twice; each device needs its own index")
        seen.add(d.index)
        if not d.vendor:
            problems.append(f"{where}.vendor: must not be empty")
        if not d.model:
            problems.append(f"{where}.model: must not be empty")
        if d.power_limit_min_w > d.power_limit_max_w > 0:
            problems.append(
                f"{where}.power_limit_min_w: {d.power_limit_min_w} is above power_limit_max_w "
                f"{d.power_limit_max_w}"
            )
    return problems


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.reports = AgentReports(cp)
        self.open_streams = 0
        self._sessions: set[AgentSession] = set()

    def close_all(self) -> None:
        """End every stream from our side, so shutdown does not cancel handlers mid-write."""
        for session in list(self._sessions):
            session.close()

    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Any
    ) -> AsyncIterator[agent_pb2.ControlMessage]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        if first.WhichOneof("body") != "register":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first message on the stream must be `register` with the node's inventory",
            )
        problems = register_problems(first.register)
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        reg = first.register
        session = AgentSession(reg.node_name, reg.instance_id)
        rt = self.reports.attached(reg, session)
        self.open_streams += 1
        self._sessions.add(session)
        reader = asyncio.create_task(self._read(request_iterator, rt, session))
        try:
            while True:
                msg = await session.outbox.get()
                if msg is None:
                    break
                yield session.stamp(msg)
        finally:
            self.open_streams -= 1
            self._sessions.discard(session)
            reader.cancel()
            self.reports.detached(reg.node_name, session)

    async def _read(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], rt: NodeRuntime, session: AgentSession
    ) -> None:
        try:
            async for msg in request_iterator:
                if session.closed:
                    break
                self.reports.message(rt, msg)
        except grpc.aio.AioRpcError as exc:
            log.info("stream from %s ended: %s", session.node_name, exc.code())
        except Exception:
            log.exception("stream from %s failed", session.node_name)
        finally:
            # Ends the writer side too, so the RPC finishes and the node is marked gone.
            session.close()
