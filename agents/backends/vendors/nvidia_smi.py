"""Plain `nvidia-smi` output, for `corral agent inventory --parse nvidia FILE`.

The agent itself reads NVIDIA devices through NVML (agents/backends/nvml.py); this parser only
serves support requests, where a user attaches the summary table. It reads the table by its
labels with the same banded-table reader as ixsmi (an nvidia-smi clone), so column drift between
driver releases does not break it.
"""

from __future__ import annotations

from agents.backends.vendors import units
from agents.backends.vendors.smi_table import parse_banded_table, pci_bus_id, pick
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot, NotASummaryTable, first_line

VENDOR = "nvidia"
TOOLS = ("nvidia-smi",)


def parse_summary(text: str) -> NodeSnapshot:
    table = parse_banded_table(text, header_labels=("GPU", "Name", "Bus-Id"))
    if table is None or "nvidia-smi" not in " ".join(table.preamble).casefold():
        seen = first_line(text, limit=100, empty="empty text")
        raise NotASummaryTable(
            f"not an nvidia-smi summary table: expected the NVIDIA-SMI banner and a GPU / Name / Bus-Id"
            f" header; saw {seen}"
        )
    chips = tuple(sorted((_chip(row) for row in table.rows), key=lambda c: c.index))
    return NodeSnapshot(VENDOR, _version(table.preamble), chips)


def _version(preamble: tuple[str, ...]) -> str:
    for line in preamble:
        words = line.replace("|", " ").split()
        for i, word in enumerate(words):
            if word.casefold() == "nvidia-smi" and i + 1 < len(words):
                return f"nvidia-smi {words[i + 1]}"
    return "nvidia-smi"


def _chip(row: dict[str, str]) -> ChipReading:
    index = units.integer(pick(row, "gpu"), "GPU")
    if index is None:
        raise NotASummaryTable(f"not an nvidia-smi summary table: a device row without a GPU index: {row}")
    usage, cap = units.split_pair(pick(row, "pwr:usage/cap") or "")
    used, total = units.used_total_bytes(pick(row, "memory-usage"), "Memory-Usage")
    ecc = pick(row, "volatile uncorr. ecc")
    uncorrected = None if ecc is None or units.is_missing(ecc) else units.integer(ecc, "Volatile Uncorr. ECC")
    name = (pick(row, "name") or "").removeprefix("NVIDIA ").strip()
    return ChipReading(
        vendor=VENDOR,
        model=name,
        index=index,
        bus_id=pci_bus_id(pick(row, "bus-id")),
        memory_total_bytes=total,
        memory_used_bytes=used,
        power_w=units.watts(usage, "Pwr:Usage"),
        power_limit_w=units.watts(cap, "Pwr:Cap"),
        temperature_c=units.celsius(pick(row, "temp"), "Temp"),
        utilization_pct=units.percent(pick(row, "gpu-util"), "GPU-Util"),
        healthy=not (uncorrected or 0) > 0,
        ecc_uncorrected_total=uncorrected,
    )
