"""Cambricon MLUs through CNDev (libcndev.so), with ctypes.

Signatures and struct layouts are from cndev.h as Cambricon ships it with mlu-exporter (research
§2.1 [V]): every getter is `cndevRet_t f(struct *out, cndevDevice_t device)`, a device handle is
an int32 from cndevGetDeviceHandleByIndex, versioned structs carry `version` first. Units
[V header]: power W (integer; decimals "not supported"), temperature °C, memory MB (MiB).

Versioned structs are declared with spare room at the end: a newer driver that knows a longer
struct writes past what this file names rather than past the buffer.
"""

from __future__ import annotations

import ctypes
import logging
from ctypes import Structure, byref, c_char_p, c_int, c_int32, c_int64, c_uint16, c_uint32, c_uint64
from typing import Any

from agents.backends.base import PowerLimitError
from agents.backends.vendors.cambricon_common import (
    INCIDENT_BASE,
    LIBRARY_DIRS,
    LIBRARY_NAMES,
    VENDOR,
    RawChip,
    assemble,
    fault,
)
from agents.backends.vendors.library import StatusCalls, load_library
from agents.backends.vendors.smi_table import bus_id_text
from agents.backends.vendors.snapshot import MIB, NodeSnapshot, check_power_range

log = logging.getLogger("corral.agent.cambricon")

API_VERSION = 5  # CNDEV_VERSION_5: what Cambricon's device plugin stamps its structs with
SUCCESS = 0
NOT_SUPPORTED, NO_PERMISSION = 10, 13
ERRORS = {
    1: "no driver", 2: "driver version too low", 3: "API version not supported", 4: "not initialised",
    5: "invalid argument", 6: "invalid device id", 7: "unknown error", 8: "out of memory",
    9: "insufficient space", 10: "not supported", 11: "invalid link", 12: "no MLU devices",
    13: "no permission", 14: "not found", 15: "in use", 16: "duplicate", 17: "timed out",
    18: "device in problem",
}  # fmt: skip
CARD_NAMES = {23: "MLU370", 24: "MLU365", 26: "MLU590", 27: "MLU585", 30: "MLU580", 31: "MLU570"}
XID_MAX_COUNT = 32  # CNDEV_XID_MAX_COUNT in the newest header read (XIDs 0..31) [U for other drivers]
HEALTH_PASS, HEALTH_WARN, HEALTH_FAIL = 0, 10, 20
DEVICE_GOOD = 1
MAX_INCIDENTS = 64


class _CardInfo(Structure):
    _fields_ = [("version", c_int), ("number", c_uint32), ("spare", c_uint32 * 8)]


class _UUID(Structure):
    _fields_ = [
        ("version", c_int),
        ("uuid", ctypes.c_ubyte * 37),
        ("ncsUUID64", c_uint64),
        ("spare", c_uint64 * 8),
    ]


class _CardSN(Structure):
    _fields_ = [("version", c_int), ("sn", c_int64), ("motherBoardSn", c_int64), ("spare", c_uint64 * 8)]


class _PCIeInfoV2(Structure):
    _fields_ = [
        ("subsystemId", c_uint32), ("deviceId", c_uint32),
        ("vendor", c_uint16), ("subsystemVendor", c_uint16),
        ("domain", c_uint32), ("bus", c_uint32), ("device", c_uint32), ("function", c_uint32),
        ("moduleId", c_uint16), ("slotId", c_uint16), ("reserved", c_uint32 * 8),
    ]  # fmt: skip


class _MemoryV2(Structure):
    _fields_ = [
        ("physicalMemoryTotal", c_int64), ("physicalMemoryUsed", c_int64), ("reservedMemory", c_int64),
        ("virtualMemoryTotal", c_int64), ("virtualMemoryUsed", c_int64), ("globalMemory", c_uint64),
        ("reserved", c_uint64 * 16),
    ]  # fmt: skip


class _DevicePower(Structure):
    _fields_ = [
        ("usage", c_int32), ("cap", c_int32), ("machine", c_int32), ("tdp", c_int32), ("maxPower", c_int32),
        ("reserved", c_int32 * 16),
    ]  # fmt: skip


