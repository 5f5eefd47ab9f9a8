"""Hygon DCUs through ROCm-SMI (librocm_smi64.so from /opt/hyhal/lib), with ctypes.

Signatures are rocm_smi.h's, as Hygon ships it (vendored in Project-HAMi/dcu-dcgm, research
§3.1 [V]); units [V header]: power and power caps in microwatts, temperatures in millidegrees
Celsius, memory in bytes. The power cap is set with rsmi_dev_power_cap_set(dv, 0, µW) [V],
which needs root [U].

libhydmi (Hygon's DMI library, also in /opt/hyhal/lib) adds virtual-DCU and MIG management,
nothing this reader reports, so it is not loaded.
"""

from __future__ import annotations

import ctypes
import logging
from ctypes import byref, c_int32, c_int64, c_uint32, c_uint64
from typing import Any

from agents.backends.base import PowerLimitError
from agents.backends.vendors.hygon_common import (
    LIBRARY_DIRS,
    LIBRARY_NAMES,
    RAS_BLOCKS,
    VENDOR,
    RawChip,
    assemble,
    normalise_model,
)
from agents.backends.vendors.library import StatusCalls, load_library
from agents.backends.vendors.smi_table import bus_id_text
from agents.backends.vendors.snapshot import NodeSnapshot, check_power_range

log = logging.getLogger("corral.agent.hygon")

SUCCESS = 0
PERMISSION = 4
STATUS = {
    1: "invalid arguments", 2: "not supported", 3: "file error", 4: "permission denied",
    5: "out of resources", 6: "internal exception", 7: "input out of bounds", 8: "init error",
    9: "not yet implemented", 10: "not found", 11: "insufficient size", 12: "interrupted",
    13: "unexpected size", 14: "no data", 15: "unexpected data", 16: "busy",
}  # fmt: skip
VRAM = 0  # RSMI_MEM_TYPE_VRAM
TEMP_CURRENT = 0  # RSMI_TEMP_CURRENT
TEMP_SENSORS = (0, 1, 2)  # RSMI_TEMP_TYPE_EDGE, _JUNCTION, _MEMORY: the first that answers
IO_LINK_XGMI = 2  # RSMI_IO_LINK_TYPE_XGMI
MICRO = 1_000_000
# Blocks rocm_smi_lib reads ECC counters for (UMC ... XGMI_WAFL); the others answer "not supported".
ECC_BLOCKS = tuple(RAS_BLOCKS[b] for b in ("UMC", "SDMA", "GFX", "MMHUB", "PCIE_BIF", "HDP", "XGMI_WAFL"))


class _ErrorCount(ctypes.Structure):
    # correctable_err, uncorrectable_err; newer libraries add deferred_err after them.
    _fields_ = [("correctable", c_uint64), ("uncorrectable", c_uint64), ("spare", c_uint64 * 4)]


def _bdf(bdfid: int) -> str:
    """rsmi's packed BDF (domain << 32 | bus << 8 | device << 3 | function) as text."""
    return bus_id_text((bdfid >> 32) & 0xFFFFFFFF, (bdfid >> 8) & 0xFF, (bdfid >> 3) & 0x1F, bdfid & 0x7)


