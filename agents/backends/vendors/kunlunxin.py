"""Kunlunxin (Baidu Kunlun P800, R200): `xpu_smi` as a subprocess, or `libxpuml` through ctypes.

Facts from research/domestic_devices.md §7 (tags there) and Kunlunxin's `xpuml.h`:
- The default `xpu_smi` table gives each XPU THREE rows; the third is the 96 MiB L3 SRAM, not
  the HBM, so memory is read from the `Memory-Usage` cell only.
- `xpu-smi -q` is labelled key/value (nvidia-smi -q shape) and is preferred for details: UUID,
  serial, `Enforced Power Limit`, `Power Draw`, ECC DRAM counts, `XPU Current Temp : 46 C`.
  `xpu_smi -m` is positional with third-party field meanings [S/U] and a power unit nobody has
  pinned down, so it is only a fallback for serial numbers, never for power.
- The name clashes with Intel's `xpu-smi` (research §0.1 trap 5). Detection gates on the PCI
  vendor (`is_kunlunxin_pci_vendor`), and the parser refuses Intel's tables and JSON.
- XPUML is NVML-shaped: power in mW, memory in bytes, temperature in °C, device states
  UNUSED 0 / RUNNING 201 / IN_RESET 205 / ERROR 207 / IN_EXCEPTION 208, and
  XPUML_ERROR_XPU_IS_LOST (15) for a device that fell off the bus. It has no power-limit call
  (`xpumlDeviceGetPowerManagementLimit` is commented out in the header) and no ECC counter call,
  so the library path reports no limit and no ECC; nothing can be set on either path.
- Islands: no tool output for `xpu-smi topo` was found, so islands come from the documented
  P800 OAM 8-card topology HAMi hard-codes (research §7.7): two fully connected groups 0-3 and
  4-7 (plus bridges 0-4, 1-5, 2-6, 3-7, which Corral does not count as an island link). Any other
  node (P800 PCIe, R200, fewer cards) reports no islands rather than a guess.
"""

from __future__ import annotations

import ctypes
import glob
import json
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from agents.backends.base import PowerLimitError
from agents.backends.vendors import units
from agents.backends.vendors.boxed_table import glimpse, parse_boxed_table
from agents.backends.vendors.faults import with_faults
from agents.backends.vendors.library import LibraryUnavailable, load_library
from agents.backends.vendors.smi_table import canonical_bus_id
from agents.backends.vendors.snapshot import (
    ChipReading,
    NodeSnapshot,
    NotASummaryTable,
    SnapshotError,
    VendorFault,
)
from agents.backends.vendors.tool import SubprocessRunner, ToolRunner, first_installed, run_optional

log = logging.getLogger("corral.agent.vendor.kunlunxin")
_V = TypeVar("_V")

VENDOR = "kunlunxin"
# `xpu_smi` first: Intel installs only `xpu-smi`, so the underscore name cannot be Intel's.
TOOLS = ("xpu_smi", "xpu-smi")
TOOL_DIRS = ("/usr/local/xpu/bin", "/usr/local/bin")  # research §7.1: /usr/local/xpu*/bin/xpu_smi [S]
LIBRARY_NAMES = ("libxpuml.so", "libxpuml.so.1")
# XRE packages ship libxpuml under so/ (/opt/xre/so in FlagCX scripts; Paddle's xre_prepare) [S].
LIBRARY_DIRS = ("/usr/local/xpu/so", "/usr/local/xpu/lib64", "/opt/xre/so")
VISIBILITY_ENV = "XPU_VISIBLE_DEVICES"  # research §7.5 [S]
# 0x1d22 is "Baidu Technology" in pci.ids (K200 `1d22:3684`, P800 `1d22:3688` in lspci captures)
# [S, research §7.1]. 0x2057 is what a P800 PCIe reports in `xpu-smi -q` ("Device Id :
# 0x36862057", device 0x3686 / vendor 0x2057, NVML's packing) and what ZStack's Kunlunxin plugin
# matches [S]. Intel's xpu-smi cards are 0x8086, which is never Kunlunxin.
PCI_VENDOR_IDS = (0x1D22, 0x2057)
INTERCONNECT = "xpu-link"

