"""Iluvatar CoreX (BI-V100, BI-V150, MR-V100): `ixsmi` as a subprocess, or `libixml` via ctypes.

`ixsmi` is an nvidia-smi clone and `libixml` exports NVML-named symbols plus `ixml*`
extensions (research §5.1). What is Iluvatar's own:

- **Boards of two chips.** A BI-V150 board carries two chips; ixsmi lists each as a GPU and
  prints the board's power and cap once, on the *second* chip, with `N/A / N/A` on the first
  (research §5.2, verbatim capture). The CLI path therefore pairs a chip whose power and cap are
  both missing with the chip that follows it (same model, next index) into one board; the library
  path asks `nvmlDeviceOnSameBoard` (falling back to topology level INTERNAL, which
  ix-device-plugin names P2PLinkSameBoard) and reads the board power with
  `ixmlDeviceGetBoardPowerUsage`. Either way the board's power and cap sit on its last chip,
  as ixsmi shows them, and the board's chips form an island over the on-board link.
- **Health** is `ixmlDeviceGetHealth`'s 64-bit mask: any non-zero value is unhealthy
  (ix-device-plugin's rule); each set bit is a fault whose code is the bit (faults/iluvatar.yaml).
  ixsmi shows no health mask, so the CLI path can only see `ERR!` cells and uncorrected ECC.
- **Power limits**: libixml exports `nvmlDeviceSetPowerManagementLimit`, but whether the driver
  honours it is unknown (research §5.3). The library reader probes each chip that shows a cap
  once, by writing a different limit, reading it back and restoring the original; only a chip
  whose write reads back is `power_limit_settable`. No ixsmi flag for it is known.
- **Visibility**: `CUDA_VISIBLE_DEVICES` (CoreX's CUDA-compatible runtime) with the ixsmi / NVML
  enumeration index.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from agents.backends.base import PowerLimitError
from agents.backends.vendors import units
from agents.backends.vendors.faults import packaged_fault_table
from agents.backends.vendors.library import LibraryUnavailable, load_library
from agents.backends.vendors.smi_table import bus_id_text, parse_banded_table, pci_bus_id, pick
from agents.backends.vendors.snapshot import (
    ChipReading,
    NodeSnapshot,
    NotASummaryTable,
    SnapshotError,
    VendorFault,
    check_power_range,
    first_line,
    linked_groups,
)
from agents.backends.vendors.tool import SubprocessRunner, ToolRunner, run_optional

log = logging.getLogger("corral.agent.iluvatar")

VENDOR = "iluvatar"
TOOLS = ("ixsmi",)
_COREX_HOME = os.environ.get("COREX_HOME", "/usr/local/corex")
TOOL_DIRS = (f"{_COREX_HOME}/bin",)  # research §5.1: /usr/local/corex/bin/ixsmi [V-out]
LIBRARY_NAMES = ("libixml.so",)
LIBRARY_DIRS = (f"{_COREX_HOME}/lib64", f"{_COREX_HOME}/lib")  # gpustack-runtime pyixml loader [V]
VISIBILITY_ENV = "CUDA_VISIBLE_DEVICES"
# 0x1e3e: gpustack-runtime 0.2.6 detector/iluvatar.py, citing the PCI-SIG member list [S].
PCI_VENDOR_IDS = (0x1E3E,)
# The link within an island (the two chips of a BI-V150 board); chips in no island use PCIe.
INTERCONNECT = "board link"
PCIE = "pcie"

# ixsmi --query-gpu field names moved between CoreX 3.x and 4.x (research §5.2, ZStack's two
# command variants [S]); the last set asks only for what every nvidia-smi clone knows.
QUERY_FIELD_SETS: tuple[tuple[str, ...], ...] = (
    ("index", "uuid", "gpu_serial", "gpu.power.draw", "gpu.power.limit"),  # CoreX 4.x
    ("index", "uuid", "gpu_serial", "power.draw", "power.limit"),  # CoreX 3.x
    ("index", "uuid"),
)
_ERROR_CELL = "err!"  # what nvidia-smi clones print in a cell they could not read


def model_name(name: str) -> str:
    """`Iluvatar BI-V150` -> `BI-V150`, the catalog's name."""
    cleaned = " ".join(name.split())
    if cleaned.casefold().startswith("iluvatar "):
        cleaned = cleaned[len("iluvatar ") :]
    return cleaned