class LibraryReader:
    """DCUs through librocm_smi64.so. `library_path` names the .so (tests, odd installs)."""

    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._lib = load_library(LIBRARY_NAMES, LIBRARY_DIRS, explicit=library_path)
        self._calls = StatusCalls(self._lib, STATUS, log)
        self._calls.init(
            "rsmi_init", c_uint64(0), library=library_path or LIBRARY_NAMES[0], expected="ROCm-SMI"
        )

    def _u64(self, name: str, *args: Any) -> int | None:
        out = c_uint64()
        return out.value if self._calls.ok(name, *args, byref(out)) else None

    # -- VendorReader ----------------------------------------------------------------------

    def read(self) -> NodeSnapshot:
        count = c_uint32()
        self._calls.must("rsmi_num_monitor_devices", byref(count))
        chips = [self._chip(i) for i in range(count.value)]
        return assemble(chips, "librocm_smi64", self._xgmi_links(count.value))

    def set_power_limit(self, index: int, watts: float) -> None:
        if not self._calls.has("rsmi_dev_power_cap_set"):
            raise PowerLimitError("this librocm_smi64 has no rsmi_dev_power_cap_set")
        check_power_range(f"DCU {index}", watts, *self._cap_range(index))
        code = self._calls.call(
            "rsmi_dev_power_cap_set", c_uint32(index), c_uint32(0), c_uint64(round(watts * MICRO))
        )
        if code == PERMISSION:
            raise PowerLimitError(f"DCU {index}: setting the power cap needs root (rsmi: permission denied)")
        if code != SUCCESS:
            raise PowerLimitError(
                f"DCU {index}: rsmi_dev_power_cap_set returned {code} ({STATUS.get(code, '?')})"
            )

    def close(self) -> None:
        if self._calls.has("rsmi_shut_down"):
            self._calls.call("rsmi_shut_down")

    # -- one DCU ---------------------------------------------------------------------------

    def _chip(self, index: int) -> RawChip:
        dv = c_uint32(index)
        name = self._text("rsmi_dev_name_get", index, ctypes.c_size_t)  # (dv, char *, size_t)
        chip = RawChip(index=index, model=normalise_model(name or "DCU"))
        chip.uuid = self._text("rsmi_dev_serial_number_get", index, c_uint32)  # (dv, char *, uint32_t)
        bdf = self._u64("rsmi_dev_pci_id_get", dv)
        chip.bus_id = _bdf(bdf) if bdf is not None else ""
        chip.memory_total_bytes = self._u64("rsmi_dev_memory_total_get", dv, c_int32(VRAM))
        chip.memory_used_bytes = self._u64("rsmi_dev_memory_usage_get", dv, c_int32(VRAM))
        busy = c_uint32()
        if self._calls.ok("rsmi_dev_busy_percent_get", dv, byref(busy)):
            chip.utilization_pct = float(busy.value)
        chip.temperature_c = self._temperature(dv)
        self._read_power(chip, dv)
        self._read_ecc(chip, dv)
        return chip

    def _text(self, name: str, index: int, length: type[ctypes.c_size_t] | type[c_uint32]) -> str:
        buffer = ctypes.create_string_buffer(256)
        if not self._calls.ok(name, c_uint32(index), buffer, length(len(buffer))):
            return ""
        return buffer.value.decode("ascii", "replace").strip()

    def _temperature(self, dv: c_uint32) -> float | None:
        for sensor in TEMP_SENSORS:
            milli = c_int64()
            if self._calls.ok(
                "rsmi_dev_temp_metric_get", dv, c_uint32(sensor), c_int32(TEMP_CURRENT), byref(milli)
            ):
                return milli.value / 1000
        return None

    def _read_power(self, chip: RawChip, dv: c_uint32) -> None:
        average = self._u64("rsmi_dev_power_ave_get", dv, c_uint32(0))
        chip.power_w = average / MICRO if average is not None else None
        cap = self._u64("rsmi_dev_power_cap_get", dv, c_uint32(0))
        chip.power_limit_w = cap / MICRO if cap is not None else None
        default = self._u64("rsmi_dev_power_cap_default_get", dv)
        chip.power_limit_default_w = default / MICRO if default is not None else None
        chip.power_limit_min_w, chip.power_limit_max_w = self._cap_range(chip.index)
        chip.power_limit_settable = self._calls.has("rsmi_dev_power_cap_set")

    def _cap_range(self, index: int) -> tuple[float | None, float | None]:
        high, low = c_uint64(), c_uint64()
        if not self._calls.ok(
            "rsmi_dev_power_cap_range_get", c_uint32(index), c_uint32(0), byref(high), byref(low)
        ):
            return None, None
        return low.value / MICRO, high.value / MICRO  # the header's order is (max, min)

    def _read_ecc(self, chip: RawChip, dv: c_uint32) -> None:
        for block in ECC_BLOCKS:
            counts = _ErrorCount()
            if not self._calls.ok("rsmi_dev_ecc_count_get", dv, c_uint64(block), byref(counts)):
                continue
            chip.ecc_corrected_total = (chip.ecc_corrected_total or 0) + counts.correctable
            chip.ecc_uncorrected_total = (chip.ecc_uncorrected_total or 0) + counts.uncorrectable
            if counts.uncorrectable:
                chip.uncorrectable_by_block[block] = int(counts.uncorrectable)

    def _xgmi_links(self, count: int) -> list[tuple[int, int]]:
        links = []
        for a in range(count):
            for b in range(a + 1, count):
                hops, kind = c_uint64(), c_uint32()
                found = self._calls.ok(
                    "rsmi_topo_get_link_type", c_uint32(a), c_uint32(b), byref(hops), byref(kind)
                )
                if found and kind.value == IO_LINK_XGMI:
                    links.append((a, b))
        return links
