"""cnmon's text, read by label: the summary table (`cnmon`) and the card detail (`cnmon info -c N`).

The summary table is a box of `|`-separated cells: two header rows name the values in each cell
(`Card  VF  Name  Firmware`, `Fan  Temp  Pwr:Usage/Cap`, `Bus-Id`, `Memory-Usage`, ...) and
every card prints two rows with the same cells. The columns moved between versions (v4.20 has
`Inited  Driver` where v5.10 has `Bus-Id`, and `vMemory-Usage` where v5.10 has `Mode
Compute-Mode`; v5.10.13 says `SR-IOV` for `Mode`), so values are matched to the header's labels
cell by cell, never by column position.

The detail layout is not in the research (only its labels are, [S] usage): the reader takes any
`key : value` line, in any section, and recognises keys by label (see `_DETAIL_KEYS`), XID
counters by their CNDev names (`CNDEV_XID_DBE_ECC_ERROR : 1`) and health incidents by theirs
(`CNDEV_FR_DBE_VIOLATION : FAIL`). `render_detail` writes the layout this reader expects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agents.backends.vendors import units
from agents.backends.vendors.cambricon_common import (
    DEVICE_IN_PROBLEM,
    DRIVER_RUNNING,
    DRIVER_STATE_BASE,
    DRIVER_STATE_NAMES,
    INCIDENT_BASE,
    VENDOR,
    RawChip,
    assemble,
    code_of,
    symbol,
    with_board_power,
)
from agents.backends.vendors.faults import packaged_fault_table
from agents.backends.vendors.snapshot import (
    MIB,
    NodeSnapshot,
    NotASummaryTable,
    SnapshotError,
    VendorFault,
    first_line,
)
from agents.backends.vendors.tool import ToolError

TOOL = "cnmon"
RENDER_VERSION = "5.10.22"

_BANNER = re.compile(r"\bCNMON\s+v?(?P<version>\d[\w.]*)", re.IGNORECASE)
_SEPARATOR = re.compile(r"^\s*\+[-+=]*\+\s*$")
_HEADER_END = re.compile(r"^\s*\|[=|+]+\|\s*$")
_VALUE = r"(?:\d+(?:\.\d+)?|N/A|NA|-{1,2})"
_UNIT = r"(?:\s*(?:[mµu]?W|[KMGT]i?B|B)\b)?"
# `107 W/ 250 W`, `0 MiB/ 20638 MiB`, `10240 MiB/1048576 MiB`, `N/A/ N/A` are one value each.
_TOKEN = re.compile(rf"{_VALUE}{_UNIT}\s*/\s*{_VALUE}{_UNIT}|\S+")
_NOT_AVAILABLE = re.compile(r"\bN/A\b", re.IGNORECASE)
_BARE_MISSING = re.compile(r"^(?:n/?a|-{1,2})?\s*[a-z]*$", re.IGNORECASE)


# -- the summary table ---------------------------------------------------------------------


@dataclass
class SummaryTable:
    version: str
    rows: list[dict[str, str]] = field(default_factory=list)  # header label -> value, per card


def _cells(line: str) -> list[str]:
    return line.strip().strip("|").split("|")


def _assign(labels: list[str], tokens: list[str]) -> dict[str, str]:
    """Labels of one header cell to the values of the same cell in a card row."""
    if len(tokens) > len(labels) >= 2:
        # A value with a space in it (a model name): the outer labels keep their ends.
        middle = " ".join(tokens[len(labels) - 2 : -1])
        tokens = [*tokens[: len(labels) - 2], middle, tokens[-1]]
    elif len(tokens) > len(labels) == 1:
        tokens = [" ".join(tokens)]
    return dict(zip(labels, tokens, strict=False))


def _not_a_table(text: str, why: str) -> NotASummaryTable:
    return NotASummaryTable(f"not a cnmon summary table: {why}; saw {first_line(text)}")


def _header_rows(lines: list[str], start: int) -> tuple[list[list[list[str]]], int]:
    """The header rows (per cell, its labels) after the banner, and the line after `|===|`."""
    headers: list[list[list[str]]] = []
    for i in range(start, len(lines)):
        line = lines[i]
        if _HEADER_END.match(line):
            return headers, i + 1
        if line.strip().startswith("|") and not _BANNER.search(line):
            headers.append([cell.split() for cell in _cells(line)])
    return headers, -1


def read_table(text: str) -> SummaryTable:
    lines = text.splitlines()
    banner = next(((i, m) for i, line in enumerate(lines) if (m := _BANNER.search(line))), None)
    if banner is None:
        raise _not_a_table(text, "no 'CNMON vX.Y' banner")
    start, match = banner
    headers, body = _header_rows(lines, start + 1)
    labels = {label for row in headers for cell in row for label in cell}
    if body < 0 or "Card" not in labels or "Name" not in labels:
        raise _not_a_table(text, "no header with 'Card' and 'Name' above a '|====|' line")
    found = SummaryTable(version=match.group("version"))
    block: list[str] = []
    for line in [*lines[body:], "+-+"]:
        if "Processes" in line or (not line.strip() and not block and found.rows):
            break
        if _SEPARATOR.match(line) or not line.strip():
            if block:
                found.rows.append(_card_values(headers, block))
            block = []
        elif line.strip().startswith("|"):
            block.append(line)
    return found


def _card_values(headers: list[list[list[str]]], block: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for header, line in zip(headers, block, strict=False):
        for labels, cell in zip(header, _cells(line), strict=False):
            values.update(_assign(labels, _TOKEN.findall(cell)))
    return values


def _pair(text: str | None) -> tuple[str | None, str | None]:
    """`107 W/ 250 W` -> ("107 W", "250 W"); `N/A` inside either side stays one value."""
    if text is None or units.is_missing(text):
        return None, None
    left, sep, right = _NOT_AVAILABLE.sub("NA", text).rpartition("/")
    return (left, right) if sep else (right, None)


def _missing(text: str | None) -> bool:
    return text is None or bool(_BARE_MISSING.match(text.strip()))


def _watts(text: str | None, label: str) -> float | None:
    return None if _missing(text) else units.watts(text, label)


def _mib(text: str | None, label: str) -> int | None:
    return None if _missing(text) else units.size_bytes(text, label, unit="mib")


def raw_chip(values: dict[str, str]) -> RawChip:
    """One card row of the summary table, labels to units."""
    card = values.get("Card")
    if card is None or not card.isdigit():
        raise SnapshotError(f"cnmon: a card row without a card number: {values}")
    power, cap = _pair(values.get("Pwr:Usage/Cap"))
    used, total = _pair(values.get("Memory-Usage"))
    bus = values.get("Bus-Id", "")
    return RawChip(
        index=int(card),
        model=values.get("Name", "").strip(),
        bus_id="" if units.is_missing(bus) else bus,
        power_w=_watts(power, "Pwr:Usage"),
        power_limit_w=_watts(cap, "Pwr:Cap"),
        memory_used_bytes=_mib(used, "Memory-Usage used"),
        memory_total_bytes=_mib(total, "Memory-Usage total"),
        temperature_c=units.celsius(values.get("Temp"), "Temp"),
        utilization_pct=units.percent(values.get("Util"), "Util"),
    )


def parse_summary(text: str) -> NodeSnapshot:
    """Plain `cnmon` output (any version seen: v4.20, v5.10) as a snapshot."""
    found = read_table(text)
    chips = _unique(raw_chip(values) for values in found.rows)
    return assemble(chips, f"{TOOL} {found.version}")


def _unique(chips: Iterable[RawChip]) -> list[RawChip]:
    seen: dict[int, RawChip] = {}
    for chip in chips:
        seen.setdefault(chip.index, chip)  # an SR-IOV VF repeats its card; the card row wins
    return list(seen.values())


# -- the card detail -----------------------------------------------------------------------


@dataclass
class Detail:
    """What `cnmon info -c N` adds to the summary row of card N."""

    uuid: str = ""
    serial: str = ""
    bus_id: str = ""
    device_good: bool | None = None
    driver_state: int | None = None
    faults: list[VendorFault] = field(default_factory=list)
    ecc_corrected_total: int | None = None
    ecc_uncorrected_total: int | None = None
    power_limit_default_w: float | None = None
    power_limit_min_w: float | None = None
    power_limit_max_w: float | None = None


_KEY_VALUE = re.compile(r"^\s*(?P<key>[^:]+?)\s*:\s*(?P<value>.*?)\s*$")
# Normalised label (lower case, single spaces) -> Detail field.
_DETAIL_KEYS = {
    "uuid": "uuid",
    "board serial number": "serial", "card serial number": "serial", "serial number": "serial",
    "board sn": "serial", "card sn": "serial", "sn": "serial",
    "bus id": "bus_id", "bus-id": "bus_id", "pci bus id": "bus_id",
    "device state": "device_state", "card health": "device_state", "health": "device_state",
    "driver state": "driver_state", "driver health": "driver_state",
    "corrected error": "ecc_corrected_total", "corrected errors": "ecc_corrected_total",
    "uncorrected error": "ecc_uncorrected_total", "uncorrected errors": "ecc_uncorrected_total",
    "default cap": "power_limit_default_w", "default power cap": "power_limit_default_w",
    "min cap": "power_limit_min_w", "min power cap": "power_limit_min_w",
    "max cap": "power_limit_max_w", "max power cap": "power_limit_max_w",
}  # fmt: skip
_GOOD = {"good", "ok", "normal", "healthy", "1"}
_BAD = {"in problem", "problem", "bad", "fault", "unhealthy", "0", "device in problem"}
_INCIDENT_RESULTS = {"warn", "fail", "10", "20"}


def _driver_state(value: str) -> int | None:
    wanted = value.strip().lower().replace("_", " ")
    for state, name in DRIVER_STATE_NAMES.items():
        if wanted in (name.lower(), str(state)):
            return state
    return None


def parse_detail(text: str) -> Detail:
    """Any `key : value` lines; unknown keys are ignored, known ones read by label."""
    detail = Detail()
    faults: dict[int, VendorFault] = {}
    for line in text.splitlines():
        m = _KEY_VALUE.match(line)
        if not m:
            continue
        key, value = m.group("key"), m.group("value")
        code = code_of(key)
        if code is not None:
            if _counts_as_fault(code, value):
                faults[code] = VendorFault(code, symbol(code))
            continue
        _set_detail(detail, " ".join(key.lower().split()), value)
    detail.faults = [faults[c] for c in sorted(faults)]
    return detail


def _counts_as_fault(code: int, value: str) -> bool:
    """An incident counts when it is WARN or FAIL; an XID when its counter is above zero."""
    text = value.strip().lower()
    if INCIDENT_BASE <= code < DEVICE_IN_PROBLEM:
        return text in _INCIDENT_RESULTS
    count = text.split()[0] if text else ""
    return count.isdigit() and int(count) > 0


def _set_detail(detail: Detail, key: str, value: str) -> None:
    target = _DETAIL_KEYS.get(key)
    if target is None or units.is_missing(value):
        return
    if target in ("uuid", "bus_id"):
        setattr(detail, target, value)
    elif target == "serial":
        detail.serial = value.removeprefix("SN/").lower()
    elif target == "device_state":
        state = value.strip().lower()
        detail.device_good = True if state in _GOOD else False if state in _BAD else detail.device_good
    elif target == "driver_state":
        detail.driver_state = _driver_state(value)
    elif target.startswith("ecc_"):
        setattr(detail, target, units.integer(value, key))
    else:
        setattr(detail, target, units.watts(value, key))


def merge(chip: RawChip, detail: Detail) -> RawChip:
    chip.uuid = detail.uuid or chip.uuid
    chip.serial = detail.serial or chip.serial
    chip.bus_id = chip.bus_id or detail.bus_id
    chip.device_good = detail.device_good
    chip.driver_state = detail.driver_state
    chip.faults = list(detail.faults)
    chip.ecc_corrected_total = detail.ecc_corrected_total
    chip.ecc_uncorrected_total = detail.ecc_uncorrected_total
    chip.power_limit_default_w = detail.power_limit_default_w
    chip.power_limit_min_w = detail.power_limit_min_w
    chip.power_limit_max_w = detail.power_limit_max_w
    return chip


# -- rendering (the simulator's cnmon) -----------------------------------------------------

_RULE = "+-------------------------------+----------------------+-----------------------+"


def _num(value: float | None, unit: str) -> str:
    return "N/A" if value is None else f"{value:g}{unit}"


def _mib_text(value: int | None) -> str:
    return "N/A" if value is None else f"{round(value / MIB)} MiB"


def render_summary(snapshot: NodeSnapshot, version: str = RENDER_VERSION) -> str:
    """`cnmon` in the v5.10.22 layout (research §2.2), one card block per chip."""
    power = with_board_power(snapshot)
    out = [
        "Wed Nov  8 16:16:45 2023",
        "+------------------------------------------------------------------------------+",
        f"| CNMON v{version:<44}Driver v{version:>17} |",
        _RULE,
        "| Card  VF  Name       Firmware |               Bus-Id | Util        Ecc-Error |",
        "| Fan   Temp      Pwr:Usage/Cap |         Memory-Usage | Mode     Compute-Mode |",
        "|===============================+======================+=======================|",
    ]
    for chip in snapshot.devices:
        if chip.lost:
            continue  # a chip that fell off the bus is not listed by cnmon
        ecc = sum(v for v in (chip.ecc_corrected_total, chip.ecc_uncorrected_total) if v) or 0
        pwr = f"{_num(power[chip.index], ' W')}/ {_num(chip.power_limit_w, ' W')}"
        mem = f"{_mib_text(chip.memory_used_bytes)}/ {_mib_text(chip.memory_total_bytes)}"
        left = f"  0%   {_num(chip.temperature_c, 'C')}"
        out += [
            f"| {chip.index:<6}{'/':<4}{chip.model:<9}{'v1.1.6':>10} | {chip.bus_id or 'N/A':>20} "
            f"| {_num(chip.utilization_pct, '%'):<10}{ecc:>11} |",
            f"|{left}{pwr:>{30 - len(left)}} | {mem:>20} | {'FULL':<10}{'Default':>11} |",
            _RULE,
        ]
    out += [
        "",
        "+------------------------------------------------------------------------------+",
        "| Processes:                                                                   |",
        "|  Card  MI  PID     Command Line                             MLU Memory Usage |",
        "|==============================================================================|",
        "|  No running processes found                                                  |",
        "+------------------------------------------------------------------------------+",
    ]
    return "\n".join(out) + "\n"


def _line(key: str, value: object, indent: int = 0) -> str:
    return f"{' ' * indent}{key:<{31 - indent}}: {value}"


def render_detail(snapshot: NodeSnapshot, index: int, version: str = RENDER_VERSION) -> str:
    """`cnmon info -c N` in the layout `parse_detail` reads (reconstructed, not captured)."""
    chip = snapshot.by_index().get(index)
    if chip is None or chip.lost:
        raise ToolError(f"{TOOL} info -c {index}: no such card")
    codes = sorted({f.code for f in chip.faults})
    states = [
        c - DRIVER_STATE_BASE for c in codes if c - DRIVER_STATE_BASE in DRIVER_STATE_NAMES.keys() - {4}
    ]
    driver = states[0] if states else DRIVER_RUNNING
    shown = {DEVICE_IN_PROBLEM, DRIVER_STATE_BASE + driver}
    out = [
        f"Card {index}",
        _line("Product Name", chip.model),
        _line("Driver", f"v{version}"),
        _line("Board Serial Number", chip.board_id or "N/A"),
        _line("UUID", chip.uuid or "N/A"),
        _line("Bus Id", chip.bus_id or "N/A"),
        "Health",
        _line("Device State", "In Problem" if DEVICE_IN_PROBLEM in codes else "Good", 2),
        _line("Driver State", DRIVER_STATE_NAMES[driver], 2),
        "Power Info",
        _line("Default Cap", _num(chip.power_limit_default_w, " W"), 2),
        _line("Min Cap", _num(chip.power_limit_min_w, " W"), 2),
        _line("Max Cap", _num(chip.power_limit_max_w, " W"), 2),
        "ECC Info",
        _line("Corrected Error", _num(chip.ecc_corrected_total, ""), 2),
        _line("Uncorrected Error", _num(chip.ecc_uncorrected_total, ""), 2),
        "Xid Errors",
        *(_line(symbol(c), 1, 2) for c in codes if c < INCIDENT_BASE),
        "Health Incidents",
        *(_line(symbol(c), _incident_result(c), 2) for c in codes if INCIDENT_BASE <= c < DEVICE_IN_PROBLEM),
        "Other Errors",
        *(_line(symbol(c), 1, 2) for c in codes if c >= DEVICE_IN_PROBLEM and c not in shown),
    ]
    return "\n".join(out) + "\n"


def _incident_result(code: int) -> str:
    return "FAIL" if packaged_fault_table(VENDOR).lookup(code).critical else "WARN"


def render_tool_output(argv: Sequence[str], snapshot: NodeSnapshot) -> str:
    """What cnmon would print for `argv` on a node in `snapshot`'s state: every command line
    `CliReader` issues (`cnmon`, `cnmon info -c N`). Others raise ToolError, as the tool fails."""
    args = list(argv[1:])
    if not args:
        return render_summary(snapshot)
    if len(args) == 3 and args[:2] == ["info", "-c"] and args[2].isdigit():
        return render_detail(snapshot, int(args[2]))
    raise ToolError(f"{TOOL} {' '.join(args)}: the simulated cnmon does not answer this command")
