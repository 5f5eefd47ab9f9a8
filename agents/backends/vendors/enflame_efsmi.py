"""Reading `efsmi` text: the summary table (every layout from 1.2 to 1.7) and the `efsmi -q`
per-device report, into chip readings for agents/backends/vendors/enflame.py.

The table is two rows per device under two header rows; each cell is read by the labels its
header cell carries (`TEMP Dpm Pwr(Usage/Cap)`, later `TEMP Lpm Pwr(Usage/Cap)`), never by column
position, so the 1.2 (`39 C`, `105W  300W`), 1.4 (`-`), 1.6/1.7 (`34℃`, `68W / 300W`, `N/A`)
spellings all land in the same fields. Units: W, MiB, °C, % as printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from agents.backends.vendors import units
from agents.backends.vendors.boxed_table import boxed_rows, read_labelled_row
from agents.backends.vendors.faults import any_critical
from agents.backends.vendors.smi_table import canonical_bus_id
from agents.backends.vendors.snapshot import (
    ChipReading,
    NodeSnapshot,
    NotASummaryTable,
    SnapshotError,
    VendorFault,
    first_line,
    share_board_power,
)

VENDOR = "enflame"
INTERCONNECT = "gcu-lare"
# Corral's fault numbers (faults/enflame.yaml explains the ranges).
FAULT_HEALTH_FALSE = 1
FAULT_RMA = 2
FAULT_DBE = 3
FAULT_POWER_CABLE = 4
FAULT_EFML_RETURN = 1000  # + efmlReturn_v1_t
FAULT_RESET_SOURCE = 2000  # + efmlResetSrc_t


# --------------------------------------------------------------------------- shared helpers
def model_name(raw: str) -> str:
    """`Enflame S60G` and `S60G` are the same part; the catalog names it `S60G`."""
    return re.sub(r"^\s*enflame\s+", "", raw.strip(), flags=re.IGNORECASE).strip()


def _plausible_serial(serial: str) -> bool:
    """Published captures redact serials (`xxx`); such placeholders name no card."""
    return len(serial) >= 6 and len(set(serial.casefold())) > 1


def group_boards(chips: Sequence[ChipReading]) -> tuple[ChipReading, ...]:
    """Devices that report one serial number are one physical card: the two dies of a card in
    EFML's dual MCM mode (efmlMcmMode_t) or SR-IOV functions of one card [U]. They share a
    board_id and the card's power is reported once, on the first of them."""
    by_serial: dict[str, list[int]] = {}
    for i, chip in enumerate(chips):
        serial = chip.ids.get("serial", "")
        if _plausible_serial(serial):
            by_serial.setdefault(serial, []).append(i)
    return share_board_power(chips, by_serial)


# --------------------------------------------------------------------------- efsmi summary table
# Header labels as efsmi prints them, longest first so `Boot FW VER` wins over `FW VER`.
_LABELS = (
    "Boot FW VER", "FW VER", "Pwr(Usage/Cap)", "GCU Virt", "BUS-ID",
    "DUsed", "NAME", "TEMP", "DEV", "ECC", "Dpm", "Lpm", "Mem", "SN",
)  # fmt: skip
_LABEL_RE = re.compile("|".join(re.escape(label) for label in _LABELS) + r"|\S+")
_MISSING_RE = r"N/?A|-+"
# What a value looks like, for labels that are not last in their cell (the last takes the rest).
_VALUE_RE = {
    "DEV": re.compile(r"\d+(?=\s|$)"),
    "TEMP": re.compile(rf"(?:{_MISSING_RE}|[-+]?\d+(?:\.\d+)?\s*(?:℃|°\s*C|C(?![A-Za-z]))?)"),
    "BUS-ID": re.compile(r"[0-9A-Fa-f]+(?::[0-9A-Fa-f]+)+(?:\.[0-7])?"),
}
_POWER_PAIR_RE = re.compile(rf"^(?P<usage>{_MISSING_RE}|\S+?)\s*(?:/\s*|\s+)(?P<cap>{_MISSING_RE}|\S+)$")
_VERSION_RE = re.compile(r"EFSMI\s*:?\s*V?(\d+(?:\.\d+)+)", re.IGNORECASE)


def _labels(cells: list[str]) -> list[list[str]]:
    return [_LABEL_RE.findall(cell) for cell in cells]


def _read_row(template: list[list[str]], cells: list[str]) -> dict[str, str]:
    # Strict: a row whose values do not look like the labels' is not a device's first row.
    return read_labelled_row(template, cells, _VALUE_RE, strict=True, source="efsmi")


def _try_read_row(template: list[list[str]], cells: list[str]) -> dict[str, str] | None:
    try:
        values = _read_row(template, cells)
    except SnapshotError:
        return None
    return values if "DEV" in values and "BUS-ID" in values else None


