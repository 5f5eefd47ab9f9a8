"""MetaX (C500, C550): `mx-smi` as a subprocess, or `libmxsml` through ctypes.

Facts from research/domestic_devices.md §6 (tags there): the tool and its summary-table drift
(2.1.6 prints `Temp  Power` with no cap and no state; 2.1.12 prints `Pwr:Usage/Cap` without
GPU-State, with `NA` for a missing cap; 2.2.4 adds GPU-State; 2.2.9 moves power to the first cell,
temperature to the second and adds Board/Persist-M/Perf/sGPU-M), the `mx-smi -L` listing with
states and UUIDs, the `mx-smi topo -n` link matrix (`MX` = MetaXLink), and MXSML's calls. MXSML's
units are read from gpustack-runtime's MetaX detector [S]: memory in KiB, the hotspot temperature
in hundredths of a degree, board power and its limit in mW. MetaX has no watt cap to set
(§6.3), so `power_limit_settable` is False on both paths. MetaXLink islands are read from the
tool or the library, never assumed: one 8-GPU build shows two islands of four, another claims all
eight linked (§6.7).
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agents.backends.base import PowerLimitError
from agents.backends.vendors import units
from agents.backends.vendors.boxed_table import glimpse, parse_boxed_table
from agents.backends.vendors.faults import with_faults
from agents.backends.vendors.library import LibraryUnavailable, load_library
from agents.backends.vendors.snapshot import (
    ChipReading,
    NodeSnapshot,
    NotASummaryTable,
    SnapshotError,
    VendorFault,
    link_islands,
)
from agents.backends.vendors.tool import SubprocessRunner, ToolRunner, run_optional

log = logging.getLogger("corral.agent.vendor.metax")

VENDOR = "metax"
TOOLS = ("mx-smi",)
TOOL_DIRS = ("/opt/mxdriver/bin", "/opt/maca/bin")  # research §6.1: /opt/mxdriver/bin/mx-smi [S]
LIBRARY_NAMES = ("libmxsml.so",)
LIBRARY_DIRS = ("/opt/mxdriver/lib", "/opt/maca/lib", "/opt/mxn100/lib")  # research §6.1 [V gpustack]
VISIBILITY_ENV = "MACA_VISIBLE_DEVICES"  # research §6.5 [S]; CUDA_VISIBLE_DEVICES also narrows
# gpustack-runtime's MetaX detector lists sysfs PCI devices of vendor 0x9999 [V, its source].
PCI_VENDOR_IDS = (0x9999,)
INTERCONNECT = "metaxlink"

# Corral's codes for MetaX's signals (faults/metax.yaml): MetaX publishes no error codes.
CODE_NOT_AVAILABLE = 10001
CODE_DRAM_UE = 10002

# Summary-table labels whose value may hold spaces ("MetaX C500", "48W / 350W", a state sentence).
_WIDE = frozenset({"name", "pwr:usage/cap", "memory-usage", "gpu-state"})
_HEADER_MARKER = re.compile(r"\|.*\bBus-id\b", re.IGNORECASE)
_BDF = r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]"
_LIST_LINE = re.compile(rf"^GPU#(?P<index>\d+)\s+(?P<model>\S+)\s+(?P<bus>{_BDF})\s*(?P<rest>.*)$")
_LIST_UUID = re.compile(r"\(\s*UUID:\s*(?P<uuid>[^)\s]+)\s*\)")
_VERSION = re.compile(r"mx-smi\s+version:\s*(?P<v>\S+)|\|\s*MX-SMI\s+(?P<w>\d[\w.]*)", re.IGNORECASE)
_ATTACHED = re.compile(r"^\s*Attached GPUs\s*:\s*(\d+)", re.MULTILINE)


# -- the summary table -------------------------------------------------------------------------


def catalog_model(printed: str) -> str:
    """The catalog's name for what mx-smi or MXSML printed: "MetaX C500" and "MXC500" -> "C500"."""
    name = re.sub(r"^metax\s+", "", printed.strip(), flags=re.IGNORECASE)
    match = re.fullmatch(r"MX(C\d+\w*)", name, flags=re.IGNORECASE)
    return match.group(1).upper() if match else name