def corex_tool_env() -> dict[str, str]:
    """ixsmi needs CoreX's libraries on LD_LIBRARY_PATH (research §5.1)."""
    current = os.environ.get("LD_LIBRARY_PATH", "")
    return {"LD_LIBRARY_PATH": ":".join([*LIBRARY_DIRS, *([current] if current else [])])}


# ----------------------------------------------------------------------------- the summary table


def parse_summary(text: str) -> NodeSnapshot:
    """Every chip in plain `ixsmi` output (IX-ML 3.x and 4.x layouts, narrow or wide)."""
    table = parse_banded_table(text, header_labels=("GPU", "Name", "Bus-Id"))
    if table is None:
        raise NotASummaryTable(_not_a_table(text, "no header with 'GPU  Name' and 'Bus-Id'"))
    version = _ixml_version(table.preamble)
    names = [pick(row, "name") or "" for row in table.rows]
    if version is None and not any(_is_iluvatar_name(n) for n in names):
        raise NotASummaryTable(_not_a_table(text, "a table without IX-ML or an Iluvatar device"))
    chips = sorted((_chip_from_row(row) for row in table.rows), key=lambda c: c.index)
    chips = _pair_boards(chips)
    return _snapshot(f"ixsmi IX-ML {version}" if version else "ixsmi", chips)


def _is_iluvatar_name(name: str) -> bool:
    folded = name.casefold()
    return "iluvatar" in folded or folded.startswith(("bi-v", "mr-v"))


def _ixml_version(preamble: Sequence[str]) -> str | None:
    for line in preamble:
        tokens = line.replace("|", " ").split()
        for i, token in enumerate(tokens):
            if token.rstrip(":").casefold() == "ix-ml" and i + 1 < len(tokens):
                return tokens[i + 1]
            if token.casefold().startswith("ix-ml:") and len(token) > len("ix-ml:"):
                return token[len("ix-ml:") :]
    return None


def _not_a_table(text: str, why: str) -> str:
    seen = first_line(text, limit=100, empty="empty text")
    if "nvidia-smi" in text.casefold():
        seen += " (this is NVIDIA's nvidia-smi)"
    expected = "expected the IX-ML table (GPU / Name / Bus-Id ...)"
    return f"not an ixsmi summary table: {expected}, found {why}; saw {seen}"


def _chip_from_row(row: dict[str, str]) -> ChipReading:
    def cell(*aliases: str) -> str | None:
        value = pick(row, *aliases)
        return None if value is None or _is_error(value) else value

    index = units.integer(pick(row, "gpu"), "GPU")
    if index is None:
        raise SnapshotError(f"ixsmi: a device row without a GPU index: {row}")
    unreadable = sorted(label for label, value in row.items() if _ERROR_CELL in value.casefold())
    usage, cap = (None if _is_error(v) else v for v in units.split_pair(cell("pwr:usage/cap") or ""))
    used, total = units.used_total_bytes(cell("memory-usage", "memory usage"), "Memory-Usage")
    ecc = units.integer(cell("volatile uncorr. ecc"), "Volatile Uncorr. ECC")
    return ChipReading(
        vendor=VENDOR,
        model=model_name(pick(row, "name") or ""),
        index=index,
        bus_id=pci_bus_id(cell("bus-id", "bus id")),
        memory_total_bytes=total,
        memory_used_bytes=used,
        power_w=units.watts(usage, "Pwr:Usage"),
        power_limit_w=units.watts(cap, "Pwr:Cap"),
        temperature_c=units.celsius(cell("temp"), "Temp"),
        utilization_pct=units.percent(cell("gpu-util"), "GPU-Util"),
        # ixsmi prints ERR! where it could not read the chip; uncorrected ECC counts as unhealthy.
        healthy=not unreadable and not (ecc or 0) > 0,
        ecc_uncorrected_total=ecc,
        ids={"unreadable": ",".join(unreadable)} if unreadable else {},
    )


