"""Which devices of a node could host one worker: the feasibility rules every policy shares.

Vendor allocation rules (catalog `allocation`) narrow the choice for their models: the worker's
device count must be one the vendor allows, devices that go in index-aligned units (the two dies
of an Ascend 910C NPU) are taken a whole unit at a time, and a rule that keeps a worker within
one interconnect island (Kunlunxin P800: 1, 2 or 4 cards in one XPU Link group) makes a count
that fits in one island stay in one, and a larger count take whole islands (P800: 8 = both).
"""

from __future__ import annotations

from scheduler.catalog import AllocationRule, allocation_rule
from scheduler.placement.cluster import NodeState
from scheduler.placement.request import WHOLE, Pool, WorkerShape

Unit = tuple[int, ...]  # device indices that go to one worker together


def fits_resources(node: NodeState, shape: WorkerShape) -> bool:
    return node.cpu_free >= shape.cpu_milli and node.memory_free >= shape.memory_mib


def device_options(
    node: NodeState, pool: Pool, shape: WorkerShape, min_memory_bytes: int = 0
) -> list[tuple[int, ...]]:
    """Device sets on `node` that could host one worker of `shape`; empty when none.

    A shared (fractional) worker gets one option per distinct (island, free share) so a
    policy can choose which partly used device to fill. Whole devices are interchangeable
    except for their island, so there is one option: the island that fits most tightly
    (keeping bigger free islands for bigger workers), or, when the worker may span islands,
    the fewest islands, fullest first. A model with an allocation rule gets its one option
    from `_ruled_choice`.
    """
    if not fits_resources(node, shape):
        return []
    if shape.devices == 0:
        return [()]
    rule = allocation_rule(*pool)
    if rule is not None and not rule.allows(shape.devices):
        return []
    if shape.shared:
        seen: dict[tuple[int, int], int] = {}
        for d in node.usable(pool, min_memory_bytes):
            if d.milli_free >= shape.device_milli:
                seen.setdefault((d.island, d.milli_free), d.index)
        return [(i,) for i in seen.values()]
    if node.whole_free.get(pool, 0) < shape.devices:  # cheap, and usually decides it
        return []
    if rule is not None:
        chosen = _ruled_choice(_free_units(node, pool, rule, min_memory_bytes), node, pool, shape, rule)
        return [] if chosen is None else [chosen]
    islands: dict[int, list[int]] = {}
    for d in node.usable(pool, min_memory_bytes):
        if d.milli_free == WHOLE:
            islands.setdefault(d.island, []).append(d.index)
    fitting = [ids for ids in islands.values() if len(ids) >= shape.devices]
    if fitting:
        tightest = min(fitting, key=lambda ids: (len(ids), ids[0]))
        return [tuple(tightest[: shape.devices])]
    if shape.island_required:
        return []
    chosen_ids: list[int] = []
    for ids in sorted(islands.values(), key=lambda ids: (-len(ids), ids[0])):
        chosen_ids.extend(ids[: shape.devices - len(chosen_ids)])
        if len(chosen_ids) == shape.devices:
            return [tuple(sorted(chosen_ids))]
    return []


