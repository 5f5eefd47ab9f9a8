"""What a job asks of the placement engine: a gang of identical workers.

Every worker of a gang gets `devices_per_worker` devices of one (vendor, model) pool on one
node, plus CPU and memory there. The gang is all-or-nothing and never mixes vendors or
models: their collective libraries (NCCL, HCCL, CNCL, ...) do not interoperate, and one slow
model would pace the whole gang. A model may also carry a vendor allocation rule (catalog
`allocation`: Kunlunxin P800 takes 1, 2, 4 or 8 cards, an Ascend 910C's dies go in pairs); a
pool whose rule refuses the worker's device count is not one the request accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from scheduler.catalog import allocation_rule, model_key

WHOLE = 1000  # milli-devices in one device


class TopologyLevel(StrEnum):
    """Domains a gang can be packed into, smallest first.

    `island`: each worker's devices share one intra-node fabric island (NVLink, HCCS, ...);
    `node`: the whole gang on one node; `rack` and `block` (a network pod / spine domain)
    come from node labels.
    """

    NONE = "none"
    ISLAND = "island"
    NODE = "node"
    RACK = "rack"
    BLOCK = "block"


@dataclass(frozen=True)
class Topology:
    level: TopologyLevel = TopologyLevel.NONE
    required: bool = False

    def describe(self) -> str:
        if self.level is TopologyLevel.NONE:
            return ""
        where = "on one node" if self.level is TopologyLevel.NODE else f"in one {self.level.value}"
        if self.level is TopologyLevel.ISLAND:
            where = "each worker in one interconnect island"
        return where if self.required else f"preferably {where}"


Pool = tuple[str, str]  # (vendor, model)


@dataclass(frozen=True)
class WorkerShape:
    """One worker's demand on the node that hosts it."""

    devices: int = 0
    device_milli: int = WHOLE  # per device; below WHOLE only for one shared device
    cpu_milli: int = 0
    memory_mib: int = 0
    island_required: bool = False

    @property
    def total_milli(self) -> int:
        return self.devices * self.device_milli

    @property
    def shared(self) -> bool:
        return self.devices == 1 and self.device_milli < WHOLE


@dataclass(frozen=True)
class PlacementRequest:
    job_id: str
    workers: int = 1
    shape: WorkerShape = field(default_factory=WorkerShape)
    vendors: tuple[str, ...] = ()  # empty: any vendor
    models: tuple[str, ...] = ()  # empty: any model
    min_memory_bytes: int = 0
    min_tflops: float = 0.0
    topology: Topology = field(default_factory=Topology)
    # Measured or declared speed of this job per model (relative units), which beats the
    # catalog's TFLOPS when choosing among allowed models.
    rates: tuple[tuple[str, float], ...] = ()
    # Exact pools allowed, on top of vendors/models: how quotas narrow a request without
    # confusing two vendors' models of the same name. Empty: no such narrowing.
    pools: tuple[Pool, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be ≥ 1 (got {self.workers})")
        s = self.shape
        if s.devices < 0 or not 0 < s.device_milli <= WHOLE:
            raise ValueError(f"bad worker shape {s}")
        if s.device_milli < WHOLE and s.devices != 1:
            raise ValueError("a fraction of a device can only be asked for one device per worker")

    @property
    def total_devices(self) -> int:
        return self.workers * self.shape.devices

    def accepts_pool(self, pool: Pool) -> bool:
        return self.names_pool(pool) and self.rule_refusal(pool) is None

    def names_pool(self, pool: Pool) -> bool:
        """Whether the request's vendors, models and pools admit `pool` (rules aside)."""
        if self.pools and pool not in self.pools:
            return False
        vendor, model = pool
        return (not self.vendors or vendor in self.vendors) and (
            not self.models or model_key(model) in {model_key(m) for m in self.models}
        )

    def rule_refusal(self, pool: Pool) -> str | None:
        """Why the vendor's allocation rule for `pool` refuses this worker's device count, in
        words for a pending reason; None when the model has no rule or the count is allowed."""
        rule = allocation_rule(*pool)
        count = self.shape.devices
        if rule is None or rule.allows(count):
            return None
        return f"{pool[1]} {rule.describe()}, not {count}"

    def describe(self) -> str:
        s = self.shape
        if s.devices == 0:
            what = f"{self.workers} CPU-only worker{'s' if self.workers > 1 else ''}"
        elif s.shared:
            what = f"{self.workers} × {s.device_milli / WHOLE:.2f} of a device"
        elif self.workers == 1:
            what = f"{s.devices} devices" if s.devices > 1 else "1 device"
        else:
            what = f"{self.total_devices} devices ({self.workers} × {s.devices})"
        constraint = []
        if self.models:
            constraint.append("/".join(self.models))
        elif self.vendors:
            constraint.append("/".join(self.vendors))
        if self.min_memory_bytes:
            constraint.append(f"≥ {self.min_memory_bytes / 2**30:.0f} GiB")
        if self.min_tflops:
            constraint.append(f"≥ {self.min_tflops:g} TFLOPS")
        where = self.topology.describe()
        text = " ".join(x for x in (what, " ".join(constraint), where) if x)
        rules = self._model_rules()
        return f"{text} ({'; '.join(rules)})" if rules else text

    def _model_rules(self) -> list[str]:
        """The allocation rules of the models the request names, e.g. 'P800 takes 1, 2, 4 or 8
        devices per worker, ...', so a waiting job says what shape it must fit."""
        if not self.models or self.shape.devices == 0:
            return []
        rules: dict[str, None] = {}
        for name in self.models:
            rule = allocation_rule("", name)
            if rule is not None:
                rules.setdefault(f"{name} {rule.describe()}")
        return list(rules)