def _refuse(text: str, why: str) -> NotASummaryTable:
    return NotASummaryTable(
        f"not an mx-smi summary table: {why}; expected the output of plain `mx-smi` (a 'MetaX System "
        f"Management Interface Log' header and an MX-SMI table with GPU/NAME columns); saw {glimpse(text)}"
    )


def parse_summary(text: str) -> NodeSnapshot:
    """Every GPU in plain `mx-smi` output, whichever of the known layouts it uses."""
    if "MetaX System Management Interface" not in text and not re.search(r"\|\s*MX-SMI\s", text):
        raise _refuse(text, "no MetaX System Management Interface header")
    version_match = _VERSION.search(text)
    source = "mx-smi " + (version_match.group("v") or version_match.group("w")) if version_match else "mx-smi"
    table = parse_boxed_table(text, wide=_WIDE, marker=_HEADER_MARKER)
    if table is None:
        attached = _ATTACHED.search(text)
        if attached and int(attached.group(1)) == 0:
            return NodeSnapshot(VENDOR, source, (), INTERCONNECT)
        raise _refuse(text, "the MetaX header has no GPU table under it")
    if not {"gpu", "bus-id"} <= table.labels() or not table.labels() & {"name"}:
        raise _refuse(text, f"the table's columns are {sorted(table.labels())}")
    chips = [_table_chip(record) for record in table.records]
    return NodeSnapshot(VENDOR, source, _group_boards(chips), INTERCONNECT)


def _table_chip(record: Mapping[str, str]) -> ChipReading:
    index = units.integer(record.get("gpu"), "GPU")
    if index is None:
        raise SnapshotError(f"mx-smi: a GPU row has no index: {dict(record)}")
    used, total = units.used_total_bytes(record.get("memory-usage"), "Memory-Usage")
    if "pwr:usage/cap" in record:
        usage, cap = units.split_pair(record["pwr:usage/cap"])
        power, limit = units.watts(usage, "Pwr:Usage"), units.watts(cap, "Pwr:Cap")
    else:
        power, limit = units.watts(record.get("power"), "Power"), None
    fault = state_fault(record.get("gpu-state"))
    ids = {"board": record["board"]} if record.get("board") else {}
    chip = ChipReading(
        vendor=VENDOR,
        model=catalog_model(record.get("name", "")),
        index=index,
        bus_id=record.get("bus-id", "").strip().lower(),
        memory_total_bytes=total,
        memory_used_bytes=used,
        power_w=power,
        power_limit_w=limit,
        temperature_c=units.celsius(record.get("temp"), "Temp"),
        utilization_pct=units.percent(record.get("gpu-util"), "GPU-Util"),
        ids=ids,
    )
    return with_faults(chip, (fault,) if fault else ())


def _group_boards(chips: list[ChipReading]) -> tuple[ChipReading, ...]:
    """mx-smi 2.2.9 prints a Board number beside the GPU number. Where two GPUs share a board
    (no such MetaX part is known; the column suggests it can happen) they get one board_id, and
    the board power is kept on the lowest-numbered GPU only [U: whether mx-smi would print the
    board's power or each GPU's is not known]."""
    boards: dict[str, list[int]] = {}
    for chip in chips:
        if "board" in chip.ids:
            boards.setdefault(chip.ids["board"], []).append(chip.index)
    grouped = []
    for chip in chips:
        members = boards.get(chip.ids.get("board", ""), [])
        if len(members) > 1:
            keep_power = chip.index == min(members)
            chip = replace(chip, board_id=chip.ids["board"], power_w=chip.power_w if keep_power else None)
        grouped.append(chip)
    return tuple(grouped)


def state_fault(state: str | None) -> VendorFault | None:
    """Anything but "Available" (e.g. "Not Available(MetaX Sysfs File Unaccessible)") is a fault;
    no state shown (mx-smi before 2.2.4) is none."""
    if state is None or not state.strip() or state.strip().casefold() == "available":
        return None
    return VendorFault(CODE_NOT_AVAILABLE, state.strip())


