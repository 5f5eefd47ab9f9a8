"""Moore Threads (MTT S4000, S5000, S80, ...): `mthreads-gmi` as a subprocess, or MTML through
Moore Threads' own Python binding `pymtml` (PyPI `mthreads-ml-py`, research §4.1).

What is Moore Threads' own:

- The default `mthreads-gmi` table has **no power column** (research §4.2); the CLI path reads
  power, UUID and serial from `mthreads-gmi -q`'s `Key : value` report where it has them. No
  verbatim `-q` capture exists, so that parser looks keys up by name in any nesting (the
  fixture for it is synthetic, built from the keys the research names).
- Memory prints as `used(total)` in MiB: `2MiB(16384MiB)`.
- **No power-limit API** in MTML (pymtml's NVML shim returns 0, "Not Support"; research §4.3):
  every chip reports `power_limit_settable: false` and `set_power_limit` raises.
- **Health** (research §4.4): MTML has no health or XID call. A chip with uncorrected volatile
  DRAM ECC errors is unhealthy (GPUStack's rule); a call answering MTML_ERROR_GPU_IS_LOST (669)
  means the chip fell off the bus. The table shows neither, so the CLI path reports health only
  through what `-q` may add.
- **Islands** come from MTLink: each chip's links (`mtmlDeviceGetMtLinkSpec().linkNum`) that
  are UP, and the chip at the other end. The table does not show links, so the CLI path
  reports no islands.
- **Visibility**: `MUSA_VISIBLE_DEVICES` with the `mthreads-gmi` ID / MTML index.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.backends.base import PowerLimitError
from agents.backends.vendors import units
from agents.backends.vendors.library import LibraryUnavailable, load_library
from agents.backends.vendors.smi_table import bus_id_text, label_key, parse_banded_table, pci_bus_id, pick
from agents.backends.vendors.snapshot import (
    ChipReading,
    NodeSnapshot,
    NotASummaryTable,
    SnapshotError,
    first_line,
    link_islands,
)
from agents.backends.vendors.tool import SubprocessRunner, ToolError, ToolRunner, ToolTimeout

log = logging.getLogger("corral.agent.moorethreads")

VENDOR = "moorethreads"
TOOLS = ("mthreads-gmi",)
TOOL_DIRS = ("/usr/bin", "/usr/local/musa/bin")  # the driver package installs it in /usr/bin [U]
LIBRARY_NAMES = ("libmtml.so.2", "libmtml.so")  # pymtml's own order: versioned first [V]
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/local/musa/lib")  # [U]; then the loader path
VISIBILITY_ENV = "MUSA_VISIBLE_DEVICES"
# 0x1ed5: gpustack-runtime 0.2.6 detector/mthreads.py, citing the PCI-SIG member list [S].
PCI_VENDOR_IDS = (0x1ED5,)
INTERCONNECT = "mtlink"
PCIE = "pcie"

_POWER_LIMIT_NONE = "Moore Threads MTML has no power-limit API (research §4.3)"
_MTT_NAME = re.compile(r"^(?:moore\s*threads\s+)?mtt\s*(\w+)$", re.IGNORECASE)
_TOOL_VERSION = re.compile(r"mthreads-gmi\s*:?\s*v?(\d[\w.\-]*)", re.IGNORECASE)
_DRIVER_VERSION = re.compile(r"driver\s+version\s*:\s*(\S+)", re.IGNORECASE)
_QUERY_SECTION = re.compile(r"^GPU\s+(\S+)\s*$")


def model_name(name: str) -> str:
    """`MTT S80` stays; `MTTS4000` (as some tools strip it) becomes `MTT S4000`, the catalog's."""
    cleaned = " ".join(name.split())
    m = _MTT_NAME.match(cleaned)
    return f"MTT {m.group(1).upper()}" if m else cleaned


# ----------------------------------------------------------------------------- the summary table