class _Temperature(Structure):
    _fields_ = [
        ("version", c_int), ("board", c_int), ("cluster", c_int * 20), ("memoryDie", c_int * 8),
        ("chip", c_int),
        ("airInlet", c_int), ("airOutlet", c_int), ("memory", c_int), ("videoInput", c_int), ("cpu", c_int),
        ("spare", c_int * 16),
    ]  # fmt: skip


class _Utilization(Structure):
    _fields_ = [("version", c_int), ("average", c_int), ("cores", c_int * 80), ("spare", c_int * 16)]


class _ECC(Structure):
    _fields_ = [
        ("version", c_int), ("oneBitError", c_uint64), ("multipleOneError", c_uint64),
        ("multipleError", c_uint64),
        ("multipleMultipleError", c_uint64), ("correctedError", c_uint64), ("uncorrectedError", c_uint64),
        ("totalError", c_uint64), ("addressForbiddenError", c_uint64), ("spare", c_uint64 * 8),
    ]  # fmt: skip


class _HealthV1(Structure):
    _fields_ = [("version", c_int), ("health", c_int), ("deviceState", c_int), ("driverState", c_int)]


class _ErrorDetail(Structure):
    _fields_ = [
        ("msg", ctypes.c_char * 512), ("device_id", c_uint32), ("bdf", c_uint32), ("code", c_int),
        ("category", c_uint32), ("severity", c_uint32),
    ]  # fmt: skip


class _Incident(Structure):
    _fields_ = [("system", c_int), ("health", c_int), ("error", _ErrorDetail)]


class _HealthV2(Structure):
    _fields_ = [
        ("health", c_int), ("deviceState", c_int), ("driverState", c_int), ("overallHealth", c_int),
        ("incident_count", c_uint32), ("incidents", _Incident * MAX_INCIDENTS), ("reserved", c_uint32 * 8),
    ]  # fmt: skip


class _XidErrorV2(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("xidSupported", c_uint64 * XID_MAX_COUNT), ("xidCount", c_uint64 * XID_MAX_COUNT),
        ("spare", c_uint64 * 32),
    ]  # fmt: skip


class _PowerLimit(Structure):
    _fields_ = [("version", c_int32), ("powerLimit", c_uint16), ("powerLimitDecimal", c_uint16)]


class _PowerLimitRange(Structure):
    _fields_ = [
        ("version", c_int32), ("minPowerLimit", c_uint16), ("minPowerLimitDecimal", c_uint16),
        ("maxPowerLimit", c_uint16), ("maxPowerLimitDecimal", c_uint16),
    ]  # fmt: skip


class _CardName(Structure):
    _fields_ = [("version", c_int), ("id", c_int)]


class _LinkStatus(Structure):
    _fields_ = [("version", c_int), ("isActive", c_int), ("serdesState", c_int), ("spare", c_int * 8)]


class _LinkRemote(Structure):
    # The prefix every header version shares; later fields (MAC, port name) vary in length.
    _fields_ = [
        ("version", c_int), ("mcSn", c_uint64), ("baSn", c_uint64),
        ("slotId", c_uint32), ("portId", c_uint32),
        ("devIp", ctypes.c_ubyte * 16), ("uuid", ctypes.c_ubyte * 37), ("rest", ctypes.c_ubyte * 512),
    ]  # fmt: skip


def _text(raw: Any) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("ascii", "replace").strip()