def _power(text: str) -> tuple[float | None, float | None]:
    """`105W  300W`, `68W / 300W`, `N/A`, `-`: (usage, cap) in W."""
    if units.is_missing(text):
        return None, None
    m = _POWER_PAIR_RE.match(text.strip())
    if not m:
        return units.watts(text, "efsmi Pwr(Usage/Cap)"), None
    return units.watts(m["usage"], "efsmi power usage"), units.watts(m["cap"], "efsmi power cap")


def _chip_from_row(values: dict[str, str]) -> ChipReading:
    usage, cap = _power(values.get("Pwr(Usage/Cap)", ""))
    serial = values.get("SN", "")
    serial = "" if units.is_missing(serial) else serial
    index = units.integer(values.get("DEV"), "efsmi DEV")
    assert index is not None  # the row was chosen because DEV is a number
    return ChipReading(
        vendor=VENDOR,
        model=model_name(values.get("NAME", "")),
        index=index,
        uuid=serial,  # the table shows no UUID; `efsmi -q` does
        bus_id=canonical_bus_id(values.get("BUS-ID", "")),
        memory_total_bytes=units.size_bytes(values.get("Mem"), "efsmi Mem"),
        power_w=usage,
        power_limit_w=cap,
        temperature_c=units.celsius(values.get("TEMP"), "efsmi TEMP"),
        utilization_pct=units.percent(values.get("DUsed"), "efsmi DUsed"),
        ids={"serial": serial} if serial else {},
    )


def _refuse(text: str, why: str) -> NotASummaryTable:
    return NotASummaryTable(
        "not an efsmi summary table: expected the 'Enflame System Management Interface' table "
        f"with a 'DEV NAME ...' / 'TEMP Dpm|Lpm Pwr(Usage/Cap) ...' header; {why} ({first_line(text)})"
    )


def _find_header(rows: list[list[str]]) -> int | None:
    for i in range(len(rows) - 1):
        first, second = rows[i][0].split(), rows[i + 1][0].split()
        if first[:1] == ["DEV"] and second[:1] == ["TEMP"]:
            return i
    return None


def parse_summary(text: str) -> NodeSnapshot:
    """Plain `efsmi` output (any of the 1.2 / 1.4 / 1.6 / 1.7 layouts) as a snapshot."""
    source, chips = parse_table(text)
    return NodeSnapshot(VENDOR, source, group_boards(chips), INTERCONNECT)


def parse_table(text: str) -> tuple[str, list[ChipReading]]:
    """(source, chips) of the efsmi table, before cards are grouped."""
    if not text.strip():
        raise _refuse(text, "the text is empty")
    if re.search(r"^\s*DEV ID\s+\d+", text, re.MULTILINE):
        raise _refuse(text, "this is `efsmi -q` detail output, not the summary table")
    rows = boxed_rows(text)
    header = _find_header(rows)
    if header is None or not re.search(r"Enflame|EFSMI", text, re.IGNORECASE):
        raise _refuse(text, "no efsmi banner and DEV/TEMP header rows were found")
    first_row, second_row = _labels(rows[header]), _labels(rows[header + 1])
    devices: list[dict[str, str]] = []
    expecting_second = False
    for cells in rows[header + 2 :]:
        # A device is two rows; the first is the one that reads as DEV/NAME/.../BUS-ID.
        first = _try_read_row(first_row, cells)
        if first is not None:
            devices.append(first)
            expecting_second = True
        elif expecting_second:
            devices[-1].update(_read_row(second_row, cells))
            expecting_second = False
    chips = [_chip_from_row(values) for values in devices]
    version = _VERSION_RE.search(text)
    return (f"efsmi {version.group(1)}" if version else "efsmi"), chips


# --------------------------------------------------------------------------- efsmi -q report
@dataclass
class DeviceReport:
    """One `DEV ID n` block of `efsmi -q`: values keyed by (section, key)."""

    index: int
    values: dict[tuple[str, str], str] = field(default_factory=dict)

    def get(self, key: str, section: str | None = None) -> str | None:
        for (sec, k), value in self.values.items():
            if k.casefold() == key.casefold() and (section is None or sec.casefold() == section.casefold()):
                return value
        return None

    def section(self, section: str) -> dict[str, str]:
        return {k: v for (sec, k), v in self.values.items() if sec.casefold() == section.casefold()}


_KEY_VALUE_RE = re.compile(r"^\s*([^:]+?)\s*:\s?(.*)$")


def parse_detail(text: str) -> dict[int, DeviceReport]:
    """`efsmi -q`: one report per `DEV ID n` block (section lines carry no colon)."""
    reports: dict[int, DeviceReport] = {}
    current: DeviceReport | None = None
    section = ""
    for line in text.splitlines():
        if not line.strip() or line.strip() == "...":
            continue
        block = re.match(r"^\s*DEV ID\s+(\d+)\s*$", line)
        if block:
            current = reports.setdefault(int(block.group(1)), DeviceReport(int(block.group(1))))
            section = ""
            continue
        if current is None:
            continue
        kv = _KEY_VALUE_RE.match(line)
        if kv:
            current.values[(section, kv.group(1).strip())] = kv.group(2).strip()
        else:
            section = line.strip()
    return reports


