"""The node registry: what each node reported, whether it is connected, and operator marks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from corral.v1 import agent_pb2, common_pb2

from scheduler.model import DeviceRecord, NodeRecord
from scheduler.server.session import AgentSession
from scheduler.store import Store

_HEALTH = common_pb2.DeviceHealth


@dataclass
class NodeRuntime:
    record: NodeRecord
    session: AgentSession | None = None
    telemetry: agent_pb2.Telemetry | None = None
    last_seen: float = 0.0
    leaving: bool = False  # the agent said it is shutting down; cleared when it registers again
    devices_by_index: dict[int, DeviceRecord] = field(default_factory=dict)
    metrics_url: str = ""  # the agent's Prometheus exporter, from Register; not persisted

    @property
    def connected(self) -> bool:
        return self.session is not None

    @property
    def last_heard(self) -> float:
        """Its last message while connected; when its stream ended, once not."""
        return self.last_seen if self.session is not None else self.record.last_seen

    @property
    def schedulable(self) -> bool:
        return self.connected and not self.leaving and not self.record.cordoned and not self.record.draining

    def free_devices(self, held: set[int]) -> list[DeviceRecord]:
        """Devices a new worker could get: not UNHEALTHY and not held by a running worker."""
        return [d for d in self.record.devices if d.health != "UNHEALTHY" and d.index not in held]

    def reindex(self) -> None:
        self.devices_by_index = {d.index: d for d in self.record.devices}


def device_record_from_proto(node_name: str, d: common_pb2.Device, health: str) -> DeviceRecord:
    return DeviceRecord(
        node_name=node_name,
        index=d.index,
        vendor=d.vendor,
        model=d.model,
        uuid=d.uuid,
        memory_bytes=d.memory_bytes,
        power_limit_min_w=d.power_limit_min_w,
        power_limit_max_w=d.power_limit_max_w,
        power_limit_default_w=d.power_limit_default_w,
        power_limit_settable=d.power_limit_settable,
        bus_id=d.bus_id,
        peer_indices=list(d.peer_indices),
        interconnect=d.interconnect,
        simulated=d.simulated,
        visibility_env=d.visibility_env,
        health=health,
        board_id=d.board_id,
        source=d.source,
    )


class NodeRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._nodes: dict[str, NodeRuntime] = {}

    def load(self) -> None:
        for record in self.store.load_nodes():
            rt = NodeRuntime(record, last_seen=record.last_seen)
            rt.reindex()
            self._nodes[record.name] = rt

    def __iter__(self) -> Iterator[NodeRuntime]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, name: str) -> NodeRuntime | None:
        return self._nodes.get(name)

    def register(self, reg: agent_pb2.Register, session: AgentSession, now: float) -> NodeRuntime:
        """Record what the agent reported; operator marks and device health survive."""
        rt = self._nodes.get(reg.node_name)
        old = rt.record if rt else None
        old_health = {(d.index, d.uuid): d.health for d in old.devices} if old else {}
        record = NodeRecord(
            name=reg.node_name,
            first_seen=old.first_seen if old else now,
            last_seen=now,
            address=reg.address,
            hostname=reg.hostname,
            backend=reg.backend,
            simulated=any(d.simulated for d in reg.devices),
            agent_version=reg.agent_version,
            instance_id=reg.instance_id,
            cpu_count=reg.cpu_count,
            memory_bytes=reg.memory_bytes,
            labels=dict(reg.labels),
            cordoned=old.cordoned if old else False,
            cordon_reason=old.cordon_reason if old else "",
            draining=old.draining if old else False,
            devices=[
                device_record_from_proto(reg.node_name, d, old_health.get((d.index, d.uuid), "HEALTHY"))
                for d in reg.devices
            ],
        )
        self.store.upsert_node(record, devices_changed=old is None or old.devices != record.devices)
        if rt is None:
            rt = NodeRuntime(record)
            self._nodes[record.name] = rt
        rt.record = record
        rt.reindex()
        if rt.session is not None and rt.session is not session:
            rt.session.close()
        rt.session = session
        rt.last_seen = now
        rt.leaving = False
        rt.metrics_url = reg.metrics_url
        return rt

    def disconnect(self, name: str, session: AgentSession, now: float) -> bool:
        """Returns False when a newer stream already replaced this one."""
        rt = self._nodes.get(name)
        if rt is None or rt.session is not session:
            return False
        rt.session = None
        rt.telemetry = None
        rt.record.last_seen = now
        self.store.update_node(name, last_seen=now)
        return True

    def set_marks(self, name: str, *, cordoned: bool, draining: bool, reason: str) -> NodeRuntime:
        rt = self._nodes[name]
        rt.record.cordoned = cordoned
        rt.record.draining = draining
        rt.record.cordon_reason = reason
        self.store.update_node(name, cordoned=cordoned, draining=draining, cordon_reason=reason)
        return rt

    def set_device_health(self, name: str, index: int, health: str) -> bool:
        rt = self._nodes.get(name)
        dev = rt.devices_by_index.get(index) if rt else None
        if dev is None or dev.health == health:
            return False
        dev.health = health
        self.store.set_device_health(name, index, health)
        return True


HEALTH_NAMES = {
    "HEALTHY": _HEALTH.DEVICE_HEALTH_HEALTHY,
    "SUSPECT": _HEALTH.DEVICE_HEALTH_SUSPECT,
    "UNHEALTHY": _HEALTH.DEVICE_HEALTH_UNHEALTHY,
}