def parse_summary(text: str) -> NodeSnapshot:
    """Every GPU in plain `mthreads-gmi` output (1.x and 2.x layouts)."""
    table = parse_banded_table(text, header_labels=("ID", "Name"))
    preamble = "\n".join(table.preamble) if table else ""
    tool = _TOOL_VERSION.search(preamble)
    if table is None or not (tool or {"pcie", "%gpu", "mem"} <= set(table.labels)):
        raise NotASummaryTable(_not_a_table(text))
    chips = sorted((_chip_from_row(row) for row in table.rows), key=lambda c: c.index)
    driver = _DRIVER_VERSION.search(preamble)
    source = (
        "mthreads-gmi"
        + (f" {tool.group(1)}" if tool else "")
        + (f" (driver {driver.group(1)})" if driver else "")
    )
    return NodeSnapshot(vendor=VENDOR, source=source, devices=tuple(chips), interconnect=PCIE)


def _not_a_table(text: str) -> str:
    seen = first_line(text, limit=100, empty="empty text")
    return (
        "not an mthreads-gmi summary table: expected the 'mthreads-gmi:<version>' banner and a header "
        f"'ID  Name | PCIe | %GPU  Mem'; saw {seen}"
    )


def _chip_from_row(row: dict[str, str]) -> ChipReading:
    index = units.integer(pick(row, "id"), "ID")
    if index is None:
        raise SnapshotError(f"mthreads-gmi: a device row without an ID: {row}")
    used, total = units.used_total_bytes(pick(row, "mem"), "Mem")
    ids = {
        key: value
        for key, value in (("device_type", pick(row, "device type")), ("ecc_mode", pick(row, "ecc mode")))
        if not units.is_missing(value) and value is not None
    }
    return ChipReading(
        vendor=VENDOR,
        model=model_name(pick(row, "name") or ""),
        index=index,
        bus_id=pci_bus_id(pick(row, "pcie", "bus-id")),
        memory_total_bytes=total,
        memory_used_bytes=used,
        temperature_c=units.celsius(pick(row, "temp"), "Temp"),
        utilization_pct=units.percent(pick(row, "%gpu", "gpu-util"), "%GPU"),
        ids=ids,
    )


# ----------------------------------------------------------------------------- mthreads-gmi -q


def parse_query(text: str) -> list[dict[str, str]]:
    """`mthreads-gmi -q`: one dict per `GPU <bus id or index>` section, each key as
    `label_key` spells it, first occurrence winning (so `Power Draw` under `Power Readings`
    is found whatever the nesting). `_head` holds the section's bus id or index."""
    sections: list[dict[str, str]] = []
    for line in text.splitlines():
        head = _QUERY_SECTION.match(line)
        if head:
            sections.append({"_head": head.group(1)})
            continue
        key, sep, value = line.partition(":")
        if not sections or not sep or not value.strip():
            continue
        sections[-1].setdefault(label_key(key), value.strip())
    return sections


def _merge_query(chips: Sequence[ChipReading], sections: Sequence[dict[str, str]]) -> list[ChipReading]:
    """Each -q section onto the table chip with the same bus id (else the same index, else the
    same position), adding what the table lacks: power, UUID, serial, the full product name."""
    by_bus = {c.bus_id: i for i, c in enumerate(chips) if c.bus_id}
    by_index = {c.index: i for i, c in enumerate(chips)}
    merged = list(chips)
    for position, section in enumerate(sections):
        bus = pci_bus_id(section.get("bus id") or section["_head"])
        head = section["_head"]
        slot = by_bus.get(bus)
        if slot is None and head.isdigit():
            slot = by_index.get(int(head))
        if slot is None and position < len(merged) and not by_bus:
            slot = position
        if slot is not None:
            merged[slot] = _with_query(merged[slot], section)
    return merged


