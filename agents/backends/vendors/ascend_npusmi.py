"""Reading npu-smi's text: the `npu-smi info` table, `info -m` and the `info -t ...` blocks.

The summary table prints each chip as two lines under a two-line header: line one (NPU, Name,
Health, Power(W), Temp(C), Hugepages) and line two (Chip [Device|Phy-ID], Bus-Id, AICore(%),
Memory-Usage(MB) [HBM-Usage(MB)]). A multi-chip card (Atlas 300I Duo, A3) repeats line one per
chip. Values are found by the header's labels, never by column position: versions drop the HBM
column (310P), add a Device or Phy-ID column, and lose the space in `61258/ 65536`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from agents.backends.vendors import units
from agents.backends.vendors.ascend_model import HEALTH_STATES, health_state
from agents.backends.vendors.snapshot import NotASummaryTable, SnapshotError

# A value: a `used / total` pair with any spacing around the slash, or one token.
_VALUE = re.compile(r"[^\s/]+\s*/\s*[^\s/]+|\S+")
_BUS_ID = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", re.IGNORECASE)
_VERSION = re.compile(r"npu-smi\s+(\S+)", re.IGNORECASE)
_LONE_UNITS = frozenset({"℃", "°c", "c", "w", "%", "mb", "mib"})
_HEALTH_WORDS = frozenset(s.casefold() for s in HEALTH_STATES)
# A header line: per cell, its labels ("NPU", "Name" | "Health" | "Power(W)", "Temp(C)", ...).
Line = list[list[str]]
_SIZE_UNITS = {"b": "b", "kb": "kib", "mb": "mib", "mib": "mib", "gb": "gib", "gib": "gib"}


@dataclass(frozen=True)
class TableChip:
    """One chip of the summary table, in table order; memory is HBM where the table has an HBM
    column with a non-zero total, else the DDR Memory-Usage column."""

    npu_id: int
    chip_id: int
    name: str
    health: str
    bus_id: str = ""
    phy_id: int | None = None  # the `Device` (310P) or `Phy-ID` (A3) column where printed
    power_w: float | None = None
    temperature_c: float | None = None
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None


@dataclass(frozen=True)
class SummaryTable:
    version: str  # "25.5.2", or "" when the banner line is missing
    chips: tuple[TableChip, ...]


@dataclass(frozen=True)
class MappedChip:
    """One line of `npu-smi info -m`; an MCU has no logic id."""

    npu_id: int
    chip_id: int
    logic_id: int | None
    name: str
    phy_id: int | None = None

    @property
    def is_mcu(self) -> bool:
        return self.logic_id is None or self.name.casefold() == "mcu"


def norm(label: str) -> str:
    """`Memory-Usage(MB)` -> `memoryusagemb`: labels compared without case, spaces or marks."""
    return re.sub(r"[^0-9a-z]", "", label.casefold())


# ---------------------------------------------------------------------------- summary table


def parse_table(text: str) -> SummaryTable:
    """Every chip of a plain `npu-smi info`; NotASummaryTable for anything else."""
    version = ""
    header: list[Line] = []  # the two header lines
    chips: list[TableChip] = []
    npu_row: list[str] | None = None
    previous = ""
    for cells in _rows(text):
        if len(cells) == 1:
            found = _VERSION.search(cells[0])
            version = version or (found.group(1) if found else "")
            continue
        if len(header) < 2:
            header = _read_header(header, cells)
            continue
        if any("process" in c.casefold() for c in cells):
            break  # the process table that follows the chips
        kind = _row_kind(cells, previous)
        previous = kind
        if kind == "npu":
            npu_row = cells
        elif npu_row is None:
            raise SnapshotError(f"npu-smi info: a chip line before any NPU line: {'|'.join(cells)!r}")
        else:
            chip = _table_chip(header, npu_row, cells)
            if not chip.name:  # a die line that leaves the card's name out: the card's name
                chip = replace(chip, name=next((c.name for c in chips if c.npu_id == chip.npu_id), ""))
            chips.append(chip)
    if len(header) < 2:
        raise NotASummaryTable(_not_a_table(text))
    return SummaryTable(version, tuple(chips))


def _rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1:
            rows.append([c.strip() for c in stripped[1:-1].split("|")])
    return rows


def _read_header(header: list[Line], cells: list[str]) -> list[Line]:
    labels = [_labels(c) for c in cells]
    words = {norm(w) for cell in labels for w in cell}
    if not header and labels[0][:1] and norm(labels[0][0]) == "npu" and "health" in words:
        return [labels]
    if header and labels[0][:1] and norm(labels[0][0]) == "chip" and "busid" in words:
        return [*header, labels]
    return header


def _labels(cell: str) -> list[str]:
    """A header cell's labels; `Temp (C)` stays one label."""
    out: list[str] = []
    for token in cell.split():
        if token.startswith("(") and out:
            out[-1] += token
        else:
            out.append(token)
    return out


