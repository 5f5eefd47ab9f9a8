"""What both Cambricon readers share: the facts about the parts, and one assembly step.

The CLI reader (cnmon) and the library reader (CNDev) each fill a `RawChip` per MLU in the
units they read it in, already converted to watts, bytes, °C and %. `assemble` then does what
must come out the same whichever way the chips were read: board grouping (an MLU370-X8 card
carries two chips, which cnmon lists as two cards), board power attributed once, health from
the fault codes, and MLU-Link islands.

Facts and their confidence (research §2, ../shared/research/domestic_devices.md):
- MLU370-X8 has two chips per card [V-out: cnmon lists each chip as a card; S: launch press];
  each chip shows the same board reading (`107 W/ 250 W` on both), so the board's power is
  reported once, on the lower-numbered chip.
- Which cards share a board: chips with the same card serial number (CNDev cndevGetCardSN,
  cnmon's board serial); where no serial is readable, or the serials do not pair the chips up,
  consecutive chips of an MLU370-X8 are paired (0-1, 2-3, ...) [U: cnmon numbers the two chips
  of a card next to each other in every capture seen, e.g. buses 13:00.0 and 16:00.0].
- MLU-Link islands: an MLU-Link bridge ties 4 MLU370-X8 cards = 8 chips into a full mesh [S:
  launch press release]. Where the library can read the MLU-Link ports, the observed links
  decide; otherwise MLU370-X8 chips are grouped 8 at a time in index order [U: assumes every
  4 cards carry a bridge and that bridged cards are numbered together]. Other models get no
  island (MLU370-X4 and MLU590 MLU-Link fit is not in the research).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agents.backends.vendors.faults import any_critical, packaged_fault_table
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot, VendorFault, link_islands

VENDOR = "cambricon"
INTERCONNECT = "mlu-link"
LIBRARY_NAMES = ("libcndev.so",)
# $NEUWARE_HOME/lib64 is where CNToolkit installs it [V research §2.1]; /usr/local/neuware is
# the default NEUWARE_HOME.
LIBRARY_DIRS = ("/usr/local/neuware/lib64", "/usr/local/neuware/lib")

CHIPS_PER_BOARD = {"MLU370-X8": 2}
BRIDGE_CHIPS = {"MLU370-X8": 8}

# Fault code space (see faults/cambricon.yaml): XIDs as they are, health-diagnosis incidents
# offset by 1000, card health 2000, driver states offset by 2100.
XID_FALLEN_OFF = 14
INCIDENT_BASE = 1000
DEVICE_IN_PROBLEM = 2000
DRIVER_STATE_BASE = 2100
DRIVER_RUNNING = 4
DRIVER_STATE_NAMES = {
    0: "Early Inited", 1: "Bring Up", 2: "Booting", 3: "Late Init", 4: "Running",
    5: "Boot Error", 6: "Reset", 7: "Reset Error", 8: "Unknown",
}  # fmt: skip


@dataclass
class RawChip:
    """One MLU as a reader saw it, before board grouping and health are decided."""

    index: int
    model: str
    uuid: str = ""
    serial: str = ""  # the card serial number: chips of one card share it
    bus_id: str = ""
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
    device_good: bool | None = None  # None: the reader could not tell
    driver_state: int | None = None
    faults: list[VendorFault] = field(default_factory=list)
    ecc_corrected_total: int | None = None
    ecc_uncorrected_total: int | None = None


def symbol(code: int) -> str:
    """The vendor's own name for a code (`CNDEV_XID_DBE_ECC_ERROR`), as tools print it; a code
    the table does not list is spelled `XID_<n>`, `INCIDENT_<n>` or `CODE_<n>`."""
    meaning = packaged_fault_table(VENDOR).lookup(code)
    if meaning.listed:
        return meaning.name.split(" ", 1)[0]
    if code < INCIDENT_BASE:
        return f"XID_{code}"
    if code < DEVICE_IN_PROBLEM:
        return f"INCIDENT_{code - INCIDENT_BASE}"
    return f"CODE_{code}"


_GENERIC_SYMBOL = re.compile(r"^(?:CNDEV_)?(?P<kind>XID|INCIDENT|CODE)_(?P<number>\d+)$")


def code_of(name: str) -> int | None:
    """The code a printed name stands for: a listed symbol, or a generic spelling of `symbol`."""
    upper = name.strip().upper()
    listed = codes_by_symbol().get(upper)
    if listed is not None:
        return listed
    m = _GENERIC_SYMBOL.match(upper)
    if m is None:
        return None
    offset = {"XID": 0, "INCIDENT": INCIDENT_BASE, "CODE": 0}[m.group("kind")]
    return offset + int(m.group("number"))


def fault(code: int) -> VendorFault:
    """The fault as both readers report it: the code and the vendor's name for it."""
    return VendorFault(code, symbol(code))


@functools.cache
def codes_by_symbol() -> dict[str, int]:
    """`CNDEV_XID_DBE_ECC_ERROR` -> 15, also without the `CNDEV_` prefix, upper case."""
    found: dict[str, int] = {}
    for code in packaged_fault_table(VENDOR).codes:
        name = symbol(code).upper()
        found[name] = code
        found[name.removeprefix("CNDEV_")] = code
    return found


