"""The inputs and outputs of a placement policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.model import DeviceRecord


@dataclass(frozen=True)
class PlacementRequest:
    job_id: str
    workers: int
    devices_per_worker: int
    vendors: tuple[str, ...] = ()  # empty: any vendor
    models: tuple[str, ...] = ()  # empty: any model
    min_memory_bytes: int = 0

    def accepts(self, device: DeviceRecord) -> bool:
        return (
            (not self.vendors or device.vendor in self.vendors)
            and (not self.models or device.model in self.models)
            and device.memory_bytes >= self.min_memory_bytes
        )

    def describe(self) -> str:
        what = []
        if self.vendors:
            what.append("vendor " + "/".join(self.vendors))
        if self.models:
            what.append("model " + "/".join(self.models))
        if self.min_memory_bytes:
            what.append(f"≥ {self.min_memory_bytes / 2**30:.0f} GiB")
        constraint = f" ({', '.join(what)})" if what else ""
        return f"{self.workers} × {self.devices_per_worker} devices{constraint}"


@dataclass(frozen=True)
class NodeCapacity:
    """A schedulable node and the devices on it that are healthy and unallocated."""

    name: str
    free_devices: tuple[DeviceRecord, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class WorkerSlot:
    rank: int
    node_name: str
    device_indices: tuple[int, ...]


@dataclass(frozen=True)
class PlacementDecision:
    slots: tuple[WorkerSlot, ...] | None
    reason: str = ""  # why it could not be placed, in one line

    @property
    def placed(self) -> bool:
        return self.slots is not None