def _row_kind(cells: list[str], previous: str) -> str:
    middle = cells[1].split()[0] if len(cells) > 1 and cells[1].split() else ""
    if _BUS_ID.match(middle):
        return "chip"
    if middle.casefold() in _HEALTH_WORDS:
        return "npu"
    return "chip" if previous == "npu" else "npu"


def _table_chip(header: list[Line], npu_row: list[str], chip_row: list[str]) -> TableChip:
    first = _cell_values(header[0], npu_row)
    second = _cell_values(header[1], chip_row)
    npu_cell = npu_row[0].split()
    chip_cell = chip_row[0].split()
    if not npu_cell or not chip_cell:
        raise SnapshotError(f"npu-smi info: a chip without NPU or chip id: {npu_row!r} / {chip_row!r}")
    chip_labels = [norm(label) for label in header[1][0]]
    chip_ids = dict(zip(chip_labels, chip_cell, strict=False))
    memory_used, memory_total = _memory(second)
    return TableChip(
        npu_id=_required_int(npu_cell[0], "NPU"),
        chip_id=_required_int(chip_cell[0], "Chip"),
        name=" ".join(npu_cell[1:]),
        health=health_state(_value(first, "health") or "UNKNOWN"),
        bus_id=_text(_value(second, "busid")),
        phy_id=units.integer(chip_ids.get("device") or chip_ids.get("phyid"), "Chip Phy-ID"),
        power_w=units.watts(_value(first, "power"), "Power(W)"),
        temperature_c=units.celsius(_value(first, "temp"), "Temp(C)"),
        utilization_pct=units.percent(_value(second, "aicore"), "AICore(%)"),
        memory_used_bytes=memory_used,
        memory_total_bytes=memory_total,
    )


def _cell_values(labels: Line, cells: list[str]) -> list[tuple[str, str]]:
    """(label, value) pairs of one line, cell by cell; the first cell (ids, name) is read apart."""
    pairs: list[tuple[str, str]] = []
    for cell_labels, cell in zip(labels[1:], cells[1:], strict=False):
        pairs.extend(zip(cell_labels, _values(cell), strict=False))
    return pairs


def _values(cell: str) -> list[str]:
    """A cell's values; a unit printed apart from its number (`41 ℃`) stays with it."""
    values: list[str] = []
    for token in _VALUE.findall(cell):
        if values and token.casefold() in _LONE_UNITS:
            values[-1] = f"{values[-1]} {token}"
        else:
            values.append(token)
    return values


def _value(pairs: list[tuple[str, str]], prefix: str) -> str | None:
    return next((v for label, v in pairs if norm(label).startswith(prefix)), None)


def _text(value: str | None) -> str:
    return "" if units.is_missing(value) else str(value)


def _memory(pairs: list[tuple[str, str]]) -> tuple[int | None, int | None]:
    """HBM where its column exists with a non-zero total, else DDR (Memory-Usage)."""
    found: dict[str, tuple[int | None, int | None]] = {}
    for label, value in pairs:
        key = norm(label)
        kind = "hbm" if key.startswith("hbm") else "ddr" if key.startswith("memory") else ""
        if kind and kind not in found:
            found[kind] = units.used_total_bytes(value, label, _label_unit(label))
    hbm = found.get("hbm", (None, None))
    return hbm if hbm[1] else found.get("ddr", hbm)


def _label_unit(label: str) -> str:
    unit = re.search(r"\(([a-z]+)\)", label, re.IGNORECASE)
    return _SIZE_UNITS.get(unit.group(1).casefold(), "mib") if unit else "mib"


def _required_int(text: str, field: str) -> int:
    value = units.integer(text, field)
    if value is None:
        raise SnapshotError(f"npu-smi info: {field} id is missing ({text!r})")
    return value


