"""hy-smi / rocm-smi text and JSON, read by label.

Two shapes (research §3.2):
- the concise table, one whitespace-separated row per DCU under a header row that names the
  columns: `DCU Temp AvgPwr Perf PwrCap VRAM% DCU% Mode` on hy-smi (DTK 24.04), the same on
  DTK 23.10 rocm-smi, and on the Z100-era rocm-smi no `Mode`, optional `SCLK`/`MCLK`, a
  lower-case `c` after temperatures; newer releases say `HCU` where older say `DCU`, ROCm's own
  says `GPU`. Values are matched to header labels, by count where the row has one value per
  label and by column position where it does not.
- `--json`: `{"card0": {"Card Series": "K100_AI", "vram Total Memory (MiB)": "65520", ...}}`,
  every value a string, the unit in the key (MiB on DTK 24.04.3, bytes `(B)` elsewhere; `DCU use
  (%)` or `HCU use (%)`). Keys are matched by pattern, so either spelling reads.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agents.backends.vendors import units
from agents.backends.vendors.hygon_common import RAS_BLOCKS, RawChip, assemble, normalise_model
from agents.backends.vendors.snapshot import NodeSnapshot, NotASummaryTable, SnapshotError, first_line

ID_COLUMNS = ("DCU", "HCU", "GPU")
_CARD_KEY = re.compile(r"^card(?P<index>\d+)$", re.IGNORECASE)
_PERCENT_COLUMN = re.compile(r"^(DCU|HCU|GPU)%$", re.IGNORECASE)
_TEMP_SENSORS = ("edge", "core", "junction")


# -- the concise table -----------------------------------------------------------------------


def _header(lines: list[str]) -> tuple[int, list[str]] | None:
    for i, line in enumerate(lines):
        labels = line.split()
        if len(labels) >= 3 and labels[0].upper() in ID_COLUMNS and "Temp" in labels:
            return i, labels
    return None


def _not_a_table(text: str, why: str) -> NotASummaryTable:
    return NotASummaryTable(f"not a hy-smi/rocm-smi summary table: {why}; saw {first_line(text)}")


def _by_position(header_line: str, labels: list[str], row: str) -> dict[str, str]:
    """Each value to the label whose column it starts closest to (rows with a missing value)."""
    starts = [m.start() for m in re.finditer(r"\S+", header_line)]
    values: dict[str, str] = {}
    for m in re.finditer(r"\S+", row):
        nearest = min(range(len(starts)), key=lambda k: abs(starts[k] - m.start()))
        values.setdefault(labels[nearest], m.group())
    return values


def read_table(text: str) -> tuple[str, list[dict[str, str]]]:
    """The id column's name and, per DCU, header label -> value."""
    lines = text.splitlines()
    found = _header(lines)
    if found is None:
        raise _not_a_table(text, "no header row starting with DCU, HCU or GPU and naming Temp")
    at, labels = found
    rows: list[dict[str, str]] = []
    for line in lines[at + 1 :]:
        tokens = line.split()
        if not tokens or not tokens[0].isdigit():
            if rows:
                break  # the closing `=====` rule
            continue  # a second header line or a rule before the first row
        if len(tokens) == len(labels):
            rows.append(dict(zip(labels, tokens, strict=True)))
        else:
            rows.append(_by_position(lines[at], labels, line))
    return labels[0].upper(), rows


def chip_from_row(id_column: str, values: dict[str, str]) -> RawChip:
    util_label = next((k for k in values if _PERCENT_COLUMN.match(k)), "")
    return RawChip(
        index=int(values[next(k for k in values if k.upper() == id_column)]),
        # The table names no model; what it calls the device (a DCU, or an HCU on newer
        # releases; ROCm's `GPU` column on an old DTK rocm-smi is a DCU too) is all it says.
        model="HCU" if id_column == "HCU" else "DCU",
        temperature_c=units.celsius(values.get("Temp"), "Temp"),
        power_w=units.watts(values.get("AvgPwr"), "AvgPwr"),
        power_limit_w=units.watts(values.get("PwrCap"), "PwrCap"),
        utilization_pct=units.percent(values.get(util_label), util_label or "DCU%"),
    )


