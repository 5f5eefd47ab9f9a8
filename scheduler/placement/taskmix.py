"""The expected mix of future requests, which the fragmentation-aware policy scores against.

FGD (Weng et al., USENIX ATC'23) measures a node's fragmentation *relative to the workload*:
free device share that the requests likely to come next could not use. The mix is a list of
demand shapes with weights (their popularity); the simulator takes it from the trace, the
live control plane from the requests it has seen lately.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from scheduler.catalog import model_key
from scheduler.placement.request import WHOLE, WorkerShape


@dataclass(frozen=True)
class DemandShape:
    devices: int
    device_milli: int
    cpu_milli: int
    memory_mib: int
    models: frozenset[str]  # model keys (catalog.model_key) it may run on; empty: any
    weight: float

    @property
    def shared(self) -> bool:
        return self.devices == 1 and self.device_milli < WHOLE


@dataclass(frozen=True)
class TaskMix:
    shapes: tuple[DemandShape, ...]

    @classmethod
    def from_requests(
        cls, requests: Iterable[tuple[WorkerShape, Iterable[str]]], *, top: int = 64
    ) -> TaskMix:
        """Weights are popularity among device-using requests (CPU-only ones cannot use a
        free device anywhere, so they add the same to every node and are left out). The `top`
        most popular shapes are kept: scoring cost grows with their number, and the tail
        carries little weight."""
        counts: Counter[tuple[int, int, int, int, frozenset[str]]] = Counter()
        for shape, models in requests:
            if shape.devices == 0:
                continue
            key = (
                shape.devices,
                shape.device_milli,
                shape.cpu_milli,
                shape.memory_mib,
                frozenset(model_key(m) for m in models),
            )
            counts[key] += 1
        kept = counts.most_common(top)
        total = sum(c for _, c in kept) or 1
        return cls(tuple(DemandShape(*key, weight=c / total) for key, c in kept))

    def per_device_share(self) -> TaskMix:
        """The same shapes, each weighted by its count divided by the device share it asks
        for: how many requests of that shape one free device could take. A stranded share
        costs what could have filled it, and at a full cluster what fills the last gaps is
        the many small requests, not the few big ones (measured: docs/placement.md)."""
        weights = [s.weight / (s.devices * s.device_milli) for s in self.shapes]
        total = sum(weights) or 1.0
        return TaskMix(tuple(replace(s, weight=w / total) for s, w in zip(self.shapes, weights, strict=True)))

    @classmethod
    def default(cls) -> TaskMix:
        """Before any request is seen: whole-device workers of 1, 2, 4 and 8 devices."""
        return cls.from_requests([(WorkerShape(devices=n), ()) for n in (1, 1, 1, 2, 2, 4, 8)])


def fragmentation(
    cpu_free: int,
    memory_free: int,
    devices: tuple[tuple[str, str, int, int], ...],
    mix: TaskMix,
    fill_weight: float = 0.0,
) -> float:
    """Expected free device share (in milli-devices) that a request drawn from `mix` could not use.

    `devices` is (vendor, model, island, milli_free) per device, milli_free -1 when unhealthy.
    FGD's measure, per demand shape: if the node cannot host it at all (CPU, memory, model,
    too few whole devices), every free share is stranded for it; otherwise only the shares
    on devices too small for it are.

    With `fill_weight` > 0 it is blended with a *fill* measure: the share left over if the
    node were filled with that shape until a device, CPU or memory ran out. FGD's measure
    only sees CPU once it is nearly gone; the fill measure sees a node drifting towards it
    (CPU-hungry work on a CPU-poor node), which is where FGD still strands devices.
    """
    free_total = 0
    for *_, m in devices:
        if m > 0:
            free_total += m
    if free_total == 0:
        return 0.0
    frag = 0.0
    for t in mix.shapes:
        no_room = cpu_free < t.cpu_milli or memory_free < t.memory_mib
        if no_room and not fill_weight:
            frag += t.weight * free_total
            continue
        acc_free = too_small = whole = fits = 0
        need = t.device_milli
        for _, model, _, m in devices:
            if m <= 0 or (t.models and model_key(model) not in t.models):
                continue
            acc_free += m
            if m == WHOLE:
                whole += 1
            if m < need:
                too_small += m
            elif t.shared:
                fits += m // need
        if no_room or (whole < t.devices and not t.shared) or (t.shared and acc_free == too_small):
            fgd = free_total
        else:
            fgd = free_total - acc_free + too_small
        if not fill_weight:
            frag += t.weight * fgd
            continue
        unit = need if t.shared else t.devices * WHOLE
        hosted = fits if t.shared else whole // t.devices
        if t.cpu_milli:
            hosted = min(hosted, cpu_free // t.cpu_milli)
        if t.memory_mib:
            hosted = min(hosted, memory_free // t.memory_mib)
        frag += t.weight * ((1 - fill_weight) * fgd + fill_weight * (free_total - hosted * unit))
    return frag