def _not_a_table(text: str) -> str:
    seen = next((line.strip() for line in text.splitlines() if re.search(r"[^\W_]", line)), "")
    shown = f"its first line is {seen[:100]!r}" if seen else "the text is empty"
    return (
        "not an `npu-smi info` summary table: expected a header line '| NPU  Name | Health | "
        "Power(W) Temp(C) ... |' followed by '| Chip | Bus-Id | AICore(%) Memory-Usage(MB) ... |'; " + shown
    )


# ---------------------------------------------------------------------------- npu-smi info -m


def parse_chip_map(text: str) -> tuple[MappedChip, ...]:
    """`npu-smi info -m`: NPU ID, Chip ID, Chip Logic ID [, Chip Phy-ID], Chip Name per line.

    The header's labels are separated by two or more spaces or a tab; only the name may contain
    spaces.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "chiplogicid" in norm(line)), None)
    if start is None:
        raise SnapshotError("npu-smi info -m: no header line 'NPU ID  Chip ID  Chip Logic ID  Chip Name'")
    labels = [norm(label) for label in re.split(r"\s{2,}|\t", lines[start])]
    mapped = []
    for line in lines[start + 1 :]:
        tokens = line.split()
        if not tokens or not tokens[0].isdigit():
            continue
        fields = dict(zip(labels, _spread(tokens, labels), strict=False))
        mapped.append(
            MappedChip(
                npu_id=_required_int(fields.get("npuid", ""), "NPU"),
                chip_id=_required_int(fields.get("chipid", ""), "Chip"),
                logic_id=units.integer(fields.get("chiplogicid"), "Chip Logic ID"),
                name=fields.get("chipname", ""),
                phy_id=units.integer(fields.get("chipphyid"), "Chip Phy-ID"),
            )
        )
    return tuple(mapped)


def _spread(tokens: list[str], labels: list[str]) -> list[str]:
    """Tokens to columns: the name column takes whatever the others leave over."""
    if "chipname" not in labels:
        return tokens
    at = labels.index("chipname")
    extra = max(0, len(tokens) - len(labels))
    return [*tokens[:at], " ".join(tokens[at : at + 1 + extra]), *tokens[at + 1 + extra :]]


# ---------------------------------------------------------------------------- npu-smi info -t


def parse_key_values(text: str) -> dict[str, str]:
    """`Key<spaces>: value` lines (health, board, power, common blocks), keyed by `norm(key)`.

    The first occurrence of a key wins (`-t common` repeats keys in its MCU sub-block); a line
    without a colon continues the value before it.
    """
    values: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            if last:
                values[last] = f"{values[last]} {line.strip()}".strip()
            continue
        last = norm(key)
        if last in values:
            last = ""  # a repeated key: keep the first, and do not let its lines extend it
            continue
        values[last] = value.strip()
    return values


def parse_error_codes(text: str | None) -> tuple[int, ...]:
    """`80E01801`, `0x80E01801`, several separated by spaces, commas or semicolons; NA is none."""
    if units.is_missing(text):
        return ()
    assert text is not None
    codes: list[int] = []
    for token in re.split(r"[\s,;]+", text.strip()):
        if not token or units.is_missing(token):
            continue
        try:
            codes.append(int(token.removeprefix("0x").removeprefix("0X"), 16))
        except ValueError:
            raise SnapshotError(f"Error Code: cannot read {token!r} as a hex error code") from None
    return tuple(dict.fromkeys(codes))


def vdie_uuid(text: str | None) -> str:
    """A VDie id (`npu-smi info -t board`: five 32-bit words) as Corral's uuid, upper-case words
    of eight hex digits joined by `-`; DCMI's die struct yields the same spelling."""
    if units.is_missing(text):
        return ""
    assert text is not None
    words = [w for w in re.split(r"[\s-]+", text.strip()) if w]
    if words and all(re.fullmatch(r"[0-9a-fA-F]{1,8}", w) for w in words):
        return "-".join(w.upper().zfill(8) for w in words)
    return "-".join(words)


def first_watts(values: dict[str, str], keys: Sequence[str]) -> float | None:
    """The first of `keys` (normalised prefixes) with a value in watts."""
    for prefix in keys:
        for key, text in values.items():
            watts = units.watts(text, key) if key.startswith(prefix) else None
            if watts is not None:
                return watts
    return None
