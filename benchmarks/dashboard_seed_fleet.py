"""The fleet part of benchmarks/dashboard_seed.py: nodes, devices, their health, and the health
reports and interruption causes the rest of the seeder draws from.

Racks hold one device model each, 16 nodes of 8 devices, 25 racks to a block, in a repeating
pattern of 25 racks: 20 of H100-SXM5-80GB, 3 of Ascend-910B, 2 of MLU370-X8 (figures from the
simulated profiles in agents/profiles/). Names say model and rack: h100-r012-07. Every node is
marked simulated: no agent runs behind any of them. Health reports and failure signals are
classified by the same table and functions the control plane uses (scheduler/reliability).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from corral.v1 import common_pb2

from scheduler.reliability.health_state import Health, HealthRecord, HistoryEntry
from scheduler.reliability.signals import Signal, classify, from_health_event
from scheduler.server.faults.health import NODE_INDEX, cause_of

DEVICES_PER_NODE = 8
NODES_PER_RACK = 16
RACKS_PER_BLOCK = 25
DAY_S = 86_400.0
HOUR_S = 3_600.0
AGENT_VERSION = "0.1.0"


@dataclass(frozen=True)
class DeviceModel:
    prefix: str
    vendor: str
    model: str
    memory_gib: int
    power_w: tuple[float, float, float]  # min, max, default limit
    settable: bool
    interconnect: str
    islands: tuple[tuple[int, ...], ...]
    visibility_env: str
    cpu_count: int
    node_memory_gib: int
    uuid_prefix: str


H100 = DeviceModel(
    "h100", "nvidia", "H100-SXM5-80GB", 80, (200, 700, 700), True, "nvlink",
    ((0, 1, 2, 3, 4, 5, 6, 7),), "CUDA_VISIBLE_DEVICES", 224, 2048, "GPU",
)  # fmt: skip
ASCEND = DeviceModel(
    "a910b", "ascend", "Ascend-910B", 64, (310, 310, 310), False, "hccs",
    ((0, 1, 2, 3), (4, 5, 6, 7)), "ASCEND_RT_VISIBLE_DEVICES", 192, 1024, "NPU",
)  # fmt: skip
MLU = DeviceModel(
    "mlu370", "cambricon", "MLU370-X8", 48, (150, 250, 250), True, "mlu-link",
    ((0, 1, 2, 3), (4, 5, 6, 7)), "MLU_VISIBLE_DEVICES", 64, 512, "MLU",
)  # fmt: skip
# One model per rack, in this repeating pattern of 25 racks: 80% H100, 12% Ascend, 8% MLU.
RACK_MODELS = (H100,) * 20 + (ASCEND,) * 3 + (MLU,) * 2


@dataclass
class NodePlan:
    name: str
    rack: int
    model: DeviceModel
    address: str
    health: Health = Health.HEALTHY
    history: list[HistoryEntry] = field(default_factory=list)
    cordon_reason: str = ""
    draining: bool = False
    device_health: dict[int, tuple[Health, list[HistoryEntry]]] = field(default_factory=dict)

    @property
    def placeable(self) -> bool:
        return self.health is Health.HEALTHY and not self.cordon_reason and not self.device_health


def plan_fleet(count: int, days: float, rng: random.Random, now: float) -> list[NodePlan]:
    nodes = []
    for i in range(count):
        rack, slot = divmod(i, NODES_PER_RACK)
        model = RACK_MODELS[rack % len(RACK_MODELS)]
        name = f"{model.prefix}-r{rack:03d}-{slot:02d}"
        nodes.append(NodePlan(name, rack, model, f"10.{rack // 250}.{rack % 250}.{slot + 10}:7071"))
    start = now - days * DAY_S
    for plan in rng.sample(nodes, max(1, count // 500)):  # 0.2%: lemons
        t = rng.uniform(start, now - HOUR_S)
        plan.history = [
            HistoryEntry(t, Health.HEALTHY, Health.UNHEALTHY, "XID 79: GPU has fallen off the bus"),
            HistoryEntry(t + 2 * HOUR_S, Health.UNHEALTHY, Health.HEALTHY, "operator (reseated)"),
            HistoryEntry(
                t + 3 * HOUR_S,
                Health.HEALTHY,
                Health.QUARANTINED,
                "lemon node: 3 hardware failures across 3 jobs in 7 days",
            ),
        ]
        plan.health = Health.QUARANTINED
        plan.cordon_reason = f"auto-cordoned: node QUARANTINED: {plan.history[-1].reason}"
    for plan in rng.sample(nodes, max(1, count // 200)):  # 0.5%: unhealthy nodes
        if plan.health is not Health.HEALTHY:
            continue
        reason = rng.choice(("XID 79: GPU has fallen off the bus", "heartbeat_lost", "XID 74: NVLink error"))
        plan.history = [HistoryEntry(rng.uniform(start, now - 60), Health.HEALTHY, Health.UNHEALTHY, reason)]
        plan.health = Health.UNHEALTHY
        plan.cordon_reason = f"auto-cordoned: node UNHEALTHY: {reason}"
    for plan in rng.sample(nodes, max(1, count // 300)):  # operators' own cordons and drains
        if not plan.cordon_reason:
            plan.cordon_reason = rng.choice(("firmware update", "NVLink cable swap", "rack PDU work"))
            plan.draining = rng.random() < 0.3
    devices = count * DEVICES_PER_NODE
    for state, share, reasons in (
        (Health.SUSPECT, 0.015, ("ecc_correctable_rate", "thermal_slowdown", "row_remap_pending")),
        (Health.UNHEALTHY, 0.004, ("ecc_uncorrected 1", "XID 48: Double Bit ECC Error", "row_remap_failed")),
    ):
        for k in rng.sample(range(devices), max(1, int(devices * share))):
            plan = nodes[k // DEVICES_PER_NODE]
            t = rng.uniform(start, now - 60)
            entry = HistoryEntry(t, Health.HEALTHY, state, rng.choice(reasons))
            plan.device_health[k % DEVICES_PER_NODE] = (state, [entry])
    return nodes


def node_rows(nodes: list[NodePlan], rng: random.Random, now: float, days: float) -> list[dict[str, Any]]:
    return [
        {
            "name": n.name,
            "address": n.address,
            "hostname": n.name,
            "backend": "simulated",
            "simulated": True,
            "agent_version": AGENT_VERSION,
            "instance_id": uuid.UUID(int=rng.getrandbits(128)).hex[:16],
            "cpu_count": n.model.cpu_count,
            "memory_bytes": n.model.node_memory_gib * 2**30,
            "labels": {"rack": f"r{n.rack:03d}", "block": f"b{n.rack // RACKS_PER_BLOCK:02d}"},
            "cordoned": bool(n.cordon_reason),
            "cordon_reason": n.cordon_reason,
            "draining": n.draining,
            "first_seen": now - days * DAY_S - rng.uniform(0, 90 * DAY_S),
            "last_seen": now - rng.uniform(0, 5),
        }
        for n in nodes
    ]


def device_rows(nodes: list[NodePlan], rng: random.Random) -> Iterator[dict[str, Any]]:
    for n in nodes:
        m = n.model
        for i in range(DEVICES_PER_NODE):
            state = n.device_health.get(i, (Health.HEALTHY, []))[0]
            if n.health is not Health.HEALTHY:
                state = n.health
            island = next(isl for isl in m.islands if i in isl)
            yield {
                "node_name": n.name,
                "idx": i,
                "vendor": m.vendor,
                "model": m.model,
                "uuid": f"{m.uuid_prefix}-{uuid.UUID(int=rng.getrandbits(128))}",
                "memory_bytes": m.memory_gib * 2**30,
                "power_limit_min_w": m.power_w[0],
                "power_limit_max_w": m.power_w[1],
                "power_limit_default_w": m.power_w[2],
                "power_limit_settable": m.settable,
                "bus_id": f"0000:{0x18 + 0x10 * i:02x}:00.0",
                "peer_indices": [p for p in island if p != i],
                "interconnect": m.interconnect,
                "simulated": True,
                "visibility_env": m.visibility_env,
                # What the registry shows: a quarantined device reads UNHEALTHY (faults/health.py).
                "health": Health.UNHEALTHY.value if state is Health.QUARANTINED else state.value,
            }


def health_rows(nodes: list[NodePlan]) -> Iterator[dict[str, Any]]:
    for n in nodes:
        if n.history:
            record = HealthRecord(n.health, tuple(n.history))
            yield {
                "node_name": n.name,
                "idx": NODE_INDEX,
                "state": n.health.value,
                "record": record.to_dict(),
            }
        for index, (state, history) in sorted(n.device_health.items()):
            record = HealthRecord(state, tuple(history))
            yield {"node_name": n.name, "idx": index, "state": state.value, "record": record.to_dict()}


@dataclass(frozen=True)
class HealthReport:
    """One kind of health event an agent sends, classified once the way the server does."""

    event: common_pb2.HealthEvent
    cause: str
    signal: Signal

    def data(self, device: int) -> dict[str, Any]:
        s = self.signal
        return {
            "device": device,
            "cause": self.cause,
            "blame": s.blame.value,
            "severity": s.severity.value,
            "component": s.component.value,
            "early_warning": s.early_warning,
            "action": s.action,
        }


def _report(
    kind: common_pb2.HealthEventKind.ValueType,
    code: int,
    severity: common_pb2.Severity.ValueType,
    message: str,
) -> HealthReport:
    event = common_pb2.HealthEvent(kind=kind, code=code, severity=severity, message=message)
    return HealthReport(event, cause_of(event), classify(from_health_event(event)))


_K = common_pb2  # short, for the tables below
# Background reports, weighted: mostly corrected ECC and thermal slowdowns, some XIDs.
NVIDIA_REPORTS = (
    (30, _report(_K.HEALTH_EVENT_KIND_ECC_SBE, 0, _K.SEVERITY_INFO, "corrected ECC error")),
    (8, _report(_K.HEALTH_EVENT_KIND_ECC_SBE, 0, _K.SEVERITY_WARNING, "corrected ECC rate 14/h")),
    (20, _report(_K.HEALTH_EVENT_KIND_THERMAL, 0, _K.SEVERITY_WARNING, "slowdown at 88 C")),
    (10, _report(_K.HEALTH_EVENT_KIND_XID, 13, _K.SEVERITY_WARNING, "Graphics Engine Exception")),
    (8, _report(_K.HEALTH_EVENT_KIND_XID, 31, _K.SEVERITY_WARNING, "MMU fault")),
    (4, _report(_K.HEALTH_EVENT_KIND_XID, 43, _K.SEVERITY_WARNING, "reset channel verification error")),
    (4, _report(_K.HEALTH_EVENT_KIND_XID, 63, _K.SEVERITY_WARNING, "row remapping event")),
    (3, _report(_K.HEALTH_EVENT_KIND_XID, 92, _K.SEVERITY_WARNING, "high single-bit ECC error rate")),
    (2, _report(_K.HEALTH_EVENT_KIND_ROW_REMAP_PENDING, 0, _K.SEVERITY_WARNING, "row remap pending")),
    (2, _report(_K.HEALTH_EVENT_KIND_XID, 74, _K.SEVERITY_WARNING, "NVLink error")),
    (1, _report(_K.HEALTH_EVENT_KIND_XID, 119, _K.SEVERITY_CRITICAL, "GSP RPC timeout")),
)
OTHER_REPORTS = (
    (40, _report(_K.HEALTH_EVENT_KIND_ECC_SBE, 0, _K.SEVERITY_INFO, "corrected ECC error")),
    (25, _report(_K.HEALTH_EVENT_KIND_THERMAL, 0, _K.SEVERITY_WARNING, "slowdown at 86 C")),
    (10, _report(_K.HEALTH_EVENT_KIND_VENDOR, 1001, _K.SEVERITY_WARNING, "vendor error code 1001")),
    (3, _report(_K.HEALTH_EVENT_KIND_ECC_SBE, 0, _K.SEVERITY_WARNING, "corrected ECC rate 12/h")),
)
# Interruption causes, weighted after Llama 3 Table 5 (GPU 30%, HBM 17%, software 12%, network
# 8%, host 5%…) with the jobs' own errors added. Each: (weight, the health report that detects
# it, or how it shows otherwise: "exit" / "signal" of a worker, a "hang", a lost "heartbeat").
XID79 = _report(_K.HEALTH_EVENT_KIND_XID, 79, _K.SEVERITY_CRITICAL, "GPU has fallen off the bus")
XID48 = _report(_K.HEALTH_EVENT_KIND_XID, 48, _K.SEVERITY_CRITICAL, "Double Bit ECC Error")
XID94 = _report(_K.HEALTH_EVENT_KIND_XID, 94, _K.SEVERITY_CRITICAL, "contained ECC error")
XID95 = _report(_K.HEALTH_EVENT_KIND_XID, 95, _K.SEVERITY_CRITICAL, "uncontained ECC error")
DBE = _report(_K.HEALTH_EVENT_KIND_ECC_DBE, 1, _K.SEVERITY_CRITICAL, "uncorrected ECC error")
LOST = _report(_K.HEALTH_EVENT_KIND_DEVICE_LOST, 0, _K.SEVERITY_CRITICAL, "device lost")
FAILURE_CAUSES: tuple[tuple[int, HealthReport | str], ...] = (
    (14, XID79),
    (8, XID48),
    (6, XID94),
    (4, XID95),
    (8, DBE),
    (4, LOST),
    (12, "exit"),
    (6, "signal"),
    (8, "hang"),
    (6, "heartbeat"),
)


def weighted(rng: random.Random, items: tuple[tuple[int, Any], ...]) -> Any:
    return rng.choices([v for _, v in items], weights=[w for w, _ in items])[0]