# -- mx-smi -L and mx-smi topo -----------------------------------------------------------------


@dataclass(frozen=True)
class ListedGpu:
    """One line of `mx-smi -L`: `GPU#0  MXC500  0000:08:00.0  Available (UUID: GPU-...)`."""

    index: int
    model: str
    bus_id: str
    state: str
    uuid: str


def parse_list(text: str) -> dict[int, ListedGpu]:
    listed: dict[int, ListedGpu] = {}
    for line in text.splitlines():
        match = _LIST_LINE.match(line.strip())
        if not match:
            continue
        rest = match.group("rest")
        uuid_match = _LIST_UUID.search(rest)
        state = (rest[: uuid_match.start()] + rest[uuid_match.end() :]) if uuid_match else rest
        gpu = ListedGpu(
            index=int(match.group("index")),
            model=catalog_model(match.group("model")),
            bus_id=match.group("bus").lower(),
            state=state.strip(),
            uuid=uuid_match.group("uuid") if uuid_match else "",
        )
        listed[gpu.index] = gpu
    if not listed and "mx-smi" not in text.casefold():
        raise SnapshotError(f"mx-smi -L: no 'GPU#n ...' lines in {glimpse(text)}")
    return listed


def parse_topology(text: str) -> tuple[tuple[int, ...], ...]:
    """MetaXLink islands from the `mx-smi topo -n` (or `-m`) matrix: GPUs joined by `MX` entries,
    directly or through each other; a GPU with no MX link is in no island."""
    lines = [line.split() for line in text.splitlines()]
    header = next((tokens for tokens in lines if tokens and re.fullmatch(r"GPU\d+", tokens[0])), None)
    if header is None:
        raise SnapshotError(f"mx-smi topo: no GPU link matrix in {glimpse(text)}")
    columns = [int(name[3:]) if re.fullmatch(r"GPU\d+", name) else None for name in header]
    links: list[tuple[int, int]] = []
    for tokens in lines:
        if len(tokens) < 2 or not re.fullmatch(r"GPU\d+", tokens[0]) or tokens == header:
            continue
        row = int(tokens[0][3:])
        for column, entry in zip(columns, tokens[1:], strict=False):
            if column is not None and column != row and entry.upper() == "MX":
                links.append((row, column))
    return link_islands(links)


# -- the CLI reader -----------------------------------------------------------------------------


class CliReader:
    """`mx-smi` for the table, `mx-smi -L` for UUIDs and states, `mx-smi topo -n` for islands.
    Only the table is required: a tool too old for the other two still gives a snapshot, but a
    tool that hangs on any of them raises ToolTimeout."""

    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = 10.0) -> None:
        self._runner = runner or SubprocessRunner(timeout_s=timeout_s, extra_dirs=TOOL_DIRS)

    def read(self) -> NodeSnapshot:
        tool = TOOLS[0]
        snap = parse_summary(self._runner.run([tool]))
        listed = run_optional(self._runner, [tool, "-L"], parse_list, log) or {}
        islands = run_optional(self._runner, [tool, "topo", "-n"], parse_topology, log)
        if islands is None:
            islands = run_optional(self._runner, [tool, "topo", "-m"], parse_topology, log)
        by_bus = {gpu.bus_id: gpu for gpu in listed.values()}
        devices = tuple(
            _with_listing(chip, by_bus.get(chip.bus_id) or listed.get(chip.index)) for chip in snap.devices
        )
        return replace(snap, devices=devices, islands=islands or ())

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(
            "MetaX has no watt power limit to set (only DPM perf-level caps; research §6.3)"
        )

    def close(self) -> None:
        pass


def _with_listing(chip: ChipReading, listed: ListedGpu | None) -> ChipReading:
    if listed is None:
        return with_faults(chip)
    fault = state_fault(listed.state)
    chip = replace(chip, uuid=listed.uuid or chip.uuid)
    return with_faults(chip, (fault,) if fault else ())


# -- the library reader -------------------------------------------------------------------------

