"""Enflame GCUs (S60, S60G, L300, i20): `efsmi` tables and EFML, read into one snapshot.

Two ways in (research §8):
- CLI: plain `efsmi` (the summary table) plus `efsmi -q` (the per-device report: UUID, health
  flag, RMA flag and DBE count, power cable, reset-source counts). The table changed between
  efsmi 1.2 (`Dpm`, `39 C`, `105W  300W`) and 1.6/1.7 (`Lpm`, `34℃`, `68W / 300W`, `N/A` under
  SR-IOV); both are read by the labels in the two header rows, never by column position
  (agents/backends/vendors/enflame_efsmi.py).
- Library: libefml.so through the ctypes binding in agents/backends/vendors/enflame_efml.py.

Units: efsmi prints W, MiB, °C and %; EFML answers power in mW and memory in bytes.
Power limits: EFML reads the enforced limit but has no call to set one (only a frequency cap and
power modes, research §8.3), so both readers report power_limit_settable=False.
Islands: GCU-LARE wiring per server model is unknown (research §8.7), so none are reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from agents.backends.base import PowerLimitError
from agents.backends.vendors.enflame_efml import (
    ABSENT,
    ERROR_GCU_IS_LOST,
    Efml,
    EfmlCallError,
    EfmlLegacyCallError,
)
from agents.backends.vendors.enflame_efsmi import (
    FAULT_DBE,
    FAULT_EFML_RETURN,
    FAULT_HEALTH_FALSE,
    FAULT_POWER_CABLE,
    FAULT_RESET_SOURCE,
    FAULT_RMA,
    model_name,
)
from agents.backends.vendors.enflame_efsmi import INTERCONNECT as INTERCONNECT
from agents.backends.vendors.enflame_efsmi import VENDOR as VENDOR
from agents.backends.vendors.enflame_efsmi import group_boards as group_boards
from agents.backends.vendors.enflame_efsmi import parse_detail as parse_detail
from agents.backends.vendors.enflame_efsmi import parse_summary as parse_summary
from agents.backends.vendors.enflame_efsmi import parse_table as parse_table
from agents.backends.vendors.enflame_efsmi import report_faults as report_faults
from agents.backends.vendors.enflame_efsmi import with_report as with_report
from agents.backends.vendors.faults import any_critical, packaged_fault_table
from agents.backends.vendors.smi_table import canonical_bus_id
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot, VendorFault
from agents.backends.vendors.tool import DEFAULT_TIMEOUT_S, SubprocessRunner, ToolRunner

TOOLS = ("efsmi",)
# efsmi installs as /usr/bin/efsmi (research §8.1); the other two are where TopsRider drops its
# tools on some images [U].
TOOL_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/local/efsmi")
LIBRARY_NAMES = ("libefml.so", "libefml.so.1")
# libefml's install directory is not documented in the research [U]; the loader's own search path
# is tried after these.
LIBRARY_DIRS = ("/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/local/lib", "/usr/local/efsmi/lib")
VISIBILITY_ENV = "TOPS_VISIBLE_DEVICES"  # takes the efsmi DEV index (research §8.5 [S])
# `efsmi -q` on an S60 prints "Vendor ID : 1e36" (research §8.2 [V-out]).
PCI_VENDOR_IDS = (0x1E36,)

_T = TypeVar("_T")
_NOT_SETTABLE = (
    "Enflame GCUs have no power-limit call (EFML offers only a frequency cap and power modes); "
    "Corral keeps their budget by admission"
)


class CliReader:
    """`efsmi` for the table, `efsmi -q` for health and ids; both through the runner."""

    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._runner = runner or SubprocessRunner(timeout_s=timeout_s, extra_dirs=TOOL_DIRS)

    def read(self) -> NodeSnapshot:
        source, chips = parse_table(self._runner.run([TOOLS[0]]))
        reports = parse_detail(self._runner.run([TOOLS[0], "-q"]))
        # Cards are grouped after the merge: -q knows the serials and per-device power.
        merged = [with_report(chip, reports.get(chip.index)) for chip in chips]
        return NodeSnapshot(VENDOR, source, group_boards(merged), INTERCONNECT)

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(_NOT_SETTABLE)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- EFML
class _FaultCollector:
    """Runs EFML reads for one device: an absent reading is None, a device-level EFML error
    becomes a fault (1000 + return code) instead of failing the whole snapshot."""

    def __init__(self) -> None:
        self.faults: list[VendorFault] = []
        self.lost = False

    def read(self, call: str, fn: Callable[..., _T], *args: object) -> _T | None:
        try:
            return fn(*args)
        except EfmlCallError as e:
            self._absorb(call, e)
            return None

    def _absorb(self, call: str, error: EfmlCallError) -> None:
        # Legacy health calls are best effort: their failure leaves the reading unknown.
        if error.code in ABSENT or isinstance(error, EfmlLegacyCallError):
            return
        code = FAULT_EFML_RETURN + error.code
        if code not in packaged_fault_table(VENDOR).codes:
            raise error
        self.faults.append(VendorFault(code, f"{call}: {error}"))
        self.lost = self.lost or error.code == ERROR_GCU_IS_LOST


class LibraryReader:
    """libefml.so through ctypes; raises LibraryUnavailable where it is not installed."""

    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._efml = Efml(LIBRARY_NAMES, LIBRARY_DIRS, library_path)

    def read(self) -> NodeSnapshot:
        chips = [self._chip(index) for index in range(self._efml.count())]
        return NodeSnapshot(VENDOR, "libefml", group_boards(chips), INTERCONNECT)

    def _chip(self, index: int) -> ChipReading:
        efml, probe = self._efml, _FaultCollector()
        device = probe.read("efmlDeviceGetHandleByIndex_v2", efml.handle, index)
        if device is None:
            return ChipReading(VENDOR, "", index, healthy=False, faults=tuple(probe.faults), lost=probe.lost)
        name = probe.read("efmlDeviceGetName", efml.name, device)
        power_mw = probe.read("efmlDeviceGetPowerUsage", efml.power_mw, device)
        limit_mw = probe.read("efmlDeviceGetEnforcedPowerLimit", efml.power_limit_mw, device)
        memory = probe.read("efmlDeviceGetMemoryInfo_v2", efml.memory_bytes, device)
        temperature = probe.read("efmlDeviceGetTemperature", efml.temperature_c, device)
        utilization = probe.read("efmlDeviceGetUtilizationRates", efml.utilization_pct, device)
        bus_id = probe.read("efmlDeviceGetPciInfo_v3", efml.bus_id, device)
        dbe = self._legacy_faults(index, probe)
        serial = probe.read("EfmlGetDevSn", efml.text, "EfmlGetDevSn", index) or ""
        uuid = probe.read("EfmlGetDevUuid", efml.text, "EfmlGetDevUuid", index) or serial
        total, used = memory if isinstance(memory, tuple) else (None, None)
        return ChipReading(
            vendor=VENDOR,
            model=model_name(str(name or "")),
            index=index,
            uuid=uuid,
            bus_id=canonical_bus_id(str(bus_id or "")),
            memory_total_bytes=total,
            memory_used_bytes=used,
            power_w=None if power_mw is None else int(power_mw) / 1000,
            power_limit_w=None if limit_mw is None else int(limit_mw) / 1000,
            temperature_c=None if temperature is None else float(temperature),
            utilization_pct=None if utilization is None else float(utilization),
            healthy=not probe.lost and not any_critical(VENDOR, probe.faults),
            faults=tuple(probe.faults),
            ecc_uncorrected_total=dbe,
            lost=probe.lost,
            ids={"serial": serial} if serial else {},
        )

    def _legacy_faults(self, index: int, probe: _FaultCollector) -> int | None:
        """Health flag, RMA/DBE, power cable and reset records (legacy calls); the DBE count."""
        efml = self._efml
        if probe.read("EfmlGetDevHealth", efml.health, index) is False:
            probe.faults.append(VendorFault(FAULT_HEALTH_FALSE, "EfmlGetDevHealth: false"))
        rma = probe.read("EfmlGetDevRmaDetails", efml.rma, index)
        flag, dbe = rma if isinstance(rma, tuple) else (False, None)
        if flag:
            probe.faults.append(VendorFault(FAULT_RMA, "EfmlGetDevRmaDetails: RMA flag set"))
        if dbe:
            probe.faults.append(VendorFault(FAULT_DBE, f"EfmlGetDevRmaDetails: {dbe} double-bit errors"))
        if probe.read("EfmlGetCableQualify", efml.cable_qualified, index) is False:
            probe.faults.append(VendorFault(FAULT_POWER_CABLE, "EfmlGetCableQualify: not qualified"))
        sources = probe.read("EfmlGetErrorRecords", efml.reset_sources, index) or []
        for source in sorted(set(sources)):
            text = f"{sources.count(source)} reset record(s), source {source}"
            probe.faults.append(VendorFault(FAULT_RESET_SOURCE + source, text))
        return dbe

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(_NOT_SETTABLE)

    def close(self) -> None:
        self._efml.shutdown()
