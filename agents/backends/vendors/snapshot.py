"""The normalised snapshot every vendor reader produces, whichever way it read the devices.

A reader (a vendor library through ctypes, or the vendor tool as a subprocess) converts units
at its own edge: watts, degrees Celsius, percent, bytes. Anything the tool or library did not
show is None, never a guess. `VendorBackend` turns snapshots into the agent's protobuf messages;
`corral agent inventory` prints them as JSON.

The rules every vendor module applies the same way live here too, so the vendors cannot drift
apart: a board's power reported once (`share_board_power`), islands from observed links
(`link_islands`), the power-limit range check (`check_power_range`) and what a refused text
looked like (`first_line`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agents.backends.base import PowerLimitError

MIB = 1024**2


class SnapshotError(ValueError):
    """Tool output or a library answer that cannot be read; the message says what was wrong."""


class NotASummaryTable(SnapshotError):
    """The text is not the summary table of the vendor tool it was given as (exit code 2)."""


def first_line(text: str, limit: int = 80, empty: str = "no text at all") -> str:
    """What a refused text looked like, for a NotASummaryTable message: `first line '...'`
    (cut at `limit` characters), or `empty` where the text has no non-blank line."""
    seen = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"first line {seen[:limit]!r}" if seen else empty


@dataclass(frozen=True)
class VendorFault:
    """One error the vendor reported for a device, in the vendor's own terms.

    `code` is the number the vendor's fault table (faults/<vendor>.yaml) is keyed by: an Ascend
    error code such as 0x80E01801, a Cambricon XID, one bit of Iluvatar's health mask, a
    Kunlunxin device state. `text` is what the tool or library said, for the operator.
    """

    code: int
    text: str = ""


@dataclass(frozen=True)
class ChipReading:
    """One schedulable chip. `index` is its id in the runtime's visibility variable (the logic
    id on Ascend), so `index` is what a worker's environment lists."""

    vendor: str
    model: str
    index: int
    uuid: str = ""  # UUID where the vendor has one, else the serial number
    bus_id: str = ""
    # Chips of one board share a board_id ("" for a board of one chip). A board's power is
    # reported once, on one of its chips; the others carry power_w None.
    board_id: str = ""
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    power_limit_min_w: float | None = None
    power_limit_max_w: float | None = None
    power_limit_default_w: float | None = None
    power_limit_settable: bool = False
    temperature_c: float | None = None
    utilization_pct: float | None = None
    healthy: bool = True
    faults: tuple[VendorFault, ...] = ()
    ecc_corrected_total: int | None = None
    ecc_uncorrected_total: int | None = None
    lost: bool = False  # the device stopped answering (fell off the bus)
    # The vendor's other ids for this chip (Ascend: npu_id, chip_id, phy_id), for operators.
    ids: Mapping[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The `corral agent inventory --output json` form of this chip."""

        def mib(size: int | None) -> int | None:
            return None if size is None else round(size / MIB)

        return {
            "vendor": self.vendor,
            "model": self.model,
            "index": self.index,
            "uuid": self.uuid or None,
            "bus_id": self.bus_id or None,
            "board_id": self.board_id or None,
            "memory_total_mib": mib(self.memory_total_bytes),
            "memory_used_mib": mib(self.memory_used_bytes),
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "power_limit_settable": self.power_limit_settable,
            "temperature_c": self.temperature_c,
            "utilization_pct": self.utilization_pct,
            "healthy": self.healthy,
            "faults": [{"code": f.code, "text": f.text} for f in self.faults],
            "ids": dict(self.ids),
        }


@dataclass(frozen=True)
class NodeSnapshot:
    """Every chip one reader saw, and how they are wired.

    `islands` lists groups of chip indices that share the vendor's fast link (HCCS, MLU-Link,
    xGMI, MTLink, MetaXLink, XPU Link, GCU-LARE); chips in no island talk over PCIe only.
    """

    vendor: str
    source: str  # what was read: "npu-smi 25.5.2", "libcndev", ...
    devices: tuple[ChipReading, ...]
    interconnect: str = ""
    islands: tuple[tuple[int, ...], ...] = ()

    def by_index(self) -> dict[int, ChipReading]:
        return {d.index: d for d in self.devices}


def share_board_power(
    chips: Sequence[ChipReading], boards: Mapping[str, Sequence[int]]
) -> tuple[ChipReading, ...]:
    """`boards` maps a board id to the positions in `chips` of that board's chips. Every chip of
    a board of two or more gets its id, and the board's power stays on the first of them that
    shows any: a board's power is reported once, so summing chips never counts it twice."""
    out = list(chips)
    for board, members in boards.items():
        if len(members) < 2:
            continue
        powered = [i for i in members if out[i].power_w is not None]
        for i in members:
            keep = not powered or i == powered[0]
            out[i] = replace(out[i], board_id=board, power_w=out[i].power_w if keep else None)
    return tuple(out)


def linked_groups(nodes: Iterable[int], links: Iterable[tuple[int, int]]) -> list[tuple[int, ...]]:
    """The connected components of a link graph over chip indices: `nodes` and any chip a link
    names, a chip without links a component of its own. Each component is sorted; components
    come in the order of their first chip in `nodes` (then in `links`)."""
    parent: dict[int, int] = {n: n for n in nodes}

    def root(n: int) -> int:
        while parent.setdefault(n, n) != n:
            parent[n] = parent[parent[n]]  # path halving keeps later lookups short
            n = parent[n]
        return n

    for a, b in links:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for n in list(parent):
        groups.setdefault(root(n), []).append(n)
    return [tuple(sorted(g)) for g in groups.values()]


def link_islands(links: Iterable[tuple[int, int]]) -> tuple[tuple[int, ...], ...]:
    """`NodeSnapshot.islands` from observed fast links: the chips joined directly or through each
    other, as groups of two or more, in order. One rule for every vendor that can see its links
    (MLU-Link, XGMI, MetaXLink, MTLink), so an island means the same thing whoever reported it."""
    return tuple(sorted(g for g in linked_groups((), links) if len(g) > 1))


class VendorReader(Protocol):
    """One way into one vendor's devices. `read` may raise SnapshotError (unreadable answer)
    or ToolError (the tool failed or timed out); the backend turns both into health events."""

    vendor: str
    via: str  # "cli" or "library"

    def read(self) -> NodeSnapshot: ...

    def set_power_limit(self, index: int, watts: float) -> None:
        """Raise agents.backends.base.PowerLimitError where the hardware has no watt cap."""
        ...

    def close(self) -> None: ...


def check_power_range(what: str, watts: float, low: float | None, high: float | None) -> None:
    """PowerLimitError when `watts` is outside the range the vendor reported; a side it did not
    report (None) is not checked. Every reader that sets limits refuses the same way, before
    asking the library, so an operator sees one message whichever vendor said no."""
    if (low is not None and watts < low) or (high is not None and watts > high):
        shown = f"{'?' if low is None else f'{low:g}'}-{'?' if high is None else f'{high:g}'} W"
        raise PowerLimitError(f"{what}: {watts:g} W is outside the settable {shown}")
