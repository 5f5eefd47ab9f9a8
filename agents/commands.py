"""Carries out the control plane's commands and words the CommandResult for each.

Commands are idempotent here (see docs/protocol.md): a repeated start changes nothing, a
stop of something not running is fine. A command never raises into the stream: whatever
goes wrong becomes `ok=False` with a message an operator can act on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from corral.v1 import agent_pb2, common_pb2

from agents.backends.base import BackendError, DeviceBackend, PowerLimitError
from agents.executor import Executor
from agents.power_guard import PowerLimits

log = logging.getLogger("corral.agent.commands")

Outcome = tuple[bool, str]


class CommandHandler:
    def __init__(self, executor: Executor, backend: DeviceBackend, power: PowerLimits | None = None) -> None:
        self.executor = executor
        self.backend = backend
        # None: limits go straight to the backend and are not kept across restarts.
        self.power = power
        self._handlers: dict[str, Callable[[agent_pb2.ControlMessage], Awaitable[Outcome]]] = {
            "start": self._start,
            "stop": self._stop,
            "checkpoint": self._checkpoint,
            "set_power_limit": self._set_power_limit,
            "drain": self._drain,
            "inject_fault": self._inject_fault,
        }

    def is_command(self, message: agent_pb2.ControlMessage) -> bool:
        return message.WhichOneof("body") in self._handlers

    async def handle(self, message: agent_pb2.ControlMessage) -> agent_pb2.CommandResult:
        kind = message.WhichOneof("body") or ""
        try:
            ok, text = await self._handlers[kind](message)
        except Exception as e:
            log.exception("command %s (seq %d) failed", kind, message.seq)
            ok, text = False, f"{kind} failed: {type(e).__name__}: {e}"
        return agent_pb2.CommandResult(command_seq=message.seq, ok=ok, message=text)

    async def _start(self, message: agent_pb2.ControlMessage) -> Outcome:
        spec = message.start
        known = self.executor.status(spec.workload_id)
        if known is not None:
            phase = common_pb2.WorkloadPhase.Name(known.phase)
            return True, f"workload {spec.workload_id} already known ({phase}); unchanged"
        status = await self.executor.start(spec)
        if status.phase == common_pb2.WORKLOAD_PHASE_FAILED_TO_START:
            return False, status.message
        if status.phase == common_pb2.WORKLOAD_PHASE_EXITED:
            return True, f"workload {spec.workload_id} {status.message}"
        return True, f"started workload {spec.workload_id} (pid {status.pid})"

    async def _stop(self, message: agent_pb2.ControlMessage) -> Outcome:
        stop = message.stop
        if self.executor.stop(stop.workload_id, stop.grace_period_s, stop.reason):
            return True, f"stopping workload {stop.workload_id}"
        return True, f"workload {stop.workload_id} is not running here; nothing to stop"

    async def _checkpoint(self, message: agent_pb2.ControlMessage) -> Outcome:
        req = message.checkpoint
        return self.executor.request_checkpoint(req.workload_id, reason=req.reason, request_id=req.request_id)

    async def _set_power_limit(self, message: agent_pb2.ControlMessage) -> Outcome:
        req = message.set_power_limit
        try:
            apply = self.power.apply if self.power is not None else self.backend.set_power_limit
            await asyncio.to_thread(apply, req.device_index, req.limit_w)
        except (PowerLimitError, BackendError) as e:
            return False, str(e)
        return True, f"device {req.device_index} power limit set to {req.limit_w:g} W"

    async def _drain(self, message: agent_pb2.ControlMessage) -> Outcome:
        if message.drain.lift:
            self.executor.draining = None
            log.info("drain lifted: accepting new workloads")
            return True, "drain lifted"
        reason = message.drain.reason or "drain requested"
        self.executor.draining = reason
        running = len(self.executor.running_ids())
        log.info("draining (%s): no new workloads; %d still running", reason, running)
        return True, f"draining ({reason}); {running} workload(s) still running"

    async def _inject_fault(self, message: agent_pb2.ControlMessage) -> Outcome:
        req = message.inject_fault
        try:
            self.backend.inject_fault(req.device_index, req.fault)
        except (ValueError, BackendError) as e:
            return False, str(e)
        return True, f"injected {req.fault} on device {req.device_index}"
