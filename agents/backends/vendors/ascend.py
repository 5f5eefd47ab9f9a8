"""Huawei Ascend (910B family, 310P3, 910C/A3): npu-smi and DCMI readers behind one snapshot.

- `parse_summary(text)`: a saved plain `npu-smi info` (what a user attaches to a support request).
- `CliReader`: npu-smi as a subprocess (summary, `-m`, `-t health|board|power`).
- `LibraryReader`: libdcmi.so through ctypes.
- `render_tool_output(argv, snapshot)`: a simulated npu-smi answering CliReader's command lines.

Ids: a chip's `index` is its LOGIC id, what ASCEND_RT_VISIBLE_DEVICES takes; the card (NPU) id,
chip id and physical id stay in `ids`. Power is read-only on Ascend (no per-chip cap exists),
so `set_power_limit` raises PowerLimitError. The parts live in ascend_model (facts shared by
both readers), ascend_npusmi (text parsing), ascend_cli and ascend_dcmi.
"""

from __future__ import annotations

from agents.backends.vendors.ascend_cli import CliReader, render_tool_output
from agents.backends.vendors.ascend_dcmi import LibraryReader
from agents.backends.vendors.ascend_model import (
    INTERCONNECT,
    LIBRARY_DIRS,
    LIBRARY_NAMES,
    PCI_VENDOR_IDS,
    TOOL_DIRS,
    TOOLS,
    VENDOR,
    VISIBILITY_ENV,
    ChipFacts,
    assemble,
)
from agents.backends.vendors.ascend_npusmi import parse_table
from agents.backends.vendors.snapshot import NodeSnapshot

__all__ = [
    "INTERCONNECT",
    "LIBRARY_DIRS",
    "LIBRARY_NAMES",
    "PCI_VENDOR_IDS",
    "TOOLS",
    "TOOL_DIRS",
    "VENDOR",
    "VISIBILITY_ENV",
    "CliReader",
    "LibraryReader",
    "parse_summary",
    "render_tool_output",
]


def parse_summary(text: str) -> NodeSnapshot:
    """Every chip of a plain `npu-smi info` table; NotASummaryTable for any other text.

    The table has no logic ids (those need `npu-smi info -m`), so chips are numbered 0, 1, ...
    in table order, the order npu-smi enumerates logic ids in (an assumption: true of every
    capture seen, including containers that see a subset of cards). Health is the Health
    column alone; error codes need `npu-smi info -t health`. A card of several chips shows its
    power once (A3: die 0) or not at all (310P: `NA`, the MCU has it).
    """
    table = parse_table(text)
    facts = [
        ChipFacts(
            npu_id=chip.npu_id,
            chip_id=chip.chip_id,
            logic_id=position,
            chip_name=chip.name,
            health=chip.health,
            phy_id=chip.phy_id,
            bus_id=chip.bus_id,
            power_w=chip.power_w,
            temperature_c=chip.temperature_c,
            utilization_pct=chip.utilization_pct,
            memory_used_bytes=chip.memory_used_bytes,
            memory_total_bytes=chip.memory_total_bytes,
        )
        for position, chip in enumerate(table.chips)
    ]
    return assemble(facts, f"npu-smi {table.version}" if table.version else "npu-smi")