def _with_query(chip: ChipReading, section: dict[str, str]) -> ChipReading:
    uuid = pick(section, "gpu uuid", "uuid")
    serial = pick(section, "serial number", "serial")
    product = pick(section, "product name")
    ids = dict(chip.ids)
    if serial is not None and not units.is_missing(serial):
        ids["serial"] = serial
    try:
        power = units.watts(pick(section, "power draw", "power usage"), "Power Draw")
    except SnapshotError as e:
        # -q only adds to the table (and no verbatim capture of it exists): an odd value there
        # costs this one reading, not the chip.
        log.warning("mthreads-gmi -q, chip %d: %s", chip.index, e)
        power = None
    return replace(
        chip,
        uuid=uuid if uuid is not None and not units.is_missing(uuid) else chip.uuid,
        model=model_name(product) if product and not units.is_missing(product) else chip.model,
        power_w=power,
        ids=ids,
    )


# ----------------------------------------------------------------------------- the CLI reader


class CliReader:
    """`mthreads-gmi` for the table, then `mthreads-gmi -q` for power, UUID and serial."""

    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = 10.0) -> None:
        self.runner: ToolRunner = runner or SubprocessRunner(timeout_s=timeout_s, extra_dirs=TOOL_DIRS)

    def read(self) -> NodeSnapshot:
        snapshot = parse_summary(self.runner.run([TOOLS[0]]))
        try:
            sections = parse_query(self.runner.run([TOOLS[0], "-q"]))
        except ToolTimeout:
            raise
        except ToolError as e:
            # The table alone still lists every chip; power and UUIDs wait for the next read.
            log.warning("mthreads-gmi -q failed (%s); reporting the summary table only", e)
            sections = []
        return replace(snapshot, devices=tuple(_merge_query(snapshot.devices, sections)))

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(_POWER_LIMIT_NONE)

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- MTML via pymtml

MTML_ERROR_NOT_SUPPORTED = 4
MTML_ERROR_FUNCTION_NOT_FOUND = 667
MTML_ERROR_GPU_IS_LOST = 669
MTML_MEMORY_ERROR_TYPE_CORRECTED = 0
MTML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
MTML_VOLATILE_ECC = 0
MTML_MEMORY_LOCATION_DRAM = 0x1
MTML_MTLINK_STATE_UP = 1


class _ChipLost(Exception):
    pass


def _import_pymtml() -> Any:
    # Imported by name: pymtml ships no type information, and Corral must load without it.
    try:
        return importlib.import_module("pymtml")
    except ImportError as e:
        raise LibraryUnavailable(
            "Moore Threads' binding pymtml (pip: mthreads-ml-py) is not installed"
        ) from e


def _bind_library(pymtml: Any, library: Any) -> None:
    """Point pymtml at the library Corral loaded. pymtml only loads `libmtml.so.2` by soname
    through the loader path; Corral also takes an explicit path (configuration, tests), so it
    hands pymtml that CDLL, and drops pymtml's cache of function pointers from another one."""
    with pymtml.libLoadLock:
        current = pymtml.mtmlLib
        if current is None or getattr(current, "_name", None) != getattr(library, "_name", None):
            pymtml.mtmlLib = library
            cache = getattr(pymtml, "_mtmlGetFunctionPointer_cache", None)
            if isinstance(cache, dict):
                cache.clear()


@dataclass
class _Chip:
    """What MTML answered for one chip, and the chips its UP MTLinks reach."""

    index: int
    reading: ChipReading
    peers: set[int] = field(default_factory=set)