def parse_summary(text: str) -> NodeSnapshot:
    """Plain `hy-smi` (or DTK `rocm-smi`) output as a snapshot."""
    id_column, rows = read_table(text)
    chips: dict[int, RawChip] = {}
    for values in rows:
        chip = chip_from_row(id_column, values)
        chips.setdefault(chip.index, chip)
    tool = "rocm-smi" if "ROCm" in text else "hy-smi"
    return assemble(list(chips.values()), f"{tool} table")


# -- --json ----------------------------------------------------------------------------------

_SIZE_KEY = re.compile(r"^vram total (?P<what>used )?memory \((?P<unit>mib|mb|b|bytes)\)$")
_USE_KEY = re.compile(r"^(dcu|hcu|gpu) use \(%\)$")
_TEMP_KEY = re.compile(r"^temperature \(sensor (?P<sensor>[a-z0-9 ]+)\) \(c\)$")
_POWER_KEY = re.compile(r"^(average|current socket) graphics package power \(w\)$")
_ECC_KEY = re.compile(r"(?P<un>un)?correct(?:able|ed)")


def load_cards(text: str) -> dict[int, dict[str, str]]:
    """`{"card0": {...}, "system": {...}}` -> {0: {...}}; SnapshotError for anything else."""
    try:
        doc: Any = json.loads(text)
    except ValueError as e:
        raise SnapshotError(f"hy-smi --json: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise SnapshotError("hy-smi --json: expected an object of cards")
    cards = {}
    for key, values in doc.items():
        m = _CARD_KEY.match(str(key))
        if m and isinstance(values, dict):
            cards[int(m.group("index"))] = {str(k): str(v) for k, v in values.items()}
    if not cards:
        raise SnapshotError(f"hy-smi --json: no card0, card1, ... keys (saw {sorted(doc)[:5]})")
    return cards


def _label(key: str) -> str:
    return " ".join(key.lower().split())


def chip_from_json(index: int, values: dict[str, str]) -> RawChip:
    chip = RawChip(index=index, model="")
    temps: dict[str, float | None] = {}
    for key, value in values.items():
        _apply(chip, temps, _label(key), key, value)
    # `Card Series` is the product name (K100_AI, Z100L); `Card Model` is a fallback only, since
    # on ROCm it is a PCI device id.
    names = {_label(k): v for k, v in values.items() if not units.is_missing(v)}
    chip.model = normalise_model(names.get("card series") or names.get("card model") or "DCU")
    sensor = next((s for s in _TEMP_SENSORS if temps.get(s) is not None), None)
    chip.temperature_c = temps[sensor] if sensor else next((t for t in temps.values() if t is not None), None)
    return chip


def _apply(chip: RawChip, temps: dict[str, float | None], label: str, key: str, value: str) -> None:
    if label == "serial number" and not units.is_missing(value):
        chip.uuid = value.strip()
    elif label == "pci bus" and not units.is_missing(value):
        chip.bus_id = value.strip().lower()
    elif m := _SIZE_KEY.match(label):
        size = units.size_bytes(value, key, unit="b" if m.group("unit") in ("b", "bytes") else "mib")
        if m.group("what"):
            chip.memory_used_bytes = size
        else:
            chip.memory_total_bytes = size
    elif _USE_KEY.match(label):
        chip.utilization_pct = units.percent(value, key)
    elif m := _TEMP_KEY.match(label):
        temps[m.group("sensor").strip()] = units.celsius(value, key)
    elif _POWER_KEY.match(label):
        chip.power_w = units.watts(value, key)
    elif label == "max graphics package power (w)":
        chip.power_limit_w = units.watts(value, key)


def apply_ecc(chip: RawChip, values: dict[str, str]) -> None:
    """ECC counters, wherever a key says (un)correctable; a leading RAS block name
    (`UMC Uncorrectable Error`) attributes the count to that block."""
    for key, value in values.items():
        m = _ECC_KEY.search(key.lower())
        count = units.integer(value, key) if m and not units.is_missing(value) else None
        if count is None or m is None:
            continue
        if m.group("un"):
            chip.ecc_uncorrected_total = (chip.ecc_uncorrected_total or 0) + count
            block = RAS_BLOCKS.get(key.split()[0].strip(":[]").upper(), 0)
            chip.uncorrectable_by_block[block] = chip.uncorrectable_by_block.get(block, 0) + count
        else:
            chip.ecc_corrected_total = (chip.ecc_corrected_total or 0) + count


def parse_json(text: str) -> list[RawChip]:
    return [chip_from_json(index, values) for index, values in sorted(load_cards(text).items())]