def _is_error(value: str) -> bool:
    return value.strip().casefold() == _ERROR_CELL


def _pair_boards(chips: list[ChipReading]) -> list[ChipReading]:
    """A chip with neither power nor cap shares a board with the next chip, which carries the
    board's power (research §5.2: `N/A / N/A` on the first chip of a BI-V150 board)."""
    out = list(chips)
    i = 0
    while i + 1 < len(out):
        first, second = out[i], out[i + 1]
        if (
            first.power_w is None
            and first.power_limit_w is None
            and "unreadable" not in first.ids  # ERR! cells say nothing about the board
            and second.index == first.index + 1
            and second.model == first.model
            and (second.power_w is not None or second.power_limit_w is not None)
        ):
            board = first.bus_id or f"board-of-{first.index}"
            out[i], out[i + 1] = replace(first, board_id=board), replace(second, board_id=board)
            i += 2
        else:
            i += 1
    return out


def _snapshot(source: str, chips: Sequence[ChipReading]) -> NodeSnapshot:
    boards: dict[str, list[int]] = {}
    for chip in chips:
        if chip.board_id:
            boards.setdefault(chip.board_id, []).append(chip.index)
    islands = tuple(tuple(sorted(members)) for members in boards.values() if len(members) > 1)
    return NodeSnapshot(
        vendor=VENDOR,
        source=source,
        devices=tuple(chips),
        interconnect=INTERCONNECT if islands else PCIE,
        islands=islands,
    )


# ----------------------------------------------------------------------------- the CLI reader


class CliReader:
    """`ixsmi` for the table, then `ixsmi --query-gpu` for UUIDs, serials and finer power."""

    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = 10.0) -> None:
        self.runner: ToolRunner = runner or SubprocessRunner(
            timeout_s=timeout_s, extra_dirs=TOOL_DIRS, env=corex_tool_env()
        )
        self._query_set = 0  # index into QUERY_FIELD_SETS of the spelling that last worked

    def read(self) -> NodeSnapshot:
        snapshot = parse_summary(self.runner.run([TOOLS[0]]))
        queried = self._query()
        return replace(
            snapshot, devices=tuple(_merge_query(c, queried.get(c.index, {})) for c in snapshot.devices)
        )

    def _query(self) -> dict[int, dict[str, str]]:
        """Per chip index, the --query-gpu answer of the first field set this ixsmi knows
        (remembered, so later samples ask in the spelling that worked)."""
        order = sorted(range(len(QUERY_FIELD_SETS)), key=lambda i: i != self._query_set)
        for i in order:
            fields = QUERY_FIELD_SETS[i]
            argv = [TOOLS[0], f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
            answer = run_optional(self.runner, argv, functools.partial(parse_query_csv, fields=fields), log)
            if answer is not None:  # else this ixsmi spells the fields otherwise: try the next set
                self._query_set = i
                return answer
        return {}

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(
            "iluvatar: no ixsmi command to set a power limit is known; the library reader sets it "
            "where the driver honours nvmlDeviceSetPowerManagementLimit"
        )

    def close(self) -> None:
        pass


def parse_query_csv(text: str, fields: Sequence[str]) -> dict[int, dict[str, str]]:
    """`--format=csv,noheader,nounits` lines, one per chip; `[N/A]` reads as missing."""
    out: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip().strip("[]").strip() for v in line.split(",")]
        if len(values) != len(fields):
            raise SnapshotError(f"ixsmi --query-gpu: expected {len(fields)} fields, got {line.strip()!r}")
        row = dict(zip(fields, values, strict=True))
        index = units.integer(row["index"], "index")
        if index is None:
            raise SnapshotError(f"ixsmi --query-gpu: no index in {line.strip()!r}")
        out[index] = row
    if not out:
        raise SnapshotError("ixsmi --query-gpu answered nothing")
    return out


