"""What a node's registration fixes, kept per NodeRecord: its rack, its devices counted by
(vendor, model), and whether any is simulated.

Registering replaces a node's NodeRecord (scheduler/server/nodes.py), so the record's
identity says when to work these out again. Views that walk every node read them here
rather than each node's devices: at 10,000 nodes, reaching 80,000 device objects on every
refresh costs more than everything else the walk does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler.model import NodeRecord

UNASSIGNED_RACK = "unassigned"


@dataclass(frozen=True)
class Inventory:
    record: NodeRecord
    rack: str  # the node label `rack`, or UNASSIGNED_RACK
    kinds: tuple[tuple[tuple[str, str], int], ...]  # ((vendor, model), devices), most first
    simulated: bool


# node name -> its inventory, while its record is the one the registry holds
_KEPT: dict[str, Inventory] = {}


def inventory(record: NodeRecord) -> Inventory:
    known = _KEPT.get(record.name)
    if known is None or known.record is not record:
        known = _KEPT[record.name] = Inventory(
            record,
            record.labels.get("rack") or UNASSIGNED_RACK,
            tuple(Counter((d.vendor, d.model) for d in record.devices).most_common()),
            any(d.simulated for d in record.devices),
        )
    return known