MXSML_SUCCESS = 0
MXSML_ERROR_INSUFFICIENT_SIZE = 10
MXSML_ERROR_FUNCTION_NOT_FOUND = 999
_REQUIRED = ("mxSmlInit", "mxSmlGetDeviceCount", "mxSmlGetDeviceInfo")
MXSML_TEMPERATURE_HOTSPOT = 0
MXSML_USAGE_XCORE = 4
MXSML_TOPOLOGY_METAXLINK = 5
_MXSML_ERRORS = {
    1: "failure", 2: "no device", 3: "operation not supported", 4: "sysfs error", 6: "invalid device id",
    8: "permission denied", 9: "invalid input", 10: "insufficient size", 21: "cannot open device file",
    23: "device busy", 26: "cannot load a library", 999: "function not found",
}  # fmt: skip


class _DeviceInfo(ctypes.Structure):
    # mxSmlDeviceInfo_t, layout as in gpustack-runtime's pymxsml (checked against it, not copied).
    _fields_ = [
        ("deviceId", ctypes.c_uint),
        ("type", ctypes.c_uint),
        ("bdfId", ctypes.c_char * 32),
        ("gpuId", ctypes.c_uint),
        ("nodeId", ctypes.c_uint),
        ("uuid", ctypes.c_char * 96),
        ("brand", ctypes.c_uint),
        ("mode", ctypes.c_uint),
        ("deviceName", ctypes.c_char * 32),
    ]


class _MemoryInfo(ctypes.Structure):
    # mxSmlMemoryInfo_t: every field in KiB.
    _fields_ = [
        ("visVramTotal", ctypes.c_long),
        ("visVramUse", ctypes.c_long),
        ("vramTotal", ctypes.c_long),
        ("vramUse", ctypes.c_long),
        ("xttTotal", ctypes.c_long),
        ("xttUse", ctypes.c_long),
    ]


class _BoardRail(ctypes.Structure):
    # mxSmlBoardWayElectricInfo_t: one power rail of the board, in mV, mA and mW.
    _fields_ = [("voltage", ctypes.c_uint), ("current", ctypes.c_uint), ("power", ctypes.c_uint)]


class _EccCounts(ctypes.Structure):
    # mxSmlEccErrorCount_t
    _fields_ = [
        ("sramCE", ctypes.c_uint),
        ("sramUE", ctypes.c_uint),
        ("dramCE", ctypes.c_uint),
        ("dramUE", ctypes.c_uint),
        ("retiredPage", ctypes.c_uint),
    ]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()


