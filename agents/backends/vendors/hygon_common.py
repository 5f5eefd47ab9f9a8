"""What both Hygon readers share: the facts about DCUs, and one assembly step.

The CLI reader (hy-smi / rocm-smi) and the library reader (ROCm-SMI, librocm_smi64.so) each
fill a `RawChip` per DCU, converted to watts, bytes, °C and %; `assemble` decides health and
islands the same way for both.

Facts (research §3, ../shared/research/domestic_devices.md):
- one chip per board for Z100/K100/K100-AI [S], so no board grouping;
- health: a DCU is unhealthy once any RAS block counts an uncorrectable ECC error [V: GPUStack's
  Hygon detector]; each such block is a fault (faults/hygon.yaml, code = rsmi_gpu_block_t bit);
- islands: unknown [U]; only the library can see them, as DCUs joined by an XGMI (HSL) io-link
  (rsmi_topo_get_link_type); the CLI reports none.
- hy-smi names the K100-AI `K100_AI` [V-out]; the catalog writes `K100-AI`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agents.backends.vendors.faults import any_critical
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot, VendorFault, link_islands

VENDOR = "hygon"
INTERCONNECT = "xgmi"
LIBRARY_NAMES = ("librocm_smi64.so", "librocm_smi64.so.1")
# /opt/hyhal/lib holds librocm_smi64 and libhydmi [V research §3.1]; DTK installs also carry it
# under /opt/dtk (GPUStack's search list [V]).
LIBRARY_DIRS = ("/opt/hyhal/lib", "/opt/dtk/rocm_smi/lib", "/opt/dtk/lib", "/opt/rocm/lib")

BLOCK_NOT_REPORTED = 0
RAS_BLOCKS = {
    "UMC": 0x1, "SDMA": 0x2, "GFX": 0x4, "MMHUB": 0x8, "ATHUB": 0x10, "PCIE_BIF": 0x20, "HDP": 0x40,
    "XGMI_WAFL": 0x80, "DF": 0x100, "SMN": 0x200, "SEM": 0x400, "MP0": 0x800, "MP1": 0x1000, "FUSE": 0x2000,
}  # fmt: skip
_BLOCK_NAMES = {bit: name for name, bit in RAS_BLOCKS.items()}


@dataclass
class RawChip:
    index: int
    model: str
    uuid: str = ""  # the serial number: ROCm-SMI's unique id is not what hy-smi prints
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
    ecc_corrected_total: int | None = None
    ecc_uncorrected_total: int | None = None
    # Uncorrectable counts per RAS block bit; BLOCK_NOT_REPORTED for a total without a block.
    uncorrectable_by_block: dict[int, int] = field(default_factory=dict)


def normalise_model(name: str) -> str:
    """`K100_AI` -> `K100-AI`; a `DCU ` or `Hygon ` prefix is dropped."""
    cleaned = name.strip().replace("_", "-")
    for prefix in ("Hygon ", "HYGON ", "DCU ", "HCU "):
        cleaned = cleaned.removeprefix(prefix)
    return cleaned


def block_fault(bit: int) -> VendorFault:
    name = _BLOCK_NAMES.get(bit, "a block not named")
    return VendorFault(bit, f"uncorrectable ECC errors in {name}")


def _faults(chip: RawChip) -> list[VendorFault]:
    blocks = {b for b, n in chip.uncorrectable_by_block.items() if n > 0}
    if not blocks and chip.ecc_uncorrected_total:
        blocks = {BLOCK_NOT_REPORTED}
    return [block_fault(b) for b in sorted(blocks)]


def assemble(chips: Sequence[RawChip], source: str, links: Iterable[tuple[int, int]] = ()) -> NodeSnapshot:
    readings = []
    for c in sorted(chips, key=lambda c: c.index):
        faults = _faults(c)
        readings.append(
            ChipReading(
                vendor=VENDOR, model=c.model, index=c.index, uuid=c.uuid, bus_id=c.bus_id,
                memory_total_bytes=c.memory_total_bytes, memory_used_bytes=c.memory_used_bytes,
                power_w=c.power_w, power_limit_w=c.power_limit_w, power_limit_min_w=c.power_limit_min_w,
                power_limit_max_w=c.power_limit_max_w, power_limit_default_w=c.power_limit_default_w,
                power_limit_settable=c.power_limit_settable, temperature_c=c.temperature_c,
                utilization_pct=c.utilization_pct,
                healthy=not any_critical(VENDOR, faults), faults=tuple(faults),
                ecc_corrected_total=c.ecc_corrected_total, ecc_uncorrected_total=c.ecc_uncorrected_total,
            )
        )  # fmt: skip
    return NodeSnapshot(VENDOR, source, tuple(readings), INTERCONNECT, link_islands(links))