def driver_state_code(state: int) -> int:
    return DRIVER_STATE_BASE + state


def _health_faults(chip: RawChip) -> list[VendorFault]:
    extra = []
    if chip.device_good is False:
        extra.append(fault(DEVICE_IN_PROBLEM))
    if chip.driver_state is not None and chip.driver_state != DRIVER_RUNNING:
        extra.append(fault(driver_state_code(chip.driver_state)))
    merged = {f.code: f for f in [*chip.faults, *extra]}
    return [merged[c] for c in sorted(merged)]


def _healthy(chip: RawChip, faults: Iterable[VendorFault]) -> bool:
    if chip.device_good is False:
        return False
    if chip.driver_state is not None and chip.driver_state != DRIVER_RUNNING:
        return False
    return not any_critical(VENDOR, faults)


def boards(chips: Sequence[RawChip]) -> list[list[int]]:
    """Indices of the chips on each multi-chip board, lowest index first."""
    found: list[list[int]] = []
    for model, per_board in CHIPS_PER_BOARD.items():
        group = sorted((c for c in chips if c.model == model), key=lambda c: c.index)
        by_serial: dict[str, list[int]] = {}
        for c in group:
            if c.serial:
                by_serial.setdefault(c.serial, []).append(c.index)
        paired = [sorted(v) for v in by_serial.values()]
        if len(paired) * per_board == len(group) and all(len(p) == per_board for p in paired):
            found.extend(paired)
            continue
        # No usable serials: cnmon numbers a card's chips next to each other [U].
        indices = [c.index for c in group]
        found.extend(indices[i : i + per_board] for i in range(0, len(indices), per_board))
    return sorted((b for b in found if len(b) > 1), key=lambda b: b[0])


def board_id(chips_by_index: dict[int, RawChip], members: Sequence[int]) -> str:
    serial = chips_by_index[members[0]].serial
    return serial if serial else f"mlu-card-{members[0]}"


def documented_islands(chips: Sequence[RawChip | ChipReading]) -> tuple[tuple[int, ...], ...]:
    """MLU-Link islands from the documented bridge topology (module docstring, [S]/[U])."""
    islands: list[tuple[int, ...]] = []
    for model, size in BRIDGE_CHIPS.items():
        indices = sorted(c.index for c in chips if c.model == model)
        islands.extend(tuple(indices[i : i + size]) for i in range(0, len(indices), size))
    return tuple(sorted((i for i in islands if len(i) > 1), key=lambda i: i[0]))


def linked_islands(
    links: Iterable[tuple[int, int]], board_groups: Iterable[Sequence[int]]
) -> tuple[tuple[int, ...], ...]:
    """Connected components of the observed MLU-Link graph (a card's own chips are linked)."""
    return link_islands([*links, *((b[0], other) for b in board_groups for other in b[1:])])


def assemble(
    chips: Sequence[RawChip], source: str, links: Iterable[tuple[int, int]] | None = None
) -> NodeSnapshot:
    """The snapshot both readers return. `links` are observed MLU-Link pairs (library only);
    None means the reader could not see the links, so the documented topology applies."""
    by_index = {c.index: c for c in chips}
    board_groups = boards(chips)
    board_of: dict[int, str] = {}
    secondary: set[int] = set()
    for members in board_groups:
        bid = board_id(by_index, members)
        for i in members:
            board_of[i] = bid
        secondary.update(members[1:])
    readings = []
    for c in sorted(chips, key=lambda c: c.index):
        faults = _health_faults(c)
        readings.append(
            ChipReading(
                vendor=VENDOR, model=c.model, index=c.index, uuid=c.uuid or c.serial, bus_id=c.bus_id,
                board_id=board_of.get(c.index, ""),
                memory_total_bytes=c.memory_total_bytes, memory_used_bytes=c.memory_used_bytes,
                # One card, one power reading: the lower-numbered chip carries it.
                power_w=None if c.index in secondary else c.power_w,
                power_limit_w=c.power_limit_w, power_limit_min_w=c.power_limit_min_w,
                power_limit_max_w=c.power_limit_max_w, power_limit_default_w=c.power_limit_default_w,
                power_limit_settable=c.power_limit_settable,
                temperature_c=c.temperature_c, utilization_pct=c.utilization_pct,
                healthy=_healthy(c, faults), faults=tuple(faults),
                ecc_corrected_total=c.ecc_corrected_total, ecc_uncorrected_total=c.ecc_uncorrected_total,
                lost=any(f.code == XID_FALLEN_OFF for f in faults),
            )
        )  # fmt: skip
    islands = documented_islands(chips) if links is None else linked_islands(links, board_groups)
    return NodeSnapshot(VENDOR, source, tuple(readings), INTERCONNECT, islands)


def with_board_power(snapshot: NodeSnapshot) -> dict[int, float | None]:
    """Each chip's power as the tool prints it: a card's reading on every chip of the card."""
    power = {c.index: c.power_w for c in snapshot.devices}
    for chip in snapshot.devices:
        if chip.board_id and chip.power_w is not None:
            for other in snapshot.devices:
                if other.board_id == chip.board_id and power[other.index] is None:
                    power[other.index] = chip.power_w
    return power
