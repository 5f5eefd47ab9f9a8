"""AMD tool output as chip readings: the plain `amd-smi` table, `rocm-smi` concise tables, and the
JSON that `amd-smi list/static --json` and `rocm-smi --json` print.

Every layout is read by its header labels, never by column position:
- `amd-smi` (amd-smi 26.x, ROCm 7): a boxed table, two rows per GPU under the labels
  `BDF GPU-Name | Mem-Uti Temp UEC Power-Usage` / `GPU HIP-ID OAM-ID Partition-Mode | GFX-Uti Fan
  Mem-Usage` (ROCm/rocm-install-on-linux docs [V-out]).
- `rocm-smi` concise info, three generations: ROCm 6 (`Device [Model : Revision] Temp Power
  Partitions ...` with the market name on a second line), rocm-smi 3.0.0 / ROCm 7 (`Device Node
  IDs ...`, no name line: the model comes from the PCI device id) and ROCm 5 (`GPU Temp (DieEdge)
  AvgPwr ...`, no model at all).
Units here: W, MiB ("MB" in AMD's tools is MiB: 196592 MB on a 192 GiB MI300X), °C, %.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from agents.backends.vendors import units
from agents.backends.vendors.boxed_table import boxed_rows, read_labelled, read_labelled_row
from agents.backends.vendors.smi_table import canonical_bus_id
from agents.backends.vendors.snapshot import ChipReading, NotASummaryTable, SnapshotError, VendorFault

VENDOR = "amd"
FAULT_UNCORRECTABLE_ECC = 1
FAULT_DEFERRED_ECC = 2
FAULT_LOST = 3

# PCI device ids rocm-smi 3.0.0 prints instead of a name, each as a tool printed it beside the
# name: 0x74a1 "AMD Instinct MI300X" and 0x74b5 "AMD Instinct MI300X VF" (rocm-smi captures,
# thamada/nvidia-smi and a published Product Info block [V-out]); 0x740c "AMD Instinct
# MI250X/MI250" (rocminfo in ROCm/rocm_smi_lib#160 [V-out]); 0x7408 on LUMI's MI250X
# (csc-training/summerschool rocminfo [S]); 0x75a0 "AMD Instinct MI350X" (amd-smi static in
# ROCm/rocm-systems#2987 [V-out]). Other ids stay unnamed rather than guessed.
DEVICE_IDS: Mapping[int, str] = {
    0x74A1: "MI300X", 0x74B5: "MI300X", 0x740C: "MI250X", 0x7408: "MI250X", 0x75A0: "MI350X",
}  # fmt: skip


def model_name(raw: str) -> str:
    """`AMD Instinct MI300X VF`, `Instinct MI210`, `AMD Instinct MI250X/MI250` -> the catalog's
    `MI300X`, `MI210`, `MI250X` (a VF is the same part; `MI250X/MI250` is how ROCm names both
    packages, and the X is the one Corral's catalog lists [U])."""
    if units.is_missing(raw):
        return ""
    name = re.sub(r"^\s*(?:AMD\s+)?(?:Instinct\s+)?", "", raw.strip(), flags=re.IGNORECASE)
    name = re.sub(r"\s+VF$", "", name, flags=re.IGNORECASE)
    if re.fullmatch(r"0x[0-9a-fA-F]+", name):  # amd-smi prints the device id for unnamed parts
        return model_from_device_id(name) or name
    if re.match(r"MI\d", name, re.IGNORECASE):
        name = name.split("/")[0]
    return name.strip()


def model_from_device_id(device_id: str) -> str:
    try:
        return DEVICE_IDS.get(int(device_id, 16), "")
    except ValueError:
        return ""


def ecc_faults(uncorrectable: int | None, deferred: int | None = None) -> tuple[VendorFault, ...]:
    faults = []
    if uncorrectable:
        faults.append(VendorFault(FAULT_UNCORRECTABLE_ECC, f"{uncorrectable} uncorrectable ECC error(s)"))
    if deferred:
        faults.append(VendorFault(FAULT_DEFERRED_ECC, f"{deferred} deferred ECC error(s)"))
    return tuple(faults)


_NA = r"N/A|-+"
_PERCENT = re.compile(rf"(?:{_NA}|\d+(?:\.\d+)?\s*%)")


# --------------------------------------------------------------------------- plain amd-smi
_AMDSMI_LABELS = re.compile(
    r"GPU-Name|Mem-Uti|Power-Usage|Partition-Mode|GFX-Uti|Mem-Usage|HIP-ID|OAM-ID|BDF|Temp|UEC|Fan|GPU|\S+"
)
_AMDSMI_VALUES = {
    "BDF": re.compile(r"[0-9A-Fa-f]+(?::[0-9A-Fa-f]+)+\.[0-7]"),
    "Mem-Uti": _PERCENT,
    "GFX-Uti": _PERCENT,
    "Fan": _PERCENT,
    "Temp": re.compile(rf"(?:{_NA}|-?\d+(?:\.\d+)?\s*(?:°\s*C|℃|C)?)"),
    "UEC": re.compile(rf"(?:{_NA}|\d+)"),
    "GPU": re.compile(r"\d+"),
    "HIP-ID": re.compile(rf"(?:{_NA}|\d+)"),
    "OAM-ID": re.compile(rf"(?:{_NA}|\d+)"),
}
_AMDSMI_POWER = re.compile(
    rf"^(?P<usage>{_NA}|[\d.]+)\s*/\s*(?P<cap>{_NA}|[\d.]+)\s*(?P<unit>[a-zµ]*W)?$", re.I
)
_AMDSMI_VERSION = re.compile(r"AMD-SMI\s+(\d+(?:\.\d+)+)")


def _amdsmi_row(template: list[list[str]], cells: list[str]) -> dict[str, str]:
    return read_labelled_row(template, cells, _AMDSMI_VALUES, strict=False, source="amd-smi")


def _amdsmi_power(text: str) -> tuple[float | None, float | None]:
    """`234/1400 W`, `N/A/0 W`, `N/A`: (usage, cap) in W; a 0 W cap is no cap."""
    if units.is_missing(text):
        return None, None
    m = _AMDSMI_POWER.match(text.strip())
    if not m:
        return units.watts(text, "amd-smi Power-Usage"), None
    unit = m["unit"] or "W"
    usage = units.watts(m["usage"], "amd-smi power usage", unit)
    cap = units.watts(m["cap"], "amd-smi power cap", unit)
    return usage, cap or None


def _amdsmi_chip(values: dict[str, str]) -> ChipReading:
    gpu = units.integer(values.get("GPU"), "amd-smi GPU")
    hip = units.integer(values.get("HIP-ID"), "amd-smi HIP-ID")
    index = hip if hip is not None else gpu
    if index is None:
        raise SnapshotError(f"amd-smi: no GPU or HIP-ID for {values.get('BDF', '?')}")
    usage, cap = _amdsmi_power(values.get("Power-Usage", ""))
    used, total = units.used_total_bytes(values.get("Mem-Usage"), "amd-smi Mem-Usage")
    uec = units.integer(values.get("UEC"), "amd-smi UEC")
    faults = ecc_faults(uec)
    ids = {"amd_smi_gpu": str(gpu)} if gpu is not None else {}
    for label, key in (("OAM-ID", "oam_id"), ("Partition-Mode", "partition")):
        if not units.is_missing(values.get(label)):
            ids[key] = values[label]
    return ChipReading(
        vendor=VENDOR,
        model=model_name(values.get("GPU-Name", "")),
        index=index,
        bus_id=canonical_bus_id(values.get("BDF", "")),
        memory_total_bytes=total,
        memory_used_bytes=used,
        power_w=usage,
        power_limit_w=cap,
        temperature_c=units.celsius(values.get("Temp"), "amd-smi Temp"),
        utilization_pct=units.percent(values.get("GFX-Uti"), "amd-smi GFX-Uti"),
        healthy=not faults,  # the table's only fault is uncorrectable ECC, a critical one
        faults=faults,
        ecc_uncorrected_total=uec,
        ids=ids,
    )


def parse_amdsmi_table(text: str) -> tuple[str, list[ChipReading]]:
    """(source, chips) from plain `amd-smi`; NotASummaryTable without its header."""
    rows = boxed_rows(text)
    header = next(
        (
            i
            for i in range(len(rows) - 1)
            if rows[i][0].startswith("BDF") and rows[i + 1][0].startswith("GPU")
        ),
        None,
    )
    if header is None:
        raise NotASummaryTable("no 'BDF GPU-Name' / 'GPU HIP-ID ...' header rows")
    first = [_AMDSMI_LABELS.findall(c) for c in rows[header]]
    second = [_AMDSMI_LABELS.findall(c) for c in rows[header + 1]]
    chips, pending = [], None
    for cells in rows[header + 2 :]:
        if cells[0].startswith("Processes:"):
            break
        if _AMDSMI_VALUES["BDF"].match(cells[0]):
            pending = _amdsmi_row(first, cells)
        elif pending is not None and re.match(r"\d+\b", cells[0]):
            pending.update(_amdsmi_row(second, cells))
            chips.append(_amdsmi_chip(pending))
            pending = None
    version = _AMDSMI_VERSION.search(text)
    return (f"amd-smi {version.group(1)}" if version else "amd-smi"), chips


# --------------------------------------------------------------------------- rocm-smi concise
_ROCM_LABELS = re.compile(
    r"\[Model : Revision\]|SCLK OD|MCLK OD|Device|Node|IDs|Temp|Power|AvgPwr|Partitions|SCLK|MCLK"
    r"|PCLK|Fan|Perf|PwrCap|VRAM%|GPU%|GPU|Mode|\(.*?\)|\S+"
)
_ROCM_VALUES = {
    "Device": re.compile(r"\d+"),
    "GPU": re.compile(r"\d+"),
    "Node": re.compile(r"\d+"),
    "IDs": re.compile(r"0x[0-9a-fA-F]+,\s*\S+"),
    "[Model : Revision]": re.compile(r"\[[^\]]*\]"),
    "Temp": re.compile(rf"(?:{_NA}|-?\d+(?:\.\d+)?\s*(?:°\s*C|℃|c|C)?)"),
    "Power": re.compile(rf"(?:{_NA}|\d+(?:\.\d+)?\s*W)"),
    "AvgPwr": re.compile(rf"(?:{_NA}|\d+(?:\.\d+)?\s*W)"),
    "PwrCap": re.compile(rf"(?:{_NA}|\d+(?:\.\d+)?\s*W)"),
    "Partitions": re.compile(r"(?:N/A|[A-Za-z0-9]+)(?:,\s*(?:N/A|[A-Za-z0-9]+))*"),
    "SCLK": re.compile(rf"(?:{_NA}|None|\d+(?:\.\d+)?\s*Mhz)", re.I),
    "MCLK": re.compile(rf"(?:{_NA}|None|\d+(?:\.\d+)?\s*Mhz)", re.I),
    "PCLK": re.compile(r"(?:N/A|[\d.]+GB(?:,\s*x\d+)?)"),
    "Fan": _PERCENT,
    "SCLK OD": _PERCENT,
    "MCLK OD": _PERCENT,
    "VRAM%": _PERCENT,
    "GPU%": _PERCENT,
}


def _rocm_header(lines: list[str]) -> int | None:
    for i, line in enumerate(lines):
        words = line.split()
        if words[:1] in (["Device"], ["GPU"]) and "Temp" in line and ("PwrCap" in line or "Perf" in line):
            return i
    return None


def _rocm_chip(values: dict[str, str], name_line: str) -> ChipReading:
    index = units.integer(values.get("Device") or values.get("GPU"), "rocm-smi Device")
    assert index is not None
    model = model_name(name_line) if name_line else ""
    if not model and values.get("IDs"):
        model = model_from_device_id(values["IDs"].split(",")[0])
    if not model and values.get("[Model : Revision]"):
        model = model_from_device_id(values["[Model : Revision]"].strip("[]").split(":")[0].strip())
    power_text = values.get("Power") or values.get("AvgPwr")
    return ChipReading(
        vendor=VENDOR,
        model=model,
        index=index,
        power_w=units.watts(power_text, "rocm-smi Power"),
        power_limit_w=units.watts(values.get("PwrCap"), "rocm-smi PwrCap") or None,
        temperature_c=units.celsius(values.get("Temp"), "rocm-smi Temp"),
        utilization_pct=units.percent(values.get("GPU%"), "rocm-smi GPU%"),
        ids={"rocm_smi_device": str(index)},
    )


def parse_rocmsmi_table(text: str) -> tuple[str, list[ChipReading]]:
    """(source, chips) from plain `rocm-smi` (its Concise Info table)."""
    lines = [line.rstrip() for line in text.splitlines()]
    header = _rocm_header(lines)
    if header is None:
        raise NotASummaryTable("no rocm-smi concise header ('Device|GPU ... Temp ... PwrCap ...')")
    labels = [label for label in _ROCM_LABELS.findall(lines[header]) if not label.startswith("(")]
    chips: list[ChipReading] = []
    body = [line for line in lines[header + 1 :] if line.strip() and not re.fullmatch(r"[=\-\s]*", line)]
    i = 0
    while i < len(body):
        line = body[i]
        if "End of ROCm SMI Log" in line:
            break
        if not re.match(r"\d+\s", line):
            i += 1  # the header's second line ("Name (20 chars) (Junction) ...") and the like
            continue
        values = read_labelled(labels, line, _ROCM_VALUES, strict=False, source="rocm-smi")
        name = ""
        if i + 1 < len(body) and body[i + 1][:1].isspace() and not re.match(r"\s*\d+\s", body[i + 1]):
            name = body[i + 1].strip()
            name = "" if name.startswith("Name") else name
            i += 1
        chips.append(_rocm_chip(values, name))
        i += 1
    return "rocm-smi", chips


# --------------------------------------------------------------------------- JSON enrichment
def load_json(text: str, command: str) -> Any:
    """amd-smi can print a warning line before its JSON; skip to the first bracket."""
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        raise SnapshotError(f"{command}: expected JSON, got {text.strip()[:80]!r}")
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError as e:
        raise SnapshotError(f"{command}: invalid JSON ({e.msg} at {e.pos})") from None


def gpu_entries(document: Any) -> Iterator[dict[str, Any]]:
    """amd-smi 6.x prints a list of per-GPU objects; 7.x wraps it as {"gpu_data": [...]}."""
    if isinstance(document, dict):
        lists = [v for v in document.values() if isinstance(v, list)]
        document = lists[0] if lists else []
    for entry in document if isinstance(document, list) else []:
        if isinstance(entry, dict) and "gpu" in entry:
            yield entry


def json_number(value: Any) -> float | None:
    """amd-smi JSON numbers come bare or as {"value": 750, "unit": "W"}; N/A is None."""
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return units.number(str(value).split()[0] if str(value).strip() else None, "amd-smi JSON value")


def find_key(document: Any, *names: str) -> Any:
    """The first value under any of `names`, searched depth-first through nested objects."""
    if isinstance(document, dict):
        for name in names:
            if name in document:
                return document[name]
        for value in document.values():
            found = find_key(value, *names)
            if found is not None:
                return found
    return None


def _text(value: Any) -> str:
    return "" if value is None or units.is_missing(str(value)) else str(value).strip()


def with_amdsmi_json(
    chip: ChipReading, listing: dict[str, Any] | None, static: dict[str, Any] | None
) -> ChipReading:
    """Refine a table row with `amd-smi list --json` (UUID) and `amd-smi static --json` (serials,
    power-cap range). Keys follow the amd-smi text output (ASIC/BUS/BOARD/LIMIT sections); the
    limit key names moved between releases, so several spellings are accepted [S]."""
    uuid = _text(find_key(listing, "uuid")) if listing else ""
    ids = dict(chip.ids)
    updates: dict[str, Any] = {}
    if static:
        board_serial = _text(find_key(static.get("board"), "product_serial"))
        asic_serial = _text(find_key(static.get("asic"), "asic_serial"))
        if board_serial:
            ids["board_serial"] = board_serial
        if asic_serial:
            ids["serial"] = asic_serial
        limit = static.get("limit")
        low = json_number(find_key(limit, "min_power_limit", "min_power"))
        high = json_number(find_key(limit, "max_power_limit", "max_power"))
        updates.update(power_limit_min_w=low, power_limit_max_w=high or None)
        name = _text(find_key(static.get("asic"), "market_name"))
        if name and not chip.model:
            updates["model"] = model_name(name)
    return replace(chip, uuid=uuid or chip.uuid or ids.get("serial", ""), ids=ids, **updates)


def with_rocmsmi_json(chip: ChipReading, card: dict[str, Any] | None) -> ChipReading:
    """`rocm-smi --showbus --showserial --showuniqueid --json`: {"card0": {"PCI Bus": ...}}.
    Keys as in published rocm-smi JSON (wandb/wandb#5449 [V-out]). `Serial Number` is the
    board's FRU serial (amdgpu sysfs serial_number), so both dies of an MI250X print it."""
    if not card:
        return chip
    serial = _text(card.get("Serial Number"))
    unique = _text(card.get("Unique ID"))
    ids = {
        **chip.ids,
        **({"board_serial": serial} if serial else {}),
        **({"unique_id": unique} if unique else {}),
    }
    bus = _text(card.get("PCI Bus"))
    return replace(chip, bus_id=canonical_bus_id(bus) if bus else chip.bus_id, uuid=unique or serial, ids=ids)
