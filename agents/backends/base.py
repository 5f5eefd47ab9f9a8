"""The one seam between the agent and accelerator hardware.

Every vendor (NVML, Ascend, Cambricon, ..., and the simulator) sits behind `DeviceBackend`
so the executor and the stream client never learn which one they drive. Backends convert
vendor units at their edge: watts, degrees Celsius, percent, bytes, joules.
"""

from __future__ import annotations

import abc
import os
import socket
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

import psutil
from corral.v1 import common_pb2

from agents.health_watch import Thresholds

HealthListener = Callable[[common_pb2.HealthEvent], None]


class BackendError(RuntimeError):
    """A device operation the backend could not carry out; the message is for operators."""


class PowerLimitError(ValueError):
    """A power limit was refused, so the caller can answer `ok=False` instead of crashing."""


class FaultInjectionUnsupported(BackendError):
    """Raised by real hardware: injecting faults into production devices is never allowed."""


@dataclass(frozen=True)
class NodeInfo:
    """What the agent reports about the host itself; simulated nodes pretend to be larger."""

    default_name: str
    cpu_count: int
    memory_bytes: int


def host_node_info() -> NodeInfo:
    return NodeInfo(
        default_name=socket.gethostname(),
        cpu_count=os.cpu_count() or 1,
        memory_bytes=int(psutil.virtual_memory().total),
    )


class DeviceBackend(abc.ABC):
    """Inventory, telemetry, health events and power caps of one node's accelerators.

    Health events may be produced on any thread (NVML waits on events in a daemon thread).
    They are handed to the listener the agent installs, or held until one is installed,
    so nothing observed before the stream client starts is lost.
    """

    name: str = ""
    visibility_env: str = "CUDA_VISIBLE_DEVICES"

    def __init__(self) -> None:
        self._health_lock = threading.Lock()
        self._health_pending: list[common_pb2.HealthEvent] = []
        self._health_listener: HealthListener | None = None

    @abc.abstractmethod
    def inventory(self) -> list[common_pb2.Device]: ...

    @abc.abstractmethod
    def sample(self) -> list[common_pb2.DeviceTelemetry]: ...

    @abc.abstractmethod
    def set_power_limit(self, index: int, watts: float) -> None: ...

    @abc.abstractmethod
    def get_power_limit(self, index: int) -> float: ...

    def node_info(self) -> NodeInfo:
        return host_node_info()

    def health_thresholds(self) -> dict[int, Thresholds]:
        """Per device, the temperatures the telemetry watch compares against; a device left
        out gets the defaults (no temperature rules, only throttle reasons)."""
        return {}

    def set_busy(self, indices: Collection[int]) -> None:
        """Real devices measure their own load; only the simulator needs telling."""
        return None

    def inject_fault(self, index: int, fault: str) -> None:
        raise FaultInjectionUnsupported(
            f"fault injection is only available on the simulated backend, not on {self.name!r}"
        )

    def close(self) -> None:
        """Release library handles and stop event threads; safe to call twice."""
        return None

    # -- health events -------------------------------------------------------------------

    def set_health_listener(self, listener: HealthListener | None) -> None:
        """Install the (thread-safe) consumer; events held so far are delivered at once."""
        with self._health_lock:
            self._health_listener = listener
            held, self._health_pending = self._health_pending, []
        if listener is not None:
            for event in held:
                listener(event)
        else:
            with self._health_lock:
                self._health_pending[:0] = held

    def health_events(self) -> list[common_pb2.HealthEvent]:
        """Take the events held while no listener was installed."""
        with self._health_lock:
            held, self._health_pending = self._health_pending, []
        return held

    def _emit_health(self, event: common_pb2.HealthEvent) -> None:
        with self._health_lock:
            listener = self._health_listener
            if listener is None:
                self._health_pending.append(event)
                return
        listener(event)