def _merge_query(chip: ChipReading, row: dict[str, str]) -> ChipReading:
    if not row:
        return chip
    ids = dict(chip.ids)
    serial = row.get("gpu_serial", "")
    if not units.is_missing(serial):
        ids["serial"] = serial
    uuid = row.get("uuid", "")
    draw = next((row[k] for k in ("gpu.power.draw", "power.draw") if k in row), None)
    limit = next((row[k] for k in ("gpu.power.limit", "power.limit") if k in row), None)
    # The query's watts are finer than the table's, but only where the table shows the board
    # power on this chip, so a board's power is never counted on both of its chips.
    power = units.watts(draw, "power.draw") if chip.power_w is not None else None
    cap = units.watts(limit, "power.limit") if chip.power_limit_w is not None else None
    return replace(
        chip,
        uuid=chip.uuid or ("" if units.is_missing(uuid) else uuid),
        power_w=power if power is not None else chip.power_w,
        power_limit_w=cap if cap is not None else chip.power_limit_w,
        ids=ids,
    )


# ----------------------------------------------------------------------------- libixml by ctypes

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_TEMPERATURE_GPU = 0
NVML_TOPOLOGY_INTERNAL = 0
_ERROR_NAMES = {
    1: "uninitialized", 2: "invalid argument", 3: "not supported", 4: "no permission",
    6: "not found", 9: "driver not loaded", 10: "timeout", 13: "function not found",
    15: "GPU is lost", 16: "reset required", 999: "unknown error",
}  # fmt: skip
_PROBE_STEP_MW = 1000  # the probe moves the limit by 1 W and puts it back
_T = TypeVar("_T")


class IxmlError(Exception):
    def __init__(self, call: str, code: int) -> None:
        self.call, self.code = call, code
        super().__init__(f"{call} returned {code} ({_ERROR_NAMES.get(code, 'error')})")


class _ChipLost(Exception):
    pass