class LibraryReader:
    """MXSML through ctypes. LibraryUnavailable when libmxsml is not installed or will not
    initialise (no driver), so detection falls back to the CLI."""

    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._lib: Any = load_library(LIBRARY_NAMES, LIBRARY_DIRS, library_path)
        missing = [name for name in _REQUIRED if getattr(self._lib, name, None) is None]
        if missing:
            raise LibraryUnavailable(
                f"{library_path or LIBRARY_NAMES[0]} lacks {', '.join(missing)}: not MXSML?"
            )
        self._lib.mxSmlGetDeviceCount.restype = ctypes.c_uint
        rc = int(self._lib.mxSmlInit())
        if rc != MXSML_SUCCESS:
            raise LibraryUnavailable(
                f"mxSmlInit returned {rc} ({self._meaning(rc)}): is the MetaX driver loaded?"
            )
        self._open = True

    def _call(self, name: str, *args: Any) -> int:
        """One MXSML call's return code; a call this libmxsml lacks answers 'function not found'."""
        function = getattr(self._lib, name, None)
        return MXSML_ERROR_FUNCTION_NOT_FOUND if function is None else int(function(*args))

    def _meaning(self, rc: int) -> str:
        return _MXSML_ERRORS.get(rc, "unknown error")

    def read(self) -> NodeSnapshot:
        count = int(self._lib.mxSmlGetDeviceCount())
        chips = tuple(self._chip(i) for i in range(count))
        return NodeSnapshot(VENDOR, "libmxsml", chips, INTERCONNECT, self._islands(list(range(count))))

    def _chip(self, index: int) -> ChipReading:
        device = ctypes.c_uint(index)
        info = _DeviceInfo()
        rc = self._call("mxSmlGetDeviceInfo", device, ctypes.byref(info))
        if rc != MXSML_SUCCESS:
            why = f"mxSmlGetDeviceInfo returned {rc} ({self._meaning(rc)})"
            return with_faults(ChipReading(VENDOR, "", index), (VendorFault(CODE_NOT_AVAILABLE, why),))
        memory = _MemoryInfo()
        has_memory = self._call("mxSmlGetMemoryInfo", device, ctypes.byref(memory)) == MXSML_SUCCESS
        ecc = _EccCounts()
        has_ecc = self._call("mxSmlGetTotalEccErrors", device, ctypes.byref(ecc)) == MXSML_SUCCESS
        faults = []
        if has_ecc and ecc.dramUE > 0:
            faults.append(VendorFault(CODE_DRAM_UE, f"{ecc.dramUE} uncorrectable DRAM ECC errors"))
        chip = ChipReading(
            vendor=VENDOR,
            model=catalog_model(_text(info.deviceName)),
            index=index,
            uuid=_text(info.uuid),
            bus_id=_text(info.bdfId).lower(),
            memory_total_bytes=int(memory.vramTotal) * 1024 if has_memory else None,
            memory_used_bytes=int(memory.vramUse) * 1024 if has_memory else None,
            power_w=self._board_power_w(device),
            power_limit_w=self._scalar(ctypes.c_uint, 1e-3, "mxSmlGetBoardPowerLimit", device),
            temperature_c=self._scalar(
                ctypes.c_int,
                0.01,
                "mxSmlGetTemperatureInfo",
                device,
                ctypes.c_uint(MXSML_TEMPERATURE_HOTSPOT),
            ),
            utilization_pct=self._scalar(
                ctypes.c_int, 1.0, "mxSmlGetDeviceIpUsage", device, ctypes.c_uint(MXSML_USAGE_XCORE)
            ),
            ecc_corrected_total=int(ecc.dramCE + ecc.sramCE) if has_ecc else None,
            ecc_uncorrected_total=int(ecc.dramUE + ecc.sramUE) if has_ecc else None,
        )
        return with_faults(chip, faults)

    def _scalar(
        self, kind: type[ctypes.c_uint] | type[ctypes.c_int], scale: float, name: str, *args: Any
    ) -> float | None:
        """A call that writes one number through its last argument, scaled to Corral's unit."""
        value = kind()
        if self._call(name, *args, ctypes.byref(value)) != MXSML_SUCCESS:
            return None
        return round(value.value * scale, 3)

    def _board_power_w(self, device: ctypes.c_uint) -> float | None:
        """The sum of the board's power rails: ask for the rail count, then the rails."""
        size = ctypes.c_uint(0)
        rc = self._call("mxSmlGetBoardPowerInfo", device, ctypes.byref(size), None)
        if rc not in (MXSML_SUCCESS, MXSML_ERROR_INSUFFICIENT_SIZE) or size.value == 0:
            return None
        rails = (_BoardRail * size.value)()
        if self._call("mxSmlGetBoardPowerInfo", device, ctypes.byref(size), rails) != MXSML_SUCCESS:
            return None
        return sum(int(rail.power) for rail in rails[: size.value]) / 1000.0

    def _islands(self, indices: list[int]) -> tuple[tuple[int, ...], ...]:
        links = []
        level = ctypes.c_uint()
        for a in indices:
            for b in indices:
                if a < b:
                    rc = self._call(
                        "mxSmlGetDeviceTopology", ctypes.c_uint(a), ctypes.c_uint(b), ctypes.byref(level)
                    )
                    if rc == MXSML_SUCCESS and level.value == MXSML_TOPOLOGY_METAXLINK:
                        links.append((a, b))
        return link_islands(links)

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(
            "MetaX has no watt power limit to set (only DPM perf-level caps; research §6.3)"
        )

    def close(self) -> None:
        if self._open:
            self._open = False
            shutdown = getattr(self._lib, "mxSmlShutdown", None)
            if shutdown is not None:
                shutdown()