# Corral's code for uncorrectable DRAM ECC errors (faults/kunlunxin.yaml); the rest are XPUML's.
CODE_DRAM_UE = 10001
STATE_UNUSED, STATE_RUNNING, STATE_IN_RESET, STATE_ERROR, STATE_IN_EXCEPTION = 0, 201, 205, 207, 208
XPUML_ERROR_XPU_IS_LOST = 15
XPUML_ERROR_RESET_REQUIRED = 16
_STATE_NAMES = {
    STATE_UNUSED: "UNUSED", STATE_RUNNING: "RUNNING", STATE_IN_RESET: "IN_RESET",
    STATE_ERROR: "ERROR", STATE_IN_EXCEPTION: "IN_EXCEPTION",
}  # fmt: skip

# HAMi's P800 OAM 8-card topology (pkg/device/kunlun/device.go, research §7.7 [V]).
P800_OAM_ISLANDS: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3), (4, 5, 6, 7))

_PHRASES = ("Volatile Uncorr. ECC", "Compute M.", "SR-IOV M.", "MIG M.")
_WIDE = frozenset({"name", "pwr:usage/cap", "memory-usage", "l3-usage"})
_HEADER_MARKER = re.compile(r"\|.*\bBus-Id\b", re.IGNORECASE)
_BDF = re.compile(
    r"^(?P<domain>[0-9a-f]{1,8}):(?P<bus>[0-9a-f]{2}):(?P<dev>[0-9a-f]{2})\.(?P<fn>[0-7])$", re.I
)
_BANNER = re.compile(r"\|\s*XPU-SMI\s+Driver Version:\s*(?P<driver>\S+)", re.IGNORECASE)


def is_kunlunxin_pci_vendor(vendor_id: int) -> bool:
    """True for a Kunlunxin PCI vendor id; an `xpu-smi` on a node without one is Intel's."""
    return vendor_id in PCI_VENDOR_IDS


def catalog_model(printed: str) -> str:
    """The catalog's name: "P800 OAM" is the catalog's "P800"; "P800 PCIe" and others as printed."""
    name = " ".join(printed.split())
    return "P800" if name.casefold() == "p800 oam" else name


def documented_islands(chips: Sequence[ChipReading]) -> tuple[tuple[int, ...], ...]:
    """XPU Link islands where a documented server topology says so: an 8-card P800 OAM node."""
    if sorted(c.index for c in chips) == list(range(8)) and all(c.model == "P800" for c in chips):
        return P800_OAM_ISLANDS
    return ()


# -- the summary table -------------------------------------------------------------------------


def _refuse(text: str, why: str) -> NotASummaryTable:
    return NotASummaryTable(
        f"not a Kunlunxin xpu_smi summary table: {why}; expected the output of plain `xpu_smi` (an "
        f"'XPU-SMI  Driver Version:' banner and a table with XPU/Name/Bus-Id columns); saw {glimpse(text)}"
    )