class _PciInfo(ctypes.Structure):
    # nvmlPciInfo_t (NVML API >= 9, as libixml's api.h declares it).
    _fields_ = [
        ("busIdLegacy", ctypes.c_char * 16),
        ("domain", ctypes.c_uint),
        ("bus", ctypes.c_uint),
        ("device", ctypes.c_uint),
        ("pciDeviceId", ctypes.c_uint),
        ("pciSubSystemId", ctypes.c_uint),
        ("busId", ctypes.c_char * 32),
    ]


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class Ixml:
    """The few libixml calls Corral makes; each raises IxmlError with the library's code.
    Where NVML has versioned symbols (`_v2`) the newest one the library exports is used."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib

    def _call(self, names: str | tuple[str, ...], *args: object) -> None:
        candidates = (names,) if isinstance(names, str) else names
        for name in candidates:
            fn = getattr(self._lib, name, None)
            if fn is not None:
                code = int(fn(*args))
                if code != NVML_SUCCESS:
                    raise IxmlError(name, code)
                return
        raise IxmlError(candidates[-1], NVML_ERROR_FUNCTION_NOT_FOUND)

    def has(self, name: str) -> bool:
        return getattr(self._lib, name, None) is not None

    def _uint(self, name: str | tuple[str, ...], *args: object) -> int:
        value = ctypes.c_uint()
        self._call(name, *args, ctypes.byref(value))
        return value.value

    def _text(self, name: str, *args: object, size: int = 96) -> str:
        buf = ctypes.create_string_buffer(size)
        self._call(name, *args, buf, ctypes.c_uint(size))
        return buf.value.decode("utf-8", "replace")

    def init(self) -> None:
        self._call(("nvmlInit_v2", "nvmlInit"))

    def shutdown(self) -> None:
        self._call("nvmlShutdown")

    def driver_version(self) -> str:
        return self._text("nvmlSystemGetDriverVersion", size=80)

    def count(self) -> int:
        return self._uint(("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"))

    def handle(self, index: int) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        self._call(
            ("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"),
            ctypes.c_uint(index),
            ctypes.byref(handle),
        )
        return handle

    def name(self, h: ctypes.c_void_p) -> str:
        return self._text("nvmlDeviceGetName", h)

    def uuid(self, h: ctypes.c_void_p) -> str:
        return self._text("nvmlDeviceGetUUID", h)

    def serial(self, h: ctypes.c_void_p) -> str:
        return self._text("nvmlDeviceGetSerial", h, size=30)

    def bus_id(self, h: ctypes.c_void_p) -> str:
        info = _PciInfo()
        self._call(
            ("nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo"),
            h,
            ctypes.byref(info),
        )
        text = (info.busId or info.busIdLegacy).decode("ascii", "replace")
        return pci_bus_id(text) or bus_id_text(info.domain, info.bus, info.device, 0)

    def memory(self, h: ctypes.c_void_p) -> tuple[int, int]:
        """(used, total) bytes."""
        mem = _Memory()
        self._call("nvmlDeviceGetMemoryInfo", h, ctypes.byref(mem))
        return int(mem.used), int(mem.total)

    def temperature(self, h: ctypes.c_void_p) -> int:
        return self._uint("nvmlDeviceGetTemperature", h, ctypes.c_int(NVML_TEMPERATURE_GPU))

    def utilization(self, h: ctypes.c_void_p) -> int:
        util = _Utilization()
        self._call("nvmlDeviceGetUtilizationRates", h, ctypes.byref(util))
        return int(util.gpu)

    def power_mw(self, h: ctypes.c_void_p) -> int:
        return self._uint("nvmlDeviceGetPowerUsage", h)

    def board_power_mw(self, h: ctypes.c_void_p) -> int:
        # ix-device-plugin reads this for a chip with a board position (a multi-chip board).
        return self._uint("ixmlDeviceGetBoardPowerUsage", h)

    def limit_mw(self, h: ctypes.c_void_p) -> int:
        return self._uint("nvmlDeviceGetPowerManagementLimit", h)

    def limit_range_mw(self, h: ctypes.c_void_p) -> tuple[int, int]:
        low, high = ctypes.c_uint(), ctypes.c_uint()
        self._call("nvmlDeviceGetPowerManagementLimitConstraints", h, ctypes.byref(low), ctypes.byref(high))
        return low.value, high.value

    def default_limit_mw(self, h: ctypes.c_void_p) -> int:
        return self._uint("nvmlDeviceGetPowerManagementDefaultLimit", h)

    def set_limit_mw(self, h: ctypes.c_void_p, milliwatts: int) -> None:
        self._call("nvmlDeviceSetPowerManagementLimit", h, ctypes.c_uint(milliwatts))

    def health(self, h: ctypes.c_void_p) -> int:
        mask = ctypes.c_ulonglong()
        self._call("ixmlDeviceGetHealth", h, ctypes.byref(mask))
        return int(mask.value)

    def same_board(self, a: ctypes.c_void_p, b: ctypes.c_void_p) -> bool:
        if self.has("nvmlDeviceOnSameBoard"):
            flag = ctypes.c_int()
            self._call("nvmlDeviceOnSameBoard", a, b, ctypes.byref(flag))
            return flag.value != 0
        level = ctypes.c_int()
        self._call("nvmlDeviceGetTopologyCommonAncestor", a, b, ctypes.byref(level))
        return level.value == NVML_TOPOLOGY_INTERNAL


@dataclass
class _Raw:
    """What the library answered for one chip before boards are known."""

    index: int
    handle: ctypes.c_void_p | None
    name: str = ""
    uuid: str = ""
    serial: str = ""
    bus_id: str = ""
    memory: tuple[int, int] | None = None
    temperature: int | None = None
    utilization: int | None = None
    health_mask: int | None = None
    health_unreadable: str = ""
    lost: bool = False
    ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Limits:
    current_mw: int | None = None
    range_mw: tuple[int, int] | None = None
    default_mw: int | None = None
    chip: int | None = None  # the chip whose handle answered, and takes the writes


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000.0


def health_faults(mask: int) -> tuple[VendorFault, ...]:
    """One fault per set bit of ixmlDeviceGetHealth's mask, named from faults/iluvatar.yaml."""
    table = packaged_fault_table(VENDOR)
    bits = (1 << bit for bit in range(64))
    return tuple(VendorFault(code, table.lookup(code).name) for code in bits if mask & code)


