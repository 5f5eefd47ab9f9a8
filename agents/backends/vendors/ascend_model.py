"""Huawei Ascend facts shared by the npu-smi and DCMI readers: names, health, boards, islands.

Both readers gather the same per-chip facts (`ChipFacts`) in the vendor's own terms and hand
them to `assemble`, so the two ways in cannot drift apart in how they name a model, decide
health, attribute a board's power or draw the HCCS islands. Facts and their sources are in
research §1 (../shared/research/domestic_devices.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agents.backends.vendors.faults import any_critical
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot, VendorFault

VENDOR = "ascend"
TOOLS = ("npu-smi",)
# npu-smi lives in /usr/local/bin [V research §1.1]; some driver packages also place it in
# /usr/local/sbin or the driver's tools directory [U], searched when PATH lacks it.
TOOL_DIRS = ("/usr/local/bin", "/usr/local/sbin", "/usr/local/Ascend/driver/tools")
LIBRARY_NAMES = ("libdcmi.so",)
# [V] research §1.1 (gpustack pydcmi search path; mind-cluster constants_v2.go).
LIBRARY_DIRS = ("/usr/local/Ascend/driver/lib64/driver", "/usr/local/dcmi", "/usr/local/Ascend/driver/lib64")
# The CANN runtime (torch_npu) reads it and takes LOGIC ids [V research §1.5]; ASCEND_VISIBLE_DEVICES
# is the container runtime's variable, not the one a worker process needs.
VISIBILITY_ENV = "ASCEND_RT_VISIBLE_DEVICES"
# Huawei Technologies' PCI vendor id [V: gpustack-runtime detector/ascend.py looks for vendor
# "0x19e5"; pci.ids]. Huawei NICs share it, so detection must also require an accelerator class.
PCI_VENDOR_IDS = (0x19E5,)
INTERCONNECT = "hccs"

# npu-smi's health strings, DCMI health 0..4 in order [V npu-smi source, research §1.2].
HEALTH_STATES = ("OK", "Warning", "Alarm", "Critical", "UNKNOWN")
# Corral's reading (decided here): Warning leaves the chip schedulable (its codes still flow as
# faults); Alarm and Critical take it out; UNKNOWN does too, since nothing vouches for it.
UNHEALTHY_STATES = frozenset({"Alarm", "Critical", "UNKNOWN"})

# Families by the name npu-smi prints, for the documented server topologies below.
_A1_NAMES = frozenset({"910A", "910B", "910PROA", "910PROB", "910PREMIUMA"})


@dataclass(frozen=True)
class ChipFacts:
    """One NPU chip (or A3 die) as a reader found it, units already normalised.

    `npu_id` is the card id (`npu-smi -i`), `chip_id` the chip on it (`-c`), `logic_id` the id
    ASCEND_RT_VISIBLE_DEVICES takes, `phy_id` the /dev/davinciN number where known. `power_w` is
    the chip's own reading; `assemble` attributes a board's power.
    """

    npu_id: int
    chip_id: int
    logic_id: int
    chip_name: str  # as the tool or library names it: "910B2C", "310P3", "Ascend910"
    health: str = "OK"  # one of HEALTH_STATES
    faults: tuple[VendorFault, ...] = ()
    phy_id: int | None = None
    bus_id: str = ""
    uuid: str = ""
    power_w: float | None = None
    temperature_c: float | None = None
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    lost: bool = False


def model_name(chip_name: str) -> str:
    """The model as reported: 910B2C -> Ascend 910B2C; "Ascend 310P3" stays as it is.

    A3 prints its dies as "Ascend910" [S research §1.2], which is reported as "Ascend 910C":
    earlier 910s print a suffixed name (910A, 910B, 910ProB) [U], so a bare 910 is the A3 part.
    """
    core = re.sub(r"^ascend[\s_-]*", "", chip_name.strip(), flags=re.IGNORECASE)
    if core.upper() == "910":
        core = "910C"
    return f"Ascend {core}" if core else "Ascend"


def health_state(text: str) -> str:
    """npu-smi's spelling of a health state; anything else (a number, garbage) is UNKNOWN."""
    wanted = text.strip().casefold()
    return next((s for s in HEALTH_STATES if s.casefold() == wanted), "UNKNOWN")


def health_from_dcmi(value: int) -> str:
    return HEALTH_STATES[value] if 0 <= value < len(HEALTH_STATES) else "UNKNOWN"


def is_healthy(state: str, faults: Iterable[VendorFault], lost: bool = False) -> bool:
    """Down when lost, when the health state is Alarm/Critical/UNKNOWN, or when any fault's class
    in faults/ascend.yaml is critical (RestartNPU, SeparateNPU, FreeRestartNPU, ...)."""
    return not lost and state not in UNHEALTHY_STATES and not any_critical(VENDOR, faults)