def _intel_reason(text: str) -> str | None:
    """Why `text` looks like Intel's xpu-smi (same tool name, different CLI), or None."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            json.loads(stripped)
        except ValueError:
            return None
        return "this is JSON (Intel's `xpu-smi discovery -j` prints JSON; Kunlunxin's never does)"
    if re.search(r"Intel\(R\)|Intel\S*\s+XPU|\|\s*Device ID\s*\|\s*Device Information", text, re.IGNORECASE):
        return "this is Intel's xpu-smi (a different tool with the same name)"
    return None


def parse_summary(text: str) -> NodeSnapshot:
    """Every XPU in plain `xpu_smi` output; L3 SRAM rows are not mistaken for HBM."""
    banner = _BANNER.search(text)
    if banner is None:
        raise _refuse(text, _intel_reason(text) or "no 'XPU-SMI  Driver Version:' banner")
    table = parse_boxed_table(text, phrases=_PHRASES, wide=_WIDE, marker=_HEADER_MARKER)
    if table is None:
        raise _refuse(text, "the XPU-SMI banner has no device table under it")
    if not {"xpu", "name", "bus-id"} <= table.labels():
        raise _refuse(text, f"the table's columns are {sorted(table.labels())}")
    chips = tuple(_table_chip(record) for record in table.records)
    source = f"xpu_smi (driver {banner.group('driver')})"
    return NodeSnapshot(VENDOR, source, chips, INTERCONNECT, documented_islands(chips))


def _table_chip(record: Mapping[str, str]) -> ChipReading:
    index = units.integer(record.get("xpu"), "XPU")
    if index is None:
        raise SnapshotError(f"xpu_smi: an XPU row has no index: {dict(record)}")
    used, total = units.used_total_bytes(record.get("memory-usage"), "Memory-Usage")  # HBM, not L3
    usage, cap = units.split_pair(record.get("pwr:usage/cap", ""))
    ecc_volatile = units.integer(record.get("volatile uncorr. ecc"), "Volatile Uncorr. ECC")
    chip = ChipReading(
        vendor=VENDOR,
        model=catalog_model(record.get("name", "")),
        index=index,
        bus_id=canonical_bus_id(record.get("bus-id", "")),
        memory_total_bytes=total,
        memory_used_bytes=used,
        power_w=units.watts(usage, "Pwr:Usage"),
        power_limit_w=units.watts(cap, "Pwr:Cap"),
        temperature_c=units.celsius(record.get("temp"), "Temp"),
        utilization_pct=units.percent(record.get("xpu-util"), "XPU-Util"),
        ecc_uncorrected_total=ecc_volatile,
    )
    return with_faults(chip, _ecc_faults(ecc_volatile))


def _ecc_faults(uncorrectable: int | None) -> list[VendorFault]:
    if uncorrectable is None or uncorrectable <= 0:
        return []
    return [VendorFault(CODE_DRAM_UE, f"{uncorrectable} uncorrectable DRAM ECC errors")]


# -- xpu-smi -q ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueriedXpu:
    """What `xpu-smi -q` says about one XPU; None where it did not say."""

    bus_id: str
    product_name: str = ""
    serial: str = ""
    uuid: str = ""
    minor: str = ""
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    ecc_volatile_uncorrected: int | None = None
    ecc_aggregate_uncorrected: int | None = None
    ecc_aggregate_corrected: int | None = None


_XPU_BLOCK = re.compile(r"^XPU\s+(?P<bus>[0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")
_KEY_VALUE = re.compile(r"^(?P<key>[^:]+?)\s*:\s*(?P<value>.*)$")


def _query_blocks(text: str) -> list[tuple[str, dict[str, str]]]:
    """(bus id, {"Section/Sub/Key": value}) per `XPU <bus>` block, paths from the indentation."""
    blocks: list[tuple[str, dict[str, str]]] = []
    sections: list[tuple[int, str]] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip())
        line = raw.strip()
        block = _XPU_BLOCK.match(line)
        if block:
            blocks.append((canonical_bus_id(block.group("bus")), {}))
            sections = []
            continue
        while sections and sections[-1][0] >= indent:
            sections.pop()
        pair = _KEY_VALUE.match(line)
        if pair is None:
            sections.append((indent, line))
        elif blocks:
            path = "/".join([*(name for _, name in sections), pair.group("key")])
            blocks[-1][1].setdefault(path.casefold(), pair.group("value").strip())
    return blocks


def _field(fields: Mapping[str, str], *paths: str) -> str | None:
    """The value at the first of `paths` that ends a key path (case-insensitive)."""
    for path in paths:
        wanted = path.casefold()
        for key, value in fields.items():
            if key == wanted or key.endswith("/" + wanted):
                return value
    return None


def parse_query(text: str) -> dict[str, QueriedXpu]:
    """`xpu-smi -q` (all XPUs, or one with --id), keyed by normalised bus id."""
    blocks = _query_blocks(text)
    if not blocks:
        intel = _intel_reason(text)
        if intel:
            raise NotASummaryTable(f"not Kunlunxin's `xpu-smi -q`: {intel}; saw {glimpse(text)}")
        raise SnapshotError(f"xpu-smi -q: no 'XPU <bus id>' blocks in {glimpse(text)}")
    return {bus: _queried(bus, fields) for bus, fields in blocks}


def _queried(bus: str, fields: Mapping[str, str]) -> QueriedXpu:
    return QueriedXpu(
        bus_id=bus,
        product_name=_field(fields, "Product Name") or "",
        serial=_field(fields, "Serial Number") or "",
        uuid=_field(fields, "XPU UUID") or "",
        minor=_field(fields, "Minor Number") or "",
        memory_total_bytes=units.size_bytes(_field(fields, "Memory Usage/Total"), "Memory Usage/Total"),
        memory_used_bytes=units.size_bytes(_field(fields, "Memory Usage/Used"), "Memory Usage/Used"),
        utilization_pct=units.percent(_field(fields, "Utilization/Xpu"), "Utilization/Xpu"),
        temperature_c=units.celsius(_field(fields, "XPU Current Temp"), "XPU Current Temp"),
        power_w=units.watts(_field(fields, "Power Readings/Power Draw"), "Power Draw"),
        power_limit_w=units.watts(
            _field(fields, "Power Readings/Enforced Power Limit"), "Enforced Power Limit"
        ),
        ecc_volatile_uncorrected=units.integer(
            _field(fields, "ECC Errors/Volatile/DRAM Uncorrectable"), "Volatile DRAM Uncorrectable"
        ),
        ecc_aggregate_uncorrected=units.integer(
            _field(fields, "ECC Errors/Aggregate/DRAM Uncorrectable"), "Aggregate DRAM Uncorrectable"
        ),
        ecc_aggregate_corrected=units.integer(
            _field(fields, "ECC Errors/Aggregate/DRAM Correctable"), "Aggregate DRAM Correctable"
        ),
    )


# -- xpu_smi -m (fallback) -----------------------------------------------------------------------


@dataclass(frozen=True)
class MachineRow:
    """The `xpu_smi -m` fields whose meaning is agreed on [S]: bus id, index, minor, serial,
    temperature, HBM used/total in MiB, model. Power (field 8) is left out: its unit is unresolved."""

    bus_id: str
    index: int
    minor: str
    serial: str
    temperature_c: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    model: str


def parse_machine(text: str) -> dict[str, MachineRow]:
    rows: dict[str, MachineRow] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            fields = shlex.split(line)
        except ValueError:
            fields = []
        if len(fields) < 22 or not _BDF.match(fields[0]):
            raise SnapshotError(f"xpu_smi -m: not a positional XPU line: {line.strip()[:80]!r}")
        row = MachineRow(
            bus_id=canonical_bus_id(fields[0]),
            index=int(fields[1]),
            minor=fields[2],
            serial=fields[3],
            temperature_c=units.celsius(fields[4], "xpu_smi -m temperature"),
            memory_used_bytes=units.size_bytes(fields[17], "xpu_smi -m HBM used"),
            memory_total_bytes=units.size_bytes(fields[18], "xpu_smi -m HBM total"),
            model=catalog_model(fields[21]),
        )
        rows[row.bus_id] = row
    if not rows:
        raise SnapshotError("xpu_smi -m printed no XPU lines")
    return rows


# -- health -------------------------------------------------------------------------------------


def state_fault(state: int) -> VendorFault | None:
    """A device state other than UNUSED or RUNNING, as a fault keyed by the state's number."""
    if state in (STATE_UNUSED, STATE_RUNNING):
        return None
    return VendorFault(state, f"device state {_STATE_NAMES.get(state, state)}")