class LibraryReader:
    """libixml through ctypes. LibraryUnavailable when the library is absent or will not init."""

    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._ixml = Ixml(load_library(LIBRARY_NAMES, LIBRARY_DIRS, library_path))
        try:
            self._ixml.init()
        except IxmlError as e:
            raise LibraryUnavailable(f"libixml is installed but would not initialise: {e}") from e
        self._open = True
        try:
            self._driver = self._ixml.driver_version()
        except IxmlError:
            self._driver = ""
        # Per chip index: (settable, why not), decided once by the read-after-write probe.
        self._settable: dict[int, tuple[bool, str]] = {}
        self._limit_ranges: dict[int, tuple[int, int] | None] = {}
        self._limit_chip: dict[int, int] = {}  # chip index -> the chip whose handle holds its cap
        self._board_cache: list[tuple[int, ...]] | None = None
        self._identity: dict[int, tuple[str, str, str, str]] = {}  # name, uuid, bus id, serial

    # -- reading

    def read(self) -> NodeSnapshot:
        try:
            count = self._ixml.count()
        except IxmlError as e:
            raise SnapshotError(f"libixml: cannot count devices: {e}") from e
        raws = [self._read_chip(i) for i in range(count)]
        boards = self._boards(raws)
        chips = [self._assemble(raw, boards, raws) for raw in raws]
        source = f"libixml {self._driver}".strip()
        return _snapshot(source, chips)

    def _ask(self, read: Callable[[ctypes.c_void_p], _T], h: ctypes.c_void_p) -> _T | None:
        """A reading the chip may not offer: None unless the chip fell off the bus."""
        try:
            return read(h)
        except IxmlError as e:
            if e.code == NVML_ERROR_GPU_IS_LOST:
                raise _ChipLost(str(e)) from e
            return None

    def _read_chip(self, index: int) -> _Raw:
        try:
            h = self._ixml.handle(index)
        except IxmlError as e:
            if e.code == NVML_ERROR_GPU_IS_LOST:
                return self._remember(_Raw(index, None, lost=True))
            raise SnapshotError(f"libixml: no handle for chip {index}: {e}") from e
        raw = _Raw(index, h)
        try:
            raw.name = self._ask(self._ixml.name, h) or ""
            raw.uuid = self._ask(self._ixml.uuid, h) or ""
            raw.bus_id = self._ask(self._ixml.bus_id, h) or ""
            raw.serial = self._ask(self._ixml.serial, h) or ""
            raw.memory = self._ask(self._ixml.memory, h)
            raw.temperature = self._ask(self._ixml.temperature, h)
            raw.utilization = self._ask(self._ixml.utilization, h)
            self._read_health(raw, h)
        except _ChipLost:
            raw.lost = True
        return self._remember(raw)

    def _remember(self, raw: _Raw) -> _Raw:
        """A lost chip keeps the name, UUID and bus id it had when it last answered."""
        if not raw.lost:
            self._identity[raw.index] = (raw.name, raw.uuid, raw.bus_id, raw.serial)
        elif raw.index in self._identity:
            name, uuid, bus_id, serial = self._identity[raw.index]
            raw.name, raw.uuid = raw.name or name, raw.uuid or uuid
            raw.bus_id, raw.serial = raw.bus_id or bus_id, raw.serial or serial
        return raw

    def _read_health(self, raw: _Raw, h: ctypes.c_void_p) -> None:
        try:
            raw.health_mask = self._ixml.health(h)
        except IxmlError as e:
            if e.code == NVML_ERROR_GPU_IS_LOST:
                raise _ChipLost(str(e)) from e
            if e.code not in (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND):
                # A health query that fails for any other reason is a chip nobody can vouch for.
                raw.health_unreadable = str(e)

    def _boards(self, raws: Sequence[_Raw]) -> list[tuple[int, ...]]:
        """Groups of chip indices on one board, asked once while every chip answers and then
        remembered: boards do not change, and a lost chip cannot be asked (its board would
        otherwise fall apart in the snapshot)."""
        indices = {r.index for r in raws}
        if self._board_cache is not None and {i for b in self._board_cache for i in b} == indices:
            return self._board_cache
        boards = self._ask_boards(raws)
        if not any(r.lost or r.handle is None for r in raws):
            self._board_cache = boards
        return boards

    def _ask_boards(self, raws: Sequence[_Raw]) -> list[tuple[int, ...]]:
        """Each chip alone where the library cannot tell boards apart."""
        together_pairs: list[tuple[int, int]] = []
        live = [r for r in raws if not r.lost and r.handle is not None]
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                assert a.handle is not None and b.handle is not None
                try:
                    together = self._ixml.same_board(a.handle, b.handle)
                except IxmlError:
                    return [(r.index,) for r in raws]  # the library cannot tell boards apart
                if together:
                    together_pairs.append((a.index, b.index))
        return linked_groups([r.index for r in raws], together_pairs)

    def _assemble(self, raw: _Raw, boards: Sequence[tuple[int, ...]], raws: Sequence[_Raw]) -> ChipReading:
        board = next(b for b in boards if raw.index in b)
        by_index = {r.index: r for r in raws}
        board_id = ""
        if len(board) > 1:
            board_id = by_index[board[0]].bus_id or f"board-of-{board[0]}"
        base = ChipReading(
            vendor=VENDOR,
            model=model_name(raw.name),
            index=raw.index,
            uuid=raw.uuid,
            bus_id=raw.bus_id,
            board_id=board_id,
            ids={"serial": raw.serial} if raw.serial else {},
        )
        if raw.lost or raw.handle is None:
            return replace(base, healthy=False, lost=True)
        used, total = raw.memory if raw.memory is not None else (None, None)
        mask = raw.health_mask or 0
        chip = replace(
            base,
            memory_total_bytes=total,
            memory_used_bytes=used,
            temperature_c=None if raw.temperature is None else float(raw.temperature),
            utilization_pct=None if raw.utilization is None else float(raw.utilization),
            healthy=mask == 0 and not raw.health_unreadable,
            faults=health_faults(mask),
            ids={**base.ids, "health_error": raw.health_unreadable} if raw.health_unreadable else base.ids,
        )
        if raw.index != board[-1]:
            # The board's power and cap are reported once, on its last chip, as ixsmi does.
            self._settable[raw.index] = (False, f"the board's power limit belongs to chip {board[-1]}")
            return chip
        # The chips that still answer, the last one first (where ixsmi shows the board's power).
        members = [by_index[i] for i in reversed(board) if not by_index[i].lost]
        return self._with_power(chip, raw, members)

    def _with_power(self, chip: ChipReading, raw: _Raw, members: Sequence[_Raw]) -> ChipReading:
        handles = [m.handle for m in members if m.handle is not None]
        try:
            if len(members) > 1:
                power_mw = self._first_answer((self._ixml.board_power_mw, self._ixml.power_mw), handles)
            else:
                power_mw = self._first_answer((self._ixml.power_mw,), handles)
            limits = self._limits(members)
        except _ChipLost:
            return replace(chip, healthy=False, lost=True)
        holder = next((m.handle for m in members if m.index == limits.chip), raw.handle)
        settable, _ = self._probe(raw, limits, holder)
        self._limit_ranges[raw.index] = limits.range_mw
        self._limit_chip[raw.index] = raw.index if limits.chip is None else limits.chip
        low, high = limits.range_mw if limits.range_mw else (None, None)
        return replace(
            chip,
            power_w=_watts(power_mw),
            power_limit_w=_watts(limits.current_mw),
            power_limit_min_w=_watts(low),
            power_limit_max_w=_watts(high),
            power_limit_default_w=_watts(limits.default_mw),
            power_limit_settable=settable,
        )

    def _first_answer(
        self, readers: Sequence[Callable[[ctypes.c_void_p], int]], handles: Sequence[ctypes.c_void_p]
    ) -> int | None:
        """The first reading any chip of the board gives: for a board, ixmlDeviceGetBoardPowerUsage
        where exported, else the chip power of whichever chip answers (the last chip first, where
        ixsmi shows the board's power)."""
        for read in readers:
            for h in handles:
                value = self._ask(read, h)
                if value is not None:
                    return value
        return None

    def _limits(self, members: Sequence[_Raw]) -> _Limits:
        """The cap of the board (or lone chip), from the first chip that reports one."""
        for member in members:
            h = member.handle
            if h is None:
                continue
            current = self._ask(self._ixml.limit_mw, h)
            if current is not None:
                limit_range = self._ask(self._ixml.limit_range_mw, h)
                return _Limits(current, limit_range, self._ask(self._ixml.default_limit_mw, h), member.index)
        return _Limits()

    # -- power limits

    def _probe(self, raw: _Raw, limits: _Limits, h: ctypes.c_void_p | None) -> tuple[bool, str]:
        """Once per chip: write a limit 1 W away from the current one, read it back, restore.
        Writing the current value again would prove nothing where the driver ignores writes."""
        known = self._settable.get(raw.index)
        if known is not None:
            return known
        verdict = self._probe_once(raw, limits, h)
        self._settable[raw.index] = verdict
        if verdict[0]:
            log.info("iluvatar chip %d: power limit is settable (read-after-write probe)", raw.index)
        else:
            log.info("iluvatar chip %d: power limit not settable: %s", raw.index, verdict[1])
        return verdict

    def _probe_once(self, raw: _Raw, limits: _Limits, h: ctypes.c_void_p | None) -> tuple[bool, str]:
        current = limits.current_mw
        if current is None or h is None:
            return False, "the chip reports no power limit"
        if not self._ixml.has("nvmlDeviceSetPowerManagementLimit"):
            return False, "libixml exports no nvmlDeviceSetPowerManagementLimit"
        low, high = limits.range_mw if limits.range_mw else (0, 2**32 - 1)
        target = current - _PROBE_STEP_MW if current - _PROBE_STEP_MW >= low else current + _PROBE_STEP_MW
        if target > high:
            return False, f"the limit range {low}-{high} mW leaves no room to probe"
        try:
            self._ixml.set_limit_mw(h, target)
        except IxmlError as e:
            return False, f"the driver refused a power-limit write: {e}"
        try:
            read_back = self._ixml.limit_mw(h)
        except IxmlError as e:
            read_back = None
            log.warning("iluvatar chip %d: limit unreadable after the probe write: %s", raw.index, e)
        restored = self._restore(h, current, raw.index)
        if read_back != target:
            return False, f"the driver accepted a write of {target} mW but the limit read back {read_back} mW"
        if not restored:
            return False, f"the probe could not restore the limit to {current} mW"
        return True, ""

    def _restore(self, h: ctypes.c_void_p, milliwatts: int, index: int) -> bool:
        try:
            self._ixml.set_limit_mw(h, milliwatts)
            return self._ixml.limit_mw(h) == milliwatts
        except IxmlError as e:
            log.error(
                "iluvatar chip %d: could not restore the power limit to %d mW: %s", index, milliwatts, e
            )
            return False

    def set_power_limit(self, index: int, watts: float) -> None:
        if index not in self._settable:
            self.read()  # the probe runs on the first read
        settable, why = self._settable.get(index, (False, f"there is no chip {index}"))
        if not settable:
            raise PowerLimitError(f"iluvatar chip {index}: power limit not settable: {why}")
        milliwatts = round(watts * 1000)
        limit_range = self._limit_ranges.get(index)
        if limit_range is not None:
            # Checked in the whole milliwatts the driver takes (exact in floats: ints below 2**32).
            low, high = limit_range
            check_power_range(f"iluvatar chip {index}", milliwatts / 1000, low / 1000, high / 1000)
        try:
            h = self._ixml.handle(self._limit_chip.get(index, index))
            self._ixml.set_limit_mw(h, milliwatts)
            read_back = self._ixml.limit_mw(h)
        except IxmlError as e:
            raise PowerLimitError(f"iluvatar chip {index}: setting {watts:g} W failed: {e}") from e
        if read_back != milliwatts:
            raise PowerLimitError(
                f"iluvatar chip {index}: the driver accepted {milliwatts} mW but reads back {read_back} mW"
            )

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._ixml.shutdown()
            except IxmlError as e:
                log.debug("libixml shutdown: %s", e)