class LibraryReader:
    """MLUs through libcndev.so. `library_path` names the .so (tests, odd installs)."""

    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._lib = load_library(LIBRARY_NAMES, LIBRARY_DIRS, explicit=library_path)
        self._calls = StatusCalls(self._lib, ERRORS, log)
        self._calls.init("cndevInit", c_int(0), library=library_path or LIBRARY_NAMES[0], expected="CNDev")
        self._handles: dict[int, int] = {}

    def _get(self, name: str, out: Structure, handle: int) -> bool:
        """Fill `out` (every CNDev getter is `f(struct *out, handle)`); False where the library
        lacks the call or the chip does not support it."""
        return self._calls.ok(name, byref(out), c_int32(handle))

    @staticmethod
    def _versioned(kind: type[Structure]) -> Structure:
        out = kind()
        out.version = API_VERSION
        return out

    def _handle(self, index: int) -> int:
        if index not in self._handles:
            if self._calls.has("cndevGetDeviceHandleByIndex"):
                handle = c_int32()
                self._calls.must("cndevGetDeviceHandleByIndex", c_int(index), byref(handle))
                self._handles[index] = handle.value
            else:  # drivers before handles took the card index itself
                self._handles[index] = index
        return self._handles[index]

    # -- VendorReader ----------------------------------------------------------------------

    def read(self) -> NodeSnapshot:
        info = _CardInfo(version=API_VERSION)
        self._calls.must("cndevGetDeviceCount", byref(info))
        chips = [self._chip(i) for i in range(info.number)]
        return assemble(chips, "libcndev", self._links(chips))

    def set_power_limit(self, index: int, watts: float) -> None:
        if not self._calls.has("cndevSetPowerManagementLimitation"):
            raise PowerLimitError("this libcndev has no cndevSetPowerManagementLimitation")
        handle = self._handle(index)
        check_power_range(f"MLU {index}", watts, *self._limit_range(handle))
        limit = _PowerLimit(version=API_VERSION, powerLimit=round(watts))  # CNDev takes whole watts
        code = self._calls.call("cndevSetPowerManagementLimitation", byref(limit), c_int32(handle))
        if code != SUCCESS:
            why = ERRORS.get(code, "unknown error")
            raise PowerLimitError(f"MLU {index}: cndevSetPowerManagementLimitation returned {code} ({why})")

    def close(self) -> None:
        if self._calls.has("cndevRelease"):
            self._calls.call("cndevRelease")

    # -- one chip --------------------------------------------------------------------------

    def _chip(self, index: int) -> RawChip:
        handle = self._handle(index)
        chip = RawChip(index=index, model=self._model(handle))
        chip.uuid = self._uuid(handle)
        chip.serial = self._serial(handle)
        chip.bus_id = self._bus_id(handle)
        self._read_memory(chip, handle)
        self._read_power(chip, handle)
        self._read_sensors(chip, handle)
        self._read_health(chip, handle)
        self._read_ecc(chip, handle)
        return chip

    def _model(self, handle: int) -> str:
        if self._calls.has("cndevGetCardNameStringByDevId"):
            fn = self._lib.cndevGetCardNameStringByDevId
            fn.restype = c_char_p
            name = fn(c_int32(handle))
            if name:
                return bytes(name).decode("ascii", "replace").strip()
        card = self._versioned(_CardName)
        return CARD_NAMES.get(card.id, "MLU") if self._get("cndevGetCardName", card, handle) else "MLU"

    def _uuid(self, handle: int) -> str:
        out = self._versioned(_UUID)
        found = _text(out.uuid) if self._get("cndevGetUUID", out, handle) else ""
        return f"MLU-{found}" if found and not found.startswith("MLU-") else found

    def _serial(self, handle: int) -> str:
        out = self._versioned(_CardSN)
        if not self._get("cndevGetCardSN", out, handle) or not out.sn:
            return ""
        return f"{out.sn & 0xFFFFFFFFFFFFFFFF:x}"

    def _bus_id(self, handle: int) -> str:
        out = _PCIeInfoV2()
        if not self._get("cndevGetPCIeInfoV2", out, handle):
            return ""
        return bus_id_text(out.domain, out.bus, out.device, out.function)

    def _read_memory(self, chip: RawChip, handle: int) -> None:
        out = _MemoryV2()
        if self._get("cndevGetMemoryUsageV2", out, handle):
            chip.memory_total_bytes = out.physicalMemoryTotal * MIB
            chip.memory_used_bytes = out.physicalMemoryUsed * MIB

    def _read_power(self, chip: RawChip, handle: int) -> None:
        usage = _DevicePower()
        if self._get("cndevGetDevicePowerInfo", usage, handle):
            chip.power_w = float(usage.usage)
        limit = self._versioned(_PowerLimit)
        if self._get("cndevGetPowerManagementLimitation", limit, handle):
            chip.power_limit_w = float(limit.powerLimit)
        default = self._versioned(_PowerLimit)
        if self._get("cndevGetPowerManagementDefaultLimitation", default, handle):
            chip.power_limit_default_w = float(default.powerLimit)
        chip.power_limit_min_w, chip.power_limit_max_w = self._limit_range(handle)
        chip.power_limit_settable = self._calls.has("cndevSetPowerManagementLimitation")

    def _limit_range(self, handle: int) -> tuple[float | None, float | None]:
        out = self._versioned(_PowerLimitRange)
        if not self._get("cndevGetPowerManagementLimitationRange", out, handle):
            return None, None
        return float(out.minPowerLimit), float(out.maxPowerLimit)

    def _read_sensors(self, chip: RawChip, handle: int) -> None:
        temp = self._versioned(_Temperature)
        if self._get("cndevGetTemperatureInfo", temp, handle):
            chip.temperature_c = float(temp.board)
        util = self._versioned(_Utilization)
        if self._get("cndevGetDeviceUtilizationInfo", util, handle):
            chip.utilization_pct = float(util.average)

    def _read_health(self, chip: RawChip, handle: int) -> None:
        v2 = _HealthV2()
        if self._get("cndevGetCardHealthStateV2", v2, handle):
            chip.device_good = v2.deviceState == DEVICE_GOOD
            chip.driver_state = int(v2.driverState)
            for incident in v2.incidents[: min(v2.incident_count, MAX_INCIDENTS)]:
                if incident.health in (HEALTH_WARN, HEALTH_FAIL):
                    chip.faults.append(fault(INCIDENT_BASE + int(incident.error.code)))
        else:
            v1 = self._versioned(_HealthV1)
            if self._get("cndevGetCardHealthState", v1, handle):
                # Older drivers fill `health` only; 1 is good, as GPUStack and the plugin read it.
                chip.device_good = v1.health == DEVICE_GOOD
        xids = _XidErrorV2(version=API_VERSION)
        if self._get("cndevGetXidErrorV2", xids, handle):
            chip.faults.extend(fault(x) for x in range(1, XID_MAX_COUNT) if xids.xidCount[x])

    def _read_ecc(self, chip: RawChip, handle: int) -> None:
        out = self._versioned(_ECC)
        if self._get("cndevGetECCInfo", out, handle):
            chip.ecc_corrected_total = int(out.correctedError)
            chip.ecc_uncorrected_total = int(out.uncorrectedError)

    # -- MLU-Link --------------------------------------------------------------------------

    def _links(self, chips: list[RawChip]) -> list[tuple[int, int]] | None:
        """Observed MLU-Link pairs, or None where this libcndev cannot say (the documented
        bridge topology then applies)."""
        needed = ("cndevGetMLULinkPortNumber", "cndevGetMLULinkStatus", "cndevGetMLULinkRemoteInfo")
        if not all(self._calls.has(n) for n in needed):
            return None
        by_uuid = {c.uuid: c.index for c in chips if c.uuid}
        links: list[tuple[int, int]] = []
        for chip in chips:
            handle = self._handle(chip.index)
            ports = self._calls.call("cndevGetMLULinkPortNumber", c_int32(handle))
            for port in range(max(ports, 0)):
                peer = self._link_peer(handle, port, by_uuid)
                if peer is not None and peer != chip.index:
                    links.append((chip.index, peer))
        return links

    def _link_peer(self, handle: int, port: int, by_uuid: dict[str, int]) -> int | None:
        status = _LinkStatus(version=API_VERSION)
        if self._calls.call("cndevGetMLULinkStatus", byref(status), c_int32(handle), c_int(port)) != SUCCESS:
            return None
        if not status.isActive:
            return None
        remote = _LinkRemote(version=API_VERSION)
        if (
            self._calls.call("cndevGetMLULinkRemoteInfo", byref(remote), c_int32(handle), c_int(port))
            != SUCCESS
        ):
            return None
        uuid = _text(remote.uuid)
        return by_uuid.get(uuid if uuid.startswith("MLU-") else f"MLU-{uuid}")