class LibraryReader:
    """MTML through pymtml. LibraryUnavailable when pymtml or libmtml is absent or will not init."""

    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._mtml = _import_pymtml()
        _bind_library(self._mtml, load_library(LIBRARY_NAMES, LIBRARY_DIRS, library_path))
        try:
            self._mtml.mtmlLibraryInit()
        except self._mtml.MTMLError as e:
            raise LibraryUnavailable(f"libmtml is installed but would not initialise: {_describe(e)}") from e
        self._open = True
        self._driver = self._driver_version()
        self._last_good: dict[int, ChipReading] = {}  # each chip's last reading while it answered

    def _driver_version(self) -> str:
        mtml = self._mtml
        try:
            system = mtml.mtmlLibraryInitSystem()
        except mtml.MTMLError:
            return ""
        try:
            return str(mtml.mtmlSystemGetDriverVersion(system))
        except mtml.MTMLError:
            return ""
        finally:
            self._quietly(mtml.mtmlLibraryFreeSystem, system)

    def read(self) -> NodeSnapshot:
        try:
            count = int(self._mtml.mtmlLibraryCountDevice())
        except self._mtml.MTMLError as e:
            raise SnapshotError(f"libmtml: cannot count devices: {_describe(e)}") from e
        chips = [self._read_chip(i) for i in range(count)]
        islands = _islands(chips)
        return NodeSnapshot(
            vendor=VENDOR,
            source=f"libmtml {self._driver}".strip(),
            devices=tuple(c.reading for c in chips),
            interconnect=INTERCONNECT if islands else PCIE,
            islands=islands,
        )

    def _ask(self, call: Callable[..., Any], *args: Any) -> Any:
        """A reading the chip may not offer: None unless the chip fell off the bus."""
        try:
            return call(*args)
        except self._mtml.MTMLError as e:
            if getattr(e, "value", None) == MTML_ERROR_GPU_IS_LOST:
                raise _ChipLost(_describe(e)) from e
            return None

    def _quietly(self, call: Callable[..., Any], *args: Any) -> None:
        try:
            call(*args)
        except self._mtml.MTMLError as e:
            log.debug("libmtml: %s: %s", getattr(call, "__name__", call), _describe(e))

    def _read_chip(self, index: int) -> _Chip:
        mtml = self._mtml
        base = ChipReading(vendor=VENDOR, model="", index=index)
        try:
            device = mtml.mtmlLibraryInitDeviceByIndex(index)
        except mtml.MTMLError as e:
            if getattr(e, "value", None) == MTML_ERROR_GPU_IS_LOST:
                return self._remember(_Chip(index, replace(base, healthy=False, lost=True)))
            raise SnapshotError(f"libmtml: cannot open chip {index}: {_describe(e)}") from e
        chip = _Chip(index, base)
        try:
            chip.reading = self._identity(device, base)
            chip.reading = self._telemetry(device, chip.reading)
            chip.peers = self._mtlink_peers(device)
        except _ChipLost:
            chip.reading = replace(chip.reading, healthy=False, lost=True)
        finally:
            self._quietly(mtml.mtmlLibraryFreeDevice, device)
        return self._remember(chip)

    def _remember(self, chip: _Chip) -> _Chip:
        """A lost chip keeps the model, UUID and bus id it had when it last answered."""
        known = self._last_good.get(chip.index)
        if not chip.reading.lost:
            self._last_good[chip.index] = chip.reading
        elif known is not None:
            r = chip.reading
            chip.reading = replace(
                r,
                model=r.model or known.model,
                uuid=r.uuid or known.uuid,
                bus_id=r.bus_id or known.bus_id,
                ids=r.ids or known.ids,
            )
        return chip

    def _identity(self, device: Any, chip: ChipReading) -> ChipReading:
        mtml = self._mtml
        serial = self._ask(mtml.mtmlDeviceGetSerialNumber, device)
        pci = self._ask(mtml.mtmlDeviceGetPciInfo, device)
        return replace(
            chip,
            model=model_name(str(self._ask(mtml.mtmlDeviceGetName, device) or "")),
            uuid=str(self._ask(mtml.mtmlDeviceGetUUID, device) or ""),
            bus_id=_bus_id(pci),
            ids={"serial": str(serial)} if serial and not units.is_missing(str(serial)) else {},
        )

    def _telemetry(self, device: Any, chip: ChipReading) -> ChipReading:
        mtml = self._mtml
        power_mw = self._ask(mtml.mtmlDeviceGetPowerUsage, device)
        used = total = uncorrected = corrected = utilization = temperature = None
        memory = self._ask(mtml.mtmlDeviceInitMemory, device)
        if memory is not None:
            try:
                total = self._ask(mtml.mtmlMemoryGetTotal, memory)
                used = self._ask(mtml.mtmlMemoryGetUsed, memory)
                uncorrected = self._ecc_count(memory, MTML_MEMORY_ERROR_TYPE_UNCORRECTED)
                corrected = self._ecc_count(memory, MTML_MEMORY_ERROR_TYPE_CORRECTED)
            finally:
                self._quietly(mtml.mtmlDeviceFreeMemory, memory)
        gpu = self._ask(mtml.mtmlDeviceInitGpu, device)
        if gpu is not None:
            try:
                utilization = self._ask(mtml.mtmlGpuGetUtilization, gpu)
                temperature = self._ask(mtml.mtmlGpuGetTemperature, gpu)
            finally:
                self._quietly(mtml.mtmlDeviceFreeGpu, gpu)
        return replace(
            chip,
            memory_total_bytes=None if total is None else int(total),
            memory_used_bytes=None if used is None else int(used),
            power_w=None if power_mw is None else int(power_mw) / 1000.0,
            temperature_c=None if temperature is None else float(temperature),
            utilization_pct=None if utilization is None else float(utilization),
            # GPUStack's rule (research §4.4): uncorrected DRAM ECC errors make a chip unhealthy.
            healthy=not (uncorrected or 0) > 0,
            ecc_uncorrected_total=uncorrected,
            ecc_corrected_total=corrected,
        )

    def _ecc_count(self, memory: Any, error_type: int) -> int | None:
        count = self._ask(
            self._mtml.mtmlMemoryGetEccErrorCounter,
            memory,
            error_type,
            MTML_VOLATILE_ECC,
            MTML_MEMORY_LOCATION_DRAM,
        )
        return None if count is None else int(count)

    def _mtlink_peers(self, device: Any) -> set[int]:
        """Indices of the chips this one reaches over an MTLink that is UP."""
        mtml = self._mtml
        spec = self._ask(mtml.mtmlDeviceGetMtLinkSpec, device)
        links = int(getattr(spec, "linkNum", 0) or 0) if spec is not None else 0
        peers: set[int] = set()
        for link in range(links):
            if self._ask(mtml.mtmlDeviceGetMtLinkState, device, link) != MTML_MTLINK_STATE_UP:
                continue
            # The remote handle is the library's own (not opened by index), so it is not freed.
            remote = self._ask(mtml.mtmlDeviceGetMtLinkRemoteDevice, device, link)
            peer = None if remote is None else self._ask(mtml.mtmlDeviceGetIndex, remote)
            if peer is not None:
                peers.add(int(peer))
        return peers

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(_POWER_LIMIT_NONE)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._quietly(self._mtml.mtmlLibraryShutDown)


def _describe(error: BaseException) -> str:
    code = getattr(error, "value", None)
    names = {MTML_ERROR_GPU_IS_LOST: "GPU is lost", MTML_ERROR_NOT_SUPPORTED: "not supported"}
    return f"MTML error {code} ({names.get(code, type(error).__name__)})" if code is not None else str(error)


def _bus_id(pci: Any) -> str:
    if pci is None:
        return ""
    sbdf = getattr(pci, "sbdf", b"")
    text = sbdf.decode("ascii", "replace") if isinstance(sbdf, bytes) else str(sbdf)
    return pci_bus_id(text) or bus_id_text(int(pci.segment), int(pci.bus), int(pci.device), 0)


def _islands(chips: Sequence[_Chip]) -> tuple[tuple[int, ...], ...]:
    """Chips joined by UP MTLinks, as connected groups of two or more; a link to a chip this
    read did not list (another node's view, a stale index) is not counted."""
    listed = {c.index for c in chips}
    return link_islands((c.index, peer) for c in chips for peer in c.peers if peer in listed)