# -- the CLI reader -----------------------------------------------------------------------------


class CliReader:
    """`xpu_smi` for the table, `xpu_smi -q` for UUIDs, limits and ECC (`-m` when -q fails, for
    serials only). The table is required; a tool that hangs on any command raises ToolTimeout."""

    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = 10.0) -> None:
        dirs = (*TOOL_DIRS, *sorted(glob.glob("/usr/local/xpu*/bin")))
        self._runner = runner or SubprocessRunner(timeout_s=timeout_s, extra_dirs=dirs)

    def read(self) -> NodeSnapshot:
        tool = first_installed(self._runner, TOOLS)
        snap = parse_summary(self._runner.run([tool]))
        queried = run_optional(self._runner, [tool, "-q"], parse_query, log) or {}
        # -m only where -q gave nothing: it is positional, and only its serials are trusted.
        rows = {} if queried else run_optional(self._runner, [tool, "-m"], parse_machine, log) or {}
        devices = tuple(
            _merge(chip, queried.get(chip.bus_id), rows.get(chip.bus_id)) for chip in snap.devices
        )
        return replace(snap, devices=devices, islands=documented_islands(devices))

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError("Kunlunxin has no power-limit set API or CLI (research §7.3)")

    def close(self) -> None:
        pass


def _either(shown: _V | None, fallback: _V | None) -> _V | None:
    return shown if shown is not None else fallback