def effective_health(state: str, codes: Sequence[int]) -> str:
    """npu-smi downgrades Warning/Alarm/Critical to OK when the chip reports no error code [V
    npu-smi source `handle_health_state`]; the DCMI reader does the same so both paths agree."""
    return "OK" if not codes and state in ("Warning", "Alarm", "Critical") else state


def assemble(
    facts: Sequence[ChipFacts],
    source: str,
    board_power: Mapping[int, float | None] | None = None,
    islands: Sequence[Sequence[int]] | None = None,
) -> NodeSnapshot:
    """The snapshot for `facts`, one ChipReading per chip, ordered by logic id.

    Chips sharing an npu_id are one board (Atlas 300I Duo: two 310P3; A3: two dies): they share
    `board_id` "npu<N>" and the board's power sits on its lowest chip id only. The board's power
    is the first reading its chips show (A3 prints it on die 0 and `-` on die 1), else
    `board_power[npu_id]` (the MCU's reading on 310P, whose chips answer NOT_SUPPORT).
    `islands` (groups of logic ids) come from the library's topology where it has one, else
    from the documented server topology (`documented_islands`).
    """
    by_board: dict[int, list[ChipFacts]] = {}
    for chip in facts:
        by_board.setdefault(chip.npu_id, []).append(chip)
    readings = []
    for npu_id, chips in by_board.items():
        chips.sort(key=lambda c: c.chip_id)
        shown = next((c.power_w for c in chips if c.power_w is not None), None)
        power = shown if shown is not None else (board_power or {}).get(npu_id)
        board_id = f"npu{npu_id}" if len(chips) > 1 else ""
        for position, chip in enumerate(chips):
            readings.append(_reading(chip, board_id, power if position == 0 else None))
    readings.sort(key=lambda r: r.index)
    groups = islands if islands is not None else documented_islands(readings)
    return NodeSnapshot(
        vendor=VENDOR,
        source=source,
        devices=tuple(readings),
        interconnect=INTERCONNECT,
        islands=tuple(tuple(sorted(g)) for g in groups if len(g) > 1),
    )


def _reading(chip: ChipFacts, board_id: str, power_w: float | None) -> ChipReading:
    ids = {"npu_id": str(chip.npu_id), "chip_id": str(chip.chip_id)}
    if chip.phy_id is not None:
        ids["phy_id"] = str(chip.phy_id)
    return ChipReading(
        vendor=VENDOR,
        model=model_name(chip.chip_name),
        index=chip.logic_id,
        uuid=chip.uuid,
        bus_id=chip.bus_id,
        board_id=board_id,
        memory_total_bytes=chip.memory_total_bytes,
        memory_used_bytes=chip.memory_used_bytes,
        power_w=power_w,
        # No per-chip cap can be read or set through DCMI or npu-smi [V research §1.3].
        power_limit_settable=False,
        temperature_c=chip.temperature_c,
        utilization_pct=chip.utilization_pct,
        healthy=is_healthy(chip.health, chip.faults, chip.lost),
        faults=chip.faults,
        lost=chip.lost,
        ids=ids,
    )


def documented_islands(readings: Sequence[ChipReading]) -> list[list[int]]:
    """HCCS islands from the documented server topologies, for readers with no topology query.

    - 910B family (Atlas 800T A2): all 8 NPUs of a server on HCCS [U, research §1.7, widely
      stated]; the 16-NPU Atlas 200T A2 Box16 is two 8-NPU rings [V MindCluster affinity docs].
      So NPU ids 0-7 are one island and 8-15 another.
    - 910C (A3): 8 dual-die NPUs per server, all on HCCS [V MindCluster A3 docs]; both dies of an
      NPU (paired over SIO into a HiAM module) are in it too, their pairing shows as board_id.
    - 910 A1 names (910A, 910B, 910ProB; Atlas 800 9000): two 4-NPU rings, 0-3 and 4-7 [V].
      A bare "910B" is what pre-A2 drivers (npu-smi 22.x) print [U]; A2 prints the bin (910B3).
    - 310P and anything else: PCIe only, no island.
    NPU ids are physical card slots (a container's npu-smi keeps them, e.g. 0, 1, 15 [V-out]),
    so chips are grouped by NPU id, never by their position in a possibly partial view.
    """
    groups: dict[tuple[str, int], list[int]] = {}
    for chip in readings:
        ring = _ring_size(chip.model)
        npu_id = chip.ids.get("npu_id", "")
        if ring and npu_id.isdigit():
            groups.setdefault((chip.model, int(npu_id) // ring), []).append(chip.index)
    return [sorted(g) for _, g in sorted(groups.items())]


def _ring_size(model: str) -> int:
    core = model.removeprefix("Ascend ").upper()
    if core in _A1_NAMES:
        return 4
    if core.startswith("910B") or core == "910C":
        return 8
    return 0