# `Error Details` keys, matched loosely (the DRAM/HBM label is elided in the recorded sample),
# to efmlResetSrc_t values.
_RESET_SOURCE_KEYS = (
    (re.compile(r"user", re.I), 0),
    (re.compile(r"internal", re.I), 1),
    (re.compile(r"\bsip\b", re.I), 2),
    (re.compile(r"\bbus\b", re.I), 3),
    (re.compile(r"\bfw\b|firmware", re.I), 4),
    (re.compile(r"\bdte\b", re.I), 5),
    (re.compile(r"dram|hbm", re.I), 6),
    (re.compile(r"pcie", re.I), 7),
    (re.compile(r"unknown", re.I), 999),
)


def _is_true(text: str | None) -> bool | None:
    if units.is_missing(text):
        return None
    assert text is not None
    return text.strip().casefold() in {"true", "yes", "1", "enable", "enabled"}


def report_faults(report: DeviceReport) -> tuple[tuple[VendorFault, ...], int | None]:
    """The faults one `efsmi -q` block shows, and its DBE count."""
    faults: list[VendorFault] = []
    if _is_true(report.get("Health", "Device Info")) is False:
        faults.append(VendorFault(FAULT_HEALTH_FALSE, "Health : False"))
    if _is_true(report.get("Flags", "RMA Info")):
        faults.append(VendorFault(FAULT_RMA, "RMA Info / Flags : True"))
    dbe = units.integer(report.get("Total DBE", "RMA Info"), "efsmi -q Total DBE")
    if dbe:
        faults.append(VendorFault(FAULT_DBE, f"RMA Info / Total DBE : {dbe}"))
    cable = report.get("Status", "Power Cable")
    if not units.is_missing(cable) and cable is not None and cable.casefold() != "normal":
        faults.append(VendorFault(FAULT_POWER_CABLE, f"Power Cable / Status : {cable}"))
    for key, value in report.section("Error Details").items():
        count = units.integer(value, f"efsmi -q {key}")
        source = next((src for pattern, src in _RESET_SOURCE_KEYS if pattern.search(key)), None)
        if count and source is not None:
            faults.append(VendorFault(FAULT_RESET_SOURCE + source, f"Error Details / {key} : {count}"))
    return tuple(faults), dbe


def _report_memory(report: DeviceReport) -> tuple[int | None, int | None]:
    """(total, used) bytes: new drivers print Total/Used Size, older ones Mem Size/Mem Usage."""
    total = units.size_bytes(report.get("Total Size") or report.get("Mem Size"), "efsmi -q memory size")
    used_text = report.get("Used Size") or report.get("Mem Usage")
    if used_text is not None and used_text.strip().endswith("%"):
        share = units.percent(used_text, "efsmi -q Mem Usage")
        return total, None if share is None or total is None else int(total * share / 100)
    return total, units.size_bytes(used_text, "efsmi -q memory used")


def _report_bus_id(report: DeviceReport) -> str | None:
    parts = [report.get(k, "PCIe Info") for k in ("Domain", "Bus", "Dev", "Func")]
    if any(units.is_missing(p) for p in parts):
        return None
    domain, bus, dev, func = (p or "" for p in parts)
    return canonical_bus_id(f"{domain}:{bus}:{dev}.{func}")


def _first(*values: str | None) -> str | None:
    return next((v for v in values if not units.is_missing(v)), None)


def with_report(chip: ChipReading, report: DeviceReport | None) -> ChipReading:
    """The summary row refined by its `efsmi -q` block (which knows health and the UUID)."""
    if report is None:
        return chip
    faults, dbe = report_faults(report)
    total, used = _report_memory(report)
    uuid = _first(report.get("Dev UUID"), chip.uuid)
    serial = _first(report.get("Dev SN"), chip.ids.get("serial"))
    power = units.watts(report.get("Cur Power", "Power Info"), "efsmi -q Cur Power")
    limit = units.watts(report.get("Power Capa", "Power Info"), "efsmi -q Power Capa")
    temperature = units.celsius(report.get("GCU Temp"), "efsmi -q GCU Temp")
    usage = units.percent(report.get("GCU Usage"), "efsmi -q GCU Usage")
    name = report.get("Dev Name", "Device Info")
    return replace(
        chip,
        model=model_name(name) if name and not units.is_missing(name) else chip.model,
        uuid=uuid or "",
        bus_id=_report_bus_id(report) or chip.bus_id,
        memory_total_bytes=total if total is not None else chip.memory_total_bytes,
        memory_used_bytes=used if used is not None else chip.memory_used_bytes,
        power_w=power if power is not None else chip.power_w,
        power_limit_w=limit if limit is not None else chip.power_limit_w,
        temperature_c=temperature if temperature is not None else chip.temperature_c,
        utilization_pct=usage if usage is not None else chip.utilization_pct,
        faults=faults,
        healthy=not any_critical(VENDOR, faults),
        ecc_uncorrected_total=dbe,
        ids={**chip.ids, **({"serial": serial} if serial else {})},
    )