def _merge(chip: ChipReading, queried: QueriedXpu | None, row: MachineRow | None) -> ChipReading:
    """The table's reading completed by -q (or -m): the table wins where both say something;
    ECC counts come from -q's aggregate, the fault from its volatile count (this boot)."""
    if queried is not None:
        ids = {k: v for k, v in (("serial", queried.serial), ("minor", queried.minor)) if v}
        chip = replace(
            chip,
            model=chip.model or catalog_model(queried.product_name),
            uuid=queried.uuid or queried.serial or chip.uuid,
            power_w=_either(chip.power_w, queried.power_w),
            power_limit_w=_either(chip.power_limit_w, queried.power_limit_w),
            temperature_c=_either(chip.temperature_c, queried.temperature_c),
            utilization_pct=_either(chip.utilization_pct, queried.utilization_pct),
            memory_total_bytes=_either(chip.memory_total_bytes, queried.memory_total_bytes),
            memory_used_bytes=_either(chip.memory_used_bytes, queried.memory_used_bytes),
            ecc_corrected_total=queried.ecc_aggregate_corrected,
            ecc_uncorrected_total=_either(queried.ecc_aggregate_uncorrected, chip.ecc_uncorrected_total),
            ids=ids,
        )
        uncorrected = _either(queried.ecc_volatile_uncorrected, queried.ecc_aggregate_uncorrected)
        return with_faults(chip, _ecc_faults(uncorrected))
    if row is not None:
        ids = {k: v for k, v in (("serial", row.serial), ("minor", row.minor)) if v}
        chip = replace(chip, uuid=chip.uuid or row.serial, ids=ids)
    return with_faults(chip)


# -- the library reader -------------------------------------------------------------------------

XPUML_SUCCESS = 0
XPUML_ERROR_NOT_SUPPORTED = 3
XPUML_TEMPERATURE_XPU = 0
_XPUML_ERRORS = {
    1: "uninitialized", 2: "invalid argument", 3: "not supported", 4: "no permission",
    6: "not found", 7: "insufficient size", 9: "driver not loaded", 12: "library not found",
    13: "function not found", 15: "XPU is lost", 16: "reset required", 17: "blocked by the OS",
    18: "driver/library version mismatch", 999: "unknown error",
}  # fmt: skip


class _PciInfo(ctypes.Structure):
    # xpumlPciInfo_t (xpuml.h)
    _fields_ = [
        ("domain", ctypes.c_uint),
        ("bus", ctypes.c_uint),
        ("device", ctypes.c_uint),
        ("function", ctypes.c_uint),
        ("pciDeviceId", ctypes.c_uint),
        ("pciSubSystemId", ctypes.c_uint),
        ("busId", ctypes.c_char * 32),
        ("reserved", ctypes.c_ulonglong * 9),
    ]


class _Memory(ctypes.Structure):
    # xpumlMemory_t (xpuml.h): bytes; the L3 fields are the on-chip SRAM.
    _fields_ = [
        ("pageSizeGlobalMemory", ctypes.c_ulonglong),
        ("totalGlobalMemory", ctypes.c_ulonglong),
        ("freeGlobalMemory", ctypes.c_ulonglong),
        ("usedGlobalMemory", ctypes.c_ulonglong),
        ("pageSizeL3Memory", ctypes.c_ulonglong),
        ("totalL3Memory", ctypes.c_ulonglong),
        ("freeL3Memory", ctypes.c_ulonglong),
        ("usedL3Memory", ctypes.c_ulonglong),
        ("reserved", ctypes.c_ulonglong * 8),
    ]


class _Utilization(ctypes.Structure):
    # xpumlUtilization_t (xpuml.h): percent.
    _fields_ = [("xpu", ctypes.c_uint), ("memory", ctypes.c_uint), ("reserved", ctypes.c_ulonglong * 15)]


class _DeviceCalls:
    """XPUML calls on one device handle, remembering whether any said the XPU is lost or
    needs a reset; a call that fails otherwise reads as "not shown" (None)."""

    def __init__(self, lib: Any, handle: ctypes.c_void_p) -> None:
        self._lib, self._handle = lib, handle
        self.codes: set[int] = set()

    def ok(self, name: str, *args: Any) -> bool:
        function = getattr(self._lib, name, None)
        if function is None:  # an older libxpuml without this call
            return False
        rc = int(function(self._handle, *args))
        if rc in (XPUML_ERROR_XPU_IS_LOST, XPUML_ERROR_RESET_REQUIRED):
            self.codes.add(rc)
        return rc == XPUML_SUCCESS

    def text(self, name: str, size: int) -> str:
        buffer = ctypes.create_string_buffer(size)
        if not self.ok(name, buffer, ctypes.c_uint(size)):
            return ""
        return buffer.value.decode("utf-8", "replace").strip()

    def uint(self, name: str, *args: Any) -> int | None:
        value = ctypes.c_uint()
        return value.value if self.ok(name, *args, ctypes.byref(value)) else None