def worker_slots(node: NodeState, pool: Pool, shape: WorkerShape, min_memory_bytes: int = 0) -> int:
    """How many whole-device workers of `shape` the node could take at once (islands ignored,
    except for models with an allocation rule: there the rule decides, islands included)."""
    by_cpu = node.cpu_free // shape.cpu_milli if shape.cpu_milli else 1 << 30
    by_mem = node.memory_free // shape.memory_mib if shape.memory_mib else 1 << 30
    if shape.devices == 0:
        return min(by_cpu, by_mem, 1 << 20)
    rule = allocation_rule(*pool)
    if rule is not None and not rule.allows(shape.devices):
        return 0
    if rule is not None and not shape.shared:
        return min(_ruled_slots(node, pool, shape, rule, min_memory_bytes), by_cpu, by_mem)
    if min_memory_bytes:
        whole = sum(1 for d in node.usable(pool, min_memory_bytes) if d.milli_free == WHOLE)
    else:
        whole = node.whole_free.get(pool, 0)
    return min(whole // shape.devices, by_cpu, by_mem)


def largest_block(node: NodeState, pool: Pool, shape: WorkerShape, min_memory_bytes: int = 0) -> int:
    """The most whole devices one worker could get on `node` now: the free count, or, for a
    model with an allocation rule, the largest count the rule allows that the node can give."""
    free = node.whole_free.get(pool, 0)
    rule = allocation_rule(*pool)
    if rule is None or free == 0:
        return free
    units = _free_units(node, pool, rule, min_memory_bytes)
    for count in range(free, 0, -1):
        if rule.allows(count):
            trial = WorkerShape(count, WHOLE, island_required=shape.island_required)
            if _ruled_choice(units, node, pool, trial, rule) is not None:
                return count
    return 0


# --- models with an allocation rule ----------------------------------------------------------


def _free_units(
    node: NodeState, pool: Pool, rule: AllocationRule, min_memory_bytes: int
) -> dict[int, list[Unit]]:
    """Free whole units of `pool` per island, in index order: single devices, or the
    index-aligned groups of `rule.unit` whose every member is usable and wholly free."""
    size = rule.unit
    groups: dict[int, list[int]] = {}
    island_of: dict[int, int] = {}
    for d in node.usable(pool, min_memory_bytes):
        if d.milli_free == WHOLE:
            groups.setdefault(d.index // size, []).append(d.index)
            island_of[d.index] = d.island
    by_island: dict[int, list[Unit]] = {}
    for ids in groups.values():
        islands = {island_of[i] for i in ids}
        # A unit split over two islands (a report at odds with the rule) is never handed out.
        if len(ids) == size and len(islands) == 1:
            by_island.setdefault(islands.pop(), []).append(tuple(ids))
    return by_island


def _island_sizes(node: NodeState, pool: Pool) -> dict[int, int]:
    """Devices of `pool` per island on `node`, busy or not: what the fabric is, not what is free."""
    sizes: dict[int, int] = {}
    for d in node.devices:
        if d.pool == pool:
            sizes[d.island] = sizes.get(d.island, 0) + 1
    return sizes


def _ruled_choice(
    free: dict[int, list[Unit]], node: NodeState, pool: Pool, shape: WorkerShape, rule: AllocationRule
) -> tuple[int, ...] | None:
    """The devices a worker of `shape` gets under `rule`, or None.

    Like the unruled choice: the tightest island that holds the worker; else, where the worker
    may span islands, the fewest islands, fullest first. A rule that keeps workers within an
    island allows spanning only for a count larger than any island on the node, and then only
    over whole, wholly free islands (how a P800 gives 8 cards: both 4-card groups).
    """
    need = shape.devices // rule.unit
    fitting = [units for units in free.values() if len(units) >= need]
    if fitting:
        tightest = min(fitting, key=lambda units: (len(units), units[0]))
        return _flatten(tightest[:need])
    sizes = _island_sizes(node, pool)
    if shape.island_required or (rule.within_island and shape.devices <= max(sizes.values(), default=0)):
        return None
    if rule.within_island:
        whole = [units for island, units in free.items() if len(units) * rule.unit == sizes[island]]
        candidates = sorted(whole, key=lambda units: (-len(units), units[0]))
    else:
        candidates = sorted(free.values(), key=lambda units: (-len(units), units[0]))
    chosen: list[Unit] = []
    for units in candidates:
        if rule.within_island and len(chosen) + len(units) > need:
            continue  # whole islands only: one that would overshoot is skipped, not cut
        chosen.extend(units[: need - len(chosen)])
        if len(chosen) == need:
            return _flatten(chosen)
    return None


def _ruled_slots(
    node: NodeState, pool: Pool, shape: WorkerShape, rule: AllocationRule, min_memory_bytes: int
) -> int:
    """How many workers of `shape` the node could take one after another under `rule`."""
    free = _free_units(node, pool, rule, min_memory_bytes)
    slots = 0
    while (chosen := _ruled_choice(free, node, pool, shape, rule)) is not None:
        slots += 1
        taken = set(chosen)
        free = {island: [u for u in units if u[0] not in taken] for island, units in free.items()}
        free = {island: units for island, units in free.items() if units}
    return slots


def _flatten(units: list[Unit]) -> tuple[int, ...]:
    return tuple(sorted(i for unit in units for i in unit))
