"""Huawei Ascend through libdcmi.so (DCMI), with ctypes.

Signatures and structs follow DCMI's header, Ascend/mind-cluster
component/ascend-common/devmanager/dcmi/dcmi_interface_api.h [V], cross-checked against
gpustack-runtime's pydcmi (read, not used). Units: power in 0.1 W, temperature in °C, memory in
MB (MiB) [V research §1.2]. DCMI addresses a chip by (card id, device id), which are npu-smi's
`-i` and `-c`; the logic id ASCEND_RT_VISIBLE_DEVICES takes comes from
`dcmi_get_device_logic_id`. Calls a driver does not export, or answers NOT_SUPPORT to, leave
their reading out; only the card list, the chip count and the logic id are required.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from agents.backends.base import PowerLimitError
from agents.backends.vendors.ascend_cli import NO_POWER_CAP
from agents.backends.vendors.ascend_model import (
    LIBRARY_DIRS,
    LIBRARY_NAMES,
    VENDOR,
    ChipFacts,
    assemble,
    effective_health,
    health_from_dcmi,
)
from agents.backends.vendors.library import LibraryCallError, LibraryUnavailable, load_library
from agents.backends.vendors.snapshot import MIB, NodeSnapshot, SnapshotError, VendorFault

_NAME_LEN = 32
_MAX_CARDS = 64
_MAX_ERROR_CODES = 128
_UNIT_NPU = 0  # enum dcmi_unit_type: NPU_TYPE 0, MCU_TYPE 1, CPU_TYPE 2
_VDIE = 1  # enum dcmi_die_type: NDIE 0, VDIE 1
_INPUT_AICORE = 2  # dcmi_get_device_utilization_rate input type for AI Core [V research §1.2]
# dcmi_get_topo_info_by_device_id answers: HCCS 3, SIO 6 (the A3 die pair), HCCS_SW 7 [V pydcmi].
_FAST_LINKS = frozenset({3, 6, 7})
# dcmi_mcu_get_power_info's "no reading" values [V: Huawei fan-control sample code treats
# 0x7FFD and 0x7FFF as failures and divides the rest by 10].
_MCU_POWER_INVALID = frozenset({0x7FFD, 0x7FFF})
_DEVICE_GONE = frozenset({-8007, -8008})  # INVALID_DEVICE_ID, DEVICE_NOT_EXIST
_FUNCTION_NOT_FOUND = -99998
_ERRORS = {
    -8001: "invalid parameter", -8002: "operation not permitted", -8005: "inner error",
    -8006: "timed out", -8007: "invalid device id", -8008: "device does not exist",
    -8012: "not ready", -8013: "not supported in a container", -8255: "not supported",
    _FUNCTION_NOT_FOUND: "not exported by this libdcmi",
}  # fmt: skip


class _ChipInfo(ctypes.Structure):
    _fields_ = [
        ("chip_type", ctypes.c_char * _NAME_LEN),
        ("chip_name", ctypes.c_char * _NAME_LEN),
        ("chip_ver", ctypes.c_char * _NAME_LEN),
        ("aicore_cnt", ctypes.c_uint),
    ]


class _PcieInfoAll(ctypes.Structure):
    _fields_ = [
        ("venderid", ctypes.c_uint),
        ("subvenderid", ctypes.c_uint),
        ("deviceid", ctypes.c_uint),
        ("subdeviceid", ctypes.c_uint),
        ("domain", ctypes.c_int),
        ("bdf_busid", ctypes.c_uint),
        ("bdf_deviceid", ctypes.c_uint),
        ("bdf_funcid", ctypes.c_uint),
        ("reserve", ctypes.c_char * 32),
    ]


class _DieId(ctypes.Structure):
    _fields_ = [("soc_die", ctypes.c_uint * 5)]


class _HbmInfo(ctypes.Structure):
    _fields_ = [
        ("memory_size", ctypes.c_ulonglong),  # MB
        ("freq", ctypes.c_uint),
        ("memory_usage", ctypes.c_ulonglong),  # MB
        ("temp", ctypes.c_int),
        ("bandwith_util_rate", ctypes.c_uint),
    ]


class _MemoryInfo(ctypes.Structure):  # struct dcmi_get_memory_info_stru (v3)
    _fields_ = [
        ("memory_size", ctypes.c_ulonglong),  # MB
        ("memory_available", ctypes.c_ulonglong),  # MB
        ("freq", ctypes.c_uint),
        ("hugepagesize", ctypes.c_ulong),
        ("hugepages_total", ctypes.c_ulong),
        ("hugepages_free", ctypes.c_ulong),
        ("utiliza", ctypes.c_uint),
        ("reserve", ctypes.c_char * 60),
    ]


class LibraryReader:
    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._lib: ctypes.CDLL | None = load_library(LIBRARY_NAMES, LIBRARY_DIRS, library_path)
        try:
            self._call("dcmi_init")
        except LibraryCallError as e:
            raise LibraryUnavailable(f"libdcmi loaded but unusable: {e}") from e
        # The topology changes only with the chips present; asked again only then.
        self._islands: dict[tuple[tuple[int, int, int], ...], list[list[int]]] = {}

    def read(self) -> NodeSnapshot:
        facts: list[ChipFacts] = []
        board_power: dict[int, float | None] = {}
        try:
            for card in self._card_list():
                chips = [self._chip(card, device) for device in self._npu_devices(card)]
                if chips and all(c.power_w is None for c in chips):
                    board_power[card] = self._mcu_power(card)
                facts.extend(chips)
        except LibraryCallError as e:
            raise SnapshotError(f"libdcmi: {e}") from e
        return assemble(facts, "libdcmi", board_power, self._topology(facts))

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(NO_POWER_CAP)

    def close(self) -> None:
        self._lib = None

    # ------------------------------------------------------------------ calls

    def _call(self, name: str, *args: Any) -> None:
        if self._lib is None:
            raise LibraryCallError(name, _FUNCTION_NOT_FOUND, "the reader is closed")
        function = getattr(self._lib, name, None)
        if function is None:
            raise LibraryCallError(name, _FUNCTION_NOT_FOUND, _ERRORS[_FUNCTION_NOT_FOUND])
        function.restype = ctypes.c_int
        code = int(function(*args))
        if code != 0:
            raise LibraryCallError(name, code, _ERRORS.get(code, ""))

    def _optional(self, name: str, *args: Any) -> bool:
        """A call whose failure only leaves a reading out."""
        try:
            self._call(name, *args)
        except LibraryCallError:
            return False
        return True

    # ------------------------------------------------------------------ enumeration

    def _card_list(self) -> list[int]:
        count, cards = ctypes.c_int(0), (ctypes.c_int * _MAX_CARDS)()
        self._call("dcmi_get_card_list", ctypes.byref(count), cards, ctypes.c_int(_MAX_CARDS))
        return list(cards[: max(0, min(count.value, _MAX_CARDS))])

    def _npu_devices(self, card: int) -> list[int]:
        """The card's NPU chips; an MCU or CPU unit is not a device (a unit whose type cannot be
        read is kept, as npu-exporter does)."""
        count = ctypes.c_int(0)
        self._call("dcmi_get_device_num_in_card", ctypes.c_int(card), ctypes.byref(count))
        kept = []
        for device in range(count.value):
            unit = ctypes.c_int(_UNIT_NPU)
            readable = self._optional(
                "dcmi_get_device_type", ctypes.c_int(card), ctypes.c_int(device), ctypes.byref(unit)
            )
            if not readable or unit.value == _UNIT_NPU:
                kept.append(device)
        return kept

    def _chip(self, card: int, device: int) -> ChipFacts:
        at = (ctypes.c_int(card), ctypes.c_int(device))
        logic = ctypes.c_int(0)
        self._call("dcmi_get_device_logic_id", ctypes.byref(logic), *at)
        health, faults, lost = self._health(at)
        used, total = self._memory(at)
        return ChipFacts(
            npu_id=card,
            chip_id=device,
            logic_id=logic.value,
            chip_name=self._chip_name(at),
            health=health,
            faults=faults,
            phy_id=self._phy_id(logic.value),
            bus_id=self._bus_id(at),
            uuid=self._vdie(at),
            power_w=self._tenths(self._int_reading("dcmi_get_device_power_info", at)),
            temperature_c=self._float(self._int_reading("dcmi_get_device_temperature", at)),
            utilization_pct=self._utilization(at),
            memory_used_bytes=used,
            memory_total_bytes=total,
            lost=lost,
        )

    # ------------------------------------------------------------------ readings

    def _health(self, at: tuple[ctypes.c_int, ctypes.c_int]) -> tuple[str, tuple[VendorFault, ...], bool]:
        value = ctypes.c_uint(0)
        try:
            self._call("dcmi_get_device_health", *at, ctypes.byref(value))
        except LibraryCallError as e:
            return "UNKNOWN", (), e.code in _DEVICE_GONE
        codes = self._error_codes(at)
        faults = tuple(VendorFault(code, self._error_text(at, code)) for code in codes)
        return effective_health(health_from_dcmi(value.value), codes), faults, False

    def _error_codes(self, at: tuple[ctypes.c_int, ctypes.c_int]) -> tuple[int, ...]:
        count, codes = ctypes.c_int(0), (ctypes.c_uint * _MAX_ERROR_CODES)()
        args = (*at, ctypes.byref(count), codes, ctypes.c_uint(_MAX_ERROR_CODES))
        if not self._optional("dcmi_get_device_errorcode_v2", *args):
            return ()
        return tuple(dict.fromkeys(codes[: max(0, min(count.value, _MAX_ERROR_CODES))]))

    def _error_text(self, at: tuple[ctypes.c_int, ctypes.c_int], code: int) -> str:
        buffer = ctypes.create_string_buffer(256)
        args = (*at, ctypes.c_uint(code), buffer, ctypes.c_int(len(buffer)))
        if not self._optional("dcmi_get_device_errorcode_string", *args):
            return ""
        return buffer.value.decode("utf-8", "replace").strip()

    def _int_reading(self, name: str, at: tuple[ctypes.c_int, ctypes.c_int]) -> int | None:
        value = ctypes.c_int(0)
        return value.value if self._optional(name, *at, ctypes.byref(value)) else None

    @staticmethod
    def _tenths(value: int | None) -> float | None:
        return None if value is None else value / 10

    @staticmethod
    def _float(value: int | None) -> float | None:
        return None if value is None else float(value)

    def _utilization(self, at: tuple[ctypes.c_int, ctypes.c_int]) -> float | None:
        rate = ctypes.c_uint(0)
        ok = self._optional(
            "dcmi_get_device_utilization_rate", *at, ctypes.c_int(_INPUT_AICORE), ctypes.byref(rate)
        )
        return float(rate.value) if ok else None

    def _memory(self, at: tuple[ctypes.c_int, ctypes.c_int]) -> tuple[int | None, int | None]:
        """HBM where the chip has it, else DDR (memory_info_v3), as npu-smi's table reads."""
        hbm = _HbmInfo()
        if self._optional("dcmi_get_device_hbm_info", *at, ctypes.byref(hbm)) and hbm.memory_size > 0:
            return hbm.memory_usage * MIB, hbm.memory_size * MIB
        ddr = _MemoryInfo()
        if self._optional("dcmi_get_device_memory_info_v3", *at, ctypes.byref(ddr)):
            used = max(0, ddr.memory_size - ddr.memory_available)
            return used * MIB, ddr.memory_size * MIB
        return None, None

    def _chip_name(self, at: tuple[ctypes.c_int, ctypes.c_int]) -> str:
        info = _ChipInfo()
        if not self._optional("dcmi_get_device_chip_info", *at, ctypes.byref(info)):
            return ""
        return bytes(info.chip_name).split(b"\0", 1)[0].decode("utf-8", "replace").strip()

    def _phy_id(self, logic_id: int) -> int | None:
        phy = ctypes.c_uint(0)
        ok = self._optional("dcmi_get_device_phyid_from_logicid", ctypes.c_uint(logic_id), ctypes.byref(phy))
        return phy.value if ok else None

    def _bus_id(self, at: tuple[ctypes.c_int, ctypes.c_int]) -> str:
        pcie = _PcieInfoAll()
        if not self._optional("dcmi_get_device_pcie_info_v2", *at, ctypes.byref(pcie)):
            return ""
        # npu-smi's spelling: 0000:D0:00.0
        return f"{pcie.domain:04X}:{pcie.bdf_busid:02X}:{pcie.bdf_deviceid:02X}.{pcie.bdf_funcid:X}"

    def _vdie(self, at: tuple[ctypes.c_int, ctypes.c_int]) -> str:
        """The VDie id, npu-smi's `-t board` "VDie ID", as eight-digit hex words joined by `-`."""
        die = _DieId()
        if not self._optional("dcmi_get_device_die_v2", *at, ctypes.c_int(_VDIE), ctypes.byref(die)):
            return ""
        return "-".join(f"{word:08X}" for word in die.soc_die)

    def _mcu_power(self, card: int) -> float | None:
        """The card's power as its MCU measures it (310P, whose chips answer NOT_SUPPORT)."""
        value = ctypes.c_int(0)
        if not self._optional("dcmi_mcu_get_power_info", ctypes.c_int(card), ctypes.byref(value)):
            return None
        return None if value.value in _MCU_POWER_INVALID else value.value / 10

    # ------------------------------------------------------------------ topology

    def _topology(self, facts: Sequence[ChipFacts]) -> list[list[int]] | None:
        """Islands from `dcmi_get_topo_info_by_device_id` (HCCS, SIO, HCCS switch links), or None
        to fall back on the documented server topology when the driver cannot say."""
        key = tuple((f.npu_id, f.chip_id, f.logic_id) for f in facts)
        if key in self._islands:
            return self._islands[key]
        parent = {f.logic_id: f.logic_id for f in facts}

        def root(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for i, a in enumerate(facts):
            for b in facts[i + 1 :]:
                link = ctypes.c_int(0)
                ends = (a.npu_id, a.chip_id, b.npu_id, b.chip_id)
                if not self._optional(
                    "dcmi_get_topo_info_by_device_id", *map(ctypes.c_int, ends), ctypes.byref(link)
                ):
                    return None
                if link.value in _FAST_LINKS:
                    parent[root(a.logic_id)] = root(b.logic_id)
        groups: dict[int, list[int]] = {}
        for logic_id in parent:
            groups.setdefault(root(logic_id), []).append(logic_id)
        self._islands[key] = sorted(sorted(g) for g in groups.values() if len(g) > 1)
        return self._islands[key]
