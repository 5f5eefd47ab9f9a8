"""A small ctypes binding to Enflame's EFML (libefml.so): only the calls Corral reads.

EFML has two generations in one library (research §8.1; efml.h, "Enflame Management Library",
2024-2025, read in the public code index [S]):
- the NVML-shaped "v2" API on opaque device handles (efmlInit, efmlDeviceGetHandleByIndex_v2,
  efmlDeviceGetPowerUsage in mW, ...), returning efmlReturn_v1_t;
- the legacy API keyed by device index (EfmlInit, EfmlGetDevHealth, EfmlGetDevRmaDetails,
  EfmlGetErrorRecords, ...), returning the older efmlReturn_t.
Health, RMA, cable and reset records exist only in the legacy API, so both are bound. Legacy calls
the library does not export are reported as absent (None), never as errors.

This module only translates C into Python values and raises EfmlCallError with the vendor's
return code; agents/backends/vendors/enflame.py decides what the values mean.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

from agents.backends.vendors.library import LibraryCallError, LibraryUnavailable, load_library

# efmlReturn_v1_t (v2 API), from efml.h [S].
SUCCESS = 0
ERROR_NOT_SUPPORTED = 3
ERROR_INSUFFICIENT_POWER = 8
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GCU_IS_LOST = 15
ERROR_RESET_REQUIRED = 16
ERROR_NO_DATA = 21
_V2_MEANINGS = {
    1: "EFML_ERROR_UNINITIALIZED", 2: "EFML_ERROR_INVALID_ARGUMENT", 3: "EFML_ERROR_NOT_SUPPORTED",
    4: "EFML_ERROR_NO_PERMISSION", 6: "EFML_ERROR_NOT_FOUND", 7: "EFML_ERROR_INSUFFICIENT_SIZE",
    8: "EFML_ERROR_INSUFFICIENT_POWER", 9: "EFML_ERROR_DRIVER_NOT_LOADED", 10: "EFML_ERROR_TIMEOUT",
    11: "EFML_ERROR_IRQ_ISSUE", 12: "EFML_ERROR_LIBRARY_NOT_FOUND", 13: "EFML_ERROR_FUNCTION_NOT_FOUND",
    14: "EFML_ERROR_CORRUPTED_INFOROM", 15: "EFML_ERROR_GCU_IS_LOST", 16: "EFML_ERROR_RESET_REQUIRED",
    17: "EFML_ERROR_OPERATING_SYSTEM", 18: "EFML_ERROR_LIB_RM_VERSION_MISMATCH", 19: "EFML_ERROR_IN_USE",
    20: "EFML_ERROR_MEMORY", 21: "EFML_ERROR_NO_DATA", 25: "EFML_ERROR_ARGUMENT_VERSION_MISMATCH",
    26: "EFML_ERROR_DEPRECATED", 27: "EFML_ERROR_NOT_READY", 28: "EFML_ERROR_GCU_NOT_FOUND",
    29: "EFML_ERROR_INVALID_STATE", 999: "EFML_ERROR_UNKNOWN",
}  # fmt: skip
# Values that mean "this device has no such reading", not "the device is in trouble".
ABSENT = frozenset({ERROR_NOT_SUPPORTED, ERROR_FUNCTION_NOT_FOUND, ERROR_NO_DATA})

TEMPERATURE_GCU = 0  # efmlTemperatureSensors_t EFML_TEMPERATURE_GCU
CABLE_NOT_QUALIFIED = 0  # efmlCableQualifySts_t
_TEXT_BUFFER = 128  # MAX_CHAR_BUFF_LEN in efml.h
_MAX_RECORDS = 64


class EfmlCallError(LibraryCallError):
    """An EFML call failed; `code` is its efmlReturn value."""


class EfmlLegacyCallError(EfmlCallError):
    """A legacy call failed; `code` is the older efmlReturn_t, whose numbers mean other things
    than the v2 codes (8 is EFML_ERROR_INVALID_INPUT there, not INSUFFICIENT_POWER)."""


class _Memory2(ctypes.Structure):  # efmlMemory_v2_t, all sizes in bytes
    _fields_ = (
        ("version", ctypes.c_uint),
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
        ("reserved", ctypes.c_ulonglong),
    )


# EFML_STRUCT_VERSION(Memory, 2): the struct size with the version number in the top byte.
MEMORY_V2_VERSION = ctypes.sizeof(_Memory2) | (2 << 24)


class _Utilization(ctypes.Structure):  # efmlUtilization_t, percent
    _fields_ = (("gcu", ctypes.c_uint), ("memory", ctypes.c_uint))


class _PciInfo(ctypes.Structure):  # efmlPciInfo_t
    _fields_ = (
        ("domain", ctypes.c_uint),
        ("bus", ctypes.c_uint),
        ("device", ctypes.c_uint),
        ("function", ctypes.c_uint),
        ("pciDeviceId", ctypes.c_uint),
        ("pciSubSystemId", ctypes.c_uint),
        ("busId", ctypes.c_char * 32),
    )


class _RmaDetails(ctypes.Structure):  # efmlRmaDetails_t
    _fields_ = (
        ("is_dtu_support_rma", ctypes.c_bool),
        ("flags", ctypes.c_bool),
        ("dbe_count", ctypes.c_uint32),
    )


class _ErrorRecord(ctypes.Structure):  # efmlErrorRecord_t
    _fields_ = (
        ("event_id", ctypes.c_ulonglong),
        ("reset_type", ctypes.c_int),
        ("source", ctypes.c_int),
        ("time_stamp", ctypes.c_ulonglong),
        ("bdf", ctypes.c_uint),
    )


def _check(call: str, code: int) -> None:
    if code != SUCCESS:
        raise EfmlCallError(call, code, _V2_MEANINGS.get(code, ""))


class Efml:
    """libefml.so, loaded and initialised; raises LibraryUnavailable where it cannot be."""

    def __init__(self, names: Sequence[str], dirs: Sequence[str], explicit: str | None = None) -> None:
        self._lib = load_library(names, dirs, explicit)
        try:
            init = self._lib.efmlInit
        except AttributeError:
            raise LibraryUnavailable("libefml has no efmlInit: too old for the v2 API") from None
        init.restype = ctypes.c_int
        code = init()
        if code != SUCCESS:
            raise LibraryUnavailable(f"efmlInit returned {code} ({_V2_MEANINGS.get(code, 'unknown')})")
        self._legacy_ready: bool | None = None

    # ---- v2 API, on device handles
    def _v2(self, name: str, *args: Any) -> None:
        fn = getattr(self._lib, name, None)
        if fn is None:  # an older libefml without this call: the reading is absent
            raise EfmlCallError(name, ERROR_FUNCTION_NOT_FOUND, "not exported by this libefml")
        fn.restype = ctypes.c_int
        _check(name, fn(*args))

    def count(self) -> int:
        value = ctypes.c_uint()
        self._v2("efmlDeviceGetCount_v2", ctypes.byref(value))
        return value.value

    def handle(self, index: int) -> ctypes.c_void_p:
        device = ctypes.c_void_p()
        self._v2("efmlDeviceGetHandleByIndex_v2", ctypes.c_uint(index), ctypes.byref(device))
        return device

    def name(self, device: ctypes.c_void_p) -> str:
        buffer = ctypes.create_string_buffer(_TEXT_BUFFER)
        self._v2("efmlDeviceGetName", device, buffer, ctypes.c_uint(_TEXT_BUFFER))
        return buffer.value.decode("utf-8", "replace")

    def bus_id(self, device: ctypes.c_void_p) -> str:
        info = _PciInfo()
        self._v2("efmlDeviceGetPciInfo_v3", device, ctypes.byref(info))
        raw: bytes = info.busId
        return raw.decode("ascii", "replace")

    def power_mw(self, device: ctypes.c_void_p) -> int:
        value = ctypes.c_uint()
        self._v2("efmlDeviceGetPowerUsage", device, ctypes.byref(value))
        return value.value

    def power_limit_mw(self, device: ctypes.c_void_p) -> int:
        value = ctypes.c_uint()
        self._v2("efmlDeviceGetEnforcedPowerLimit", device, ctypes.byref(value))
        return value.value

    def temperature_c(self, device: ctypes.c_void_p) -> int:
        value = ctypes.c_int()
        self._v2("efmlDeviceGetTemperature", device, ctypes.c_int(TEMPERATURE_GCU), ctypes.byref(value))
        return value.value

    def memory_bytes(self, device: ctypes.c_void_p) -> tuple[int, int]:
        """(total, used) in bytes."""
        memory = _Memory2(version=MEMORY_V2_VERSION)
        self._v2("efmlDeviceGetMemoryInfo_v2", device, ctypes.byref(memory))
        return memory.total, memory.used

    def utilization_pct(self, device: ctypes.c_void_p) -> int:
        rates = _Utilization()
        self._v2("efmlDeviceGetUtilizationRates", device, ctypes.byref(rates))
        return int(rates.gcu)

    # ---- legacy API, by device index; None where the library lacks the call
    def _legacy(self, name: str) -> Callable[..., int] | None:
        if self._legacy_ready is None:
            self._legacy_ready = self._legacy_init()
        fn = getattr(self._lib, name, None) if self._legacy_ready else None
        if fn is not None:
            fn.restype = ctypes.c_int
        return fn

    def _legacy_init(self) -> bool:
        init = getattr(self._lib, "EfmlInit", None)
        if init is None:
            return False
        init.restype = ctypes.c_int
        init.argtypes = (ctypes.c_bool,)
        return bool(init(False) == SUCCESS)  # no_driver=False: talk to the loaded driver

    def _legacy_call(self, name: str, *args: Any) -> bool:
        fn = self._legacy(name)
        if fn is None:
            return False
        code = fn(*args)
        if code != SUCCESS:
            raise EfmlLegacyCallError(name, code)
        return True

    def health(self, index: int) -> bool | None:
        value = ctypes.c_bool()
        if not self._legacy_call("EfmlGetDevHealth", ctypes.c_uint32(index), ctypes.byref(value)):
            return None
        return bool(value.value)

    def rma(self, index: int) -> tuple[bool, int] | None:
        """(RMA flag, double-bit error count)."""
        details = _RmaDetails()
        if not self._legacy_call("EfmlGetDevRmaDetails", ctypes.c_uint32(index), ctypes.byref(details)):
            return None
        return bool(details.flags), int(details.dbe_count)

    def cable_qualified(self, index: int) -> bool | None:
        status = ctypes.c_int()
        if not self._legacy_call("EfmlGetCableQualify", ctypes.c_uint32(index), ctypes.byref(status)):
            return None
        return status.value != CABLE_NOT_QUALIFIED

    def reset_sources(self, index: int) -> list[int] | None:
        """The efmlResetSrc_t of each recorded reset, oldest records first."""
        records = (_ErrorRecord * _MAX_RECORDS)()
        total = ctypes.c_uint32()
        args = (ctypes.c_uint32(index), ctypes.c_uint32(_MAX_RECORDS), records, ctypes.byref(total))
        if not self._legacy_call("EfmlGetErrorRecords", *args):
            return None
        return [records[i].source for i in range(min(total.value, _MAX_RECORDS))]

    def text(self, call: str, index: int) -> str | None:
        """EfmlGetDevUuid / EfmlGetDevSn: a string into a MAX_CHAR_BUFF_LEN buffer."""
        buffer = ctypes.create_string_buffer(_TEXT_BUFFER)
        if not self._legacy_call(call, ctypes.c_uint32(index), buffer):
            return None
        return buffer.value.decode("utf-8", "replace").strip()

    def shutdown(self) -> None:
        fn = getattr(self._lib, "efmlShutdown", None)
        if fn is not None:
            fn()
