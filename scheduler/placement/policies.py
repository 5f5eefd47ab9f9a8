"""Placement policies: how to rank the nodes (and devices) that could host one worker.

All share one interface, so the live control plane, the simulator and the benchmarks can
run any of them. A policy scores a candidate — a node, the devices on it, the worker's shape
— lower being better. A policy whose score depends only on the node's state (not on its
name or position) says so with `state_only`, and the engine then scores each group of
identical nodes once.
"""

from __future__ import annotations

from typing import Protocol

from scheduler.placement.cluster import NodeState
from scheduler.placement.request import WorkerShape
from scheduler.placement.taskmix import TaskMix, fragmentation

Score = tuple[float, ...]
_DeviceTuple = tuple[tuple[str, str, int, int], ...]


class Policy(Protocol):
    name: str
    state_only: bool

    def score(self, node: NodeState, devices: tuple[int, ...], shape: WorkerShape) -> Score: ...


def _after(node: NodeState, devices: tuple[int, ...], shape: WorkerShape) -> _DeviceTuple:
    taken = set(devices)
    return tuple(
        sorted(
            (
                d.pool[0],
                d.pool[1],
                d.island,
                (d.milli_free - shape.device_milli if d.index in taken else d.milli_free)
                if d.healthy
                else -1,
            )
            for d in node.devices
        )
    )


def _remaining_share(node: NodeState, devices: tuple[int, ...], shape: WorkerShape) -> float:
    """What is left of the node after placing, as a sum of shares of CPU, memory and devices."""
    total_dev = sum(1000 for d in node.devices if d.healthy) or 1
    left_dev = node.free_milli() - shape.device_milli * len(devices)
    return (
        (node.cpu_free - shape.cpu_milli) / node.cpu_milli
        + (node.memory_free - shape.memory_mib) / node.memory_mib
        + left_dev / total_dev
    )


class FirstFit:
    """The first node, in the order nodes joined, that fits."""

    name = "first-fit"
    state_only = False

    def score(self, node: NodeState, devices: tuple[int, ...], shape: WorkerShape) -> Score:
        return (float(node.id),)


class BestFit:
    """The node left with the least spare CPU, memory and devices (each as a share of the node)."""

    name = "best-fit"
    state_only = True

    def score(self, node: NodeState, devices: tuple[int, ...], shape: WorkerShape) -> Score:
        return (_remaining_share(node, devices, shape),)


class Fragmentation:
    """Fragmentation gradient descent (the idea of FGD, USENIX ATC'23): place where the
    node's fragmentation, measured against the expected request mix, grows least."""

    name = "fgd"
    state_only = True
    fill_weight = 0.0

    def __init__(self, mix: TaskMix | None = None) -> None:
        self.mix = mix or TaskMix.default()
        self._frag: dict[tuple[int, int, _DeviceTuple], float] = {}

    def frag(self, cpu_free: int, memory_free: int, devices: _DeviceTuple) -> float:
        key = (cpu_free, memory_free, devices)
        value = self._frag.get(key)
        if value is None:
            if len(self._frag) > 1_000_000:
                self._frag.clear()
            value = self._frag[key] = fragmentation(
                cpu_free, memory_free, devices, self.mix, self.fill_weight
            )
        return value

    def growth(self, node: NodeState, devices: tuple[int, ...], shape: WorkerShape) -> float:
        before = self.frag(node.cpu_free, node.memory_free, node.signature[4])
        after = self.frag(
            node.cpu_free - shape.cpu_milli, node.memory_free - shape.memory_mib, _after(node, devices, shape)
        )
        return after - before

    def score(self, node: NodeState, devices: tuple[int, ...], shape: WorkerShape) -> Score:
        return (self.growth(node, devices, shape),)


class Corral(Fragmentation):
    """Corral's default: FGD's gradient with three changes, each measured on Alibaba's openb
    trace (benchmarks/openb.py; docs/placement.md): ties — common, since most placements
    change fragmentation by the same amount — go to the tightest node (best fit) rather than
    an arbitrary one; each shape of the mix is weighted by its count per device share it asks
    for rather than by count alone; and the measure is blended (10%) with the share left over
    when the node is filled with each shape, which sees CPU- or memory-bound nodes coming."""

    name = "corral"
    fill_weight = 0.1

    def __init__(self, mix: TaskMix | None = None) -> None:
        super().__init__((mix or TaskMix.default()).per_device_share())

    def score(self, node: NodeState, devices: tuple[int, ...], shape: WorkerShape) -> Score:
        # Rounded so that float noise in the gradient does not hide a tie from the best fit.
        return (round(self.growth(node, devices, shape), 6), _remaining_share(node, devices, shape))


POLICIES = ("corral", "fgd", "best-fit", "first-fit")
DEFAULT_POLICY = "corral"


def make_policy(name: str, mix: TaskMix | None = None) -> Policy:
    if name == "first-fit":
        return FirstFit()
    if name == "best-fit":
        return BestFit()
    if name == "fgd":
        return Fragmentation(mix)
    if name == "corral":
        return Corral(mix)
    raise ValueError(f"unknown placement policy {name!r}; choose one of {', '.join(POLICIES)}")