class LibraryReader:
    """XPUML through ctypes. LibraryUnavailable when libxpuml is not installed or will not
    initialise (no driver), so detection falls back to the CLI."""

    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._lib: Any = load_library(LIBRARY_NAMES, LIBRARY_DIRS, library_path)
        rc = int(self._lib.xpumlInit())
        if rc != XPUML_SUCCESS:
            raise LibraryUnavailable(f"xpumlInit returned {rc} ({_XPUML_ERRORS.get(rc, 'unknown error')})")
        self._open = True

    def read(self) -> NodeSnapshot:
        count = ctypes.c_uint()
        rc = int(self._lib.xpumlDeviceGetCount(ctypes.byref(count)))
        if rc != XPUML_SUCCESS:
            raise SnapshotError(
                f"xpumlDeviceGetCount returned {rc} ({_XPUML_ERRORS.get(rc, 'unknown error')})"
            )
        chips = tuple(self._chip(i) for i in range(count.value))
        return NodeSnapshot(VENDOR, "libxpuml", chips, INTERCONNECT, documented_islands(chips))

    def _chip(self, index: int) -> ChipReading:
        handle = ctypes.c_void_p()
        rc = int(self._lib.xpumlDeviceGetHandleByIndex(ctypes.c_uint(index), ctypes.byref(handle)))
        if rc == XPUML_ERROR_XPU_IS_LOST:
            return _lost(index)
        if rc != XPUML_SUCCESS:
            meaning = _XPUML_ERRORS.get(rc, "unknown error")
            raise SnapshotError(f"xpumlDeviceGetHandleByIndex({index}) returned {rc} ({meaning})")
        calls = _DeviceCalls(self._lib, handle)
        pci, memory, utilization = _PciInfo(), _Memory(), _Utilization()
        has_pci = calls.ok("xpumlDeviceGetPciInfo", ctypes.byref(pci))
        has_memory = calls.ok("xpumlDeviceGetMemoryInfo", ctypes.byref(memory))
        has_utilization = calls.ok("xpumlDeviceGetUtilizationRates", ctypes.byref(utilization))
        state = ctypes.c_int()
        has_state = calls.ok("xpumlDeviceGetState", ctypes.byref(state))
        serial = calls.text("xpumlDeviceGetSerial", 32)
        minor = calls.uint("xpumlDeviceGetMinorNumber")
        power_mw = calls.uint("xpumlDeviceGetPowerUsage")
        temperature = calls.uint("xpumlDeviceGetTemperature", ctypes.c_uint(XPUML_TEMPERATURE_XPU))
        chip = ChipReading(
            vendor=VENDOR,
            model=catalog_model(calls.text("xpumlDeviceGetName", 96)),
            index=index,
            uuid=calls.text("xpumlDeviceGetUUID", 96) or serial,  # GetUUID is absent from some headers
            bus_id=canonical_bus_id(pci.busId.decode("utf-8", "replace")) if has_pci else "",
            memory_total_bytes=int(memory.totalGlobalMemory) if has_memory else None,
            memory_used_bytes=int(memory.usedGlobalMemory) if has_memory else None,
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            temperature_c=float(temperature) if temperature is not None else None,
            utilization_pct=float(utilization.xpu) if has_utilization else None,
            ids={k: v for k, v in (("serial", serial), ("minor", "" if minor is None else str(minor))) if v},
        )
        if XPUML_ERROR_XPU_IS_LOST in calls.codes:
            return _lost(index, chip)
        faults = [VendorFault(XPUML_ERROR_RESET_REQUIRED, "XPUML: reset required")] if calls.codes else []
        fault = state_fault(state.value) if has_state else None
        return with_faults(chip, [*faults, *([fault] if fault else [])])

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError("Kunlunxin has no power-limit set API or CLI (research §7.3)")

    def close(self) -> None:
        if self._open:
            self._open = False
            self._lib.xpumlShutdown()


def _lost(index: int, seen: ChipReading | None = None) -> ChipReading:
    chip = seen or ChipReading(VENDOR, "", index)
    fault = VendorFault(XPUML_ERROR_XPU_IS_LOST, "XPUML_ERROR_XPU_IS_LOST: the XPU fell off the bus")
    return with_faults(replace(chip, lost=True), [fault])
