"""AMD Instinct GPUs (MI300X and its kin, MI250X): amd-smi / rocm-smi and the amdsmi binding.

Two ways in:
- CLI: plain `amd-smi` (its default table: BDF, name, HIP id, power/cap, temperature, UEC,
  memory) enriched by `amd-smi list --json` (UUIDs) and `amd-smi static --json` (serials, cap
  range); where only `rocm-smi` is installed, its concise table plus `rocm-smi --showbus
  --showserial --showuniqueid --json`. Parsing lives in amd_tables.py.
- Library: AMD's own Python binding `amdsmi` (over libamd_smi.so). It is not a Corral dependency:
  the binding must match the node's ROCm release (the PyPI wheel's ctypes structs are one
  release's layout), so it is imported from wherever ROCm installed it, and `import amdsmi`
  failing with KeyError/OSError (no libamd_smi.so) means "not installed here".

Ids: `index` is the HIP device id, what HIP_VISIBLE_DEVICES takes; amd-smi's own GPU number
orders by BDF and can differ (the 2×MI355X capture shows GPU 0/1 as HIP 1/3), so it is kept in
`ids["amd_smi_gpu"]`.
Boards: an MI250X is two GCDs in one OAM package: two devices sharing the board serial; the
secondary die shows no power (ROCm/rocm_smi_lib#160 [V-out]), so board power lands on one die.
Islands: amdsmi's xGMI hive id where the library answers; otherwise the documented platforms:
an MI300X/MI325X/MI35xX OAM node fully connects its 8 GPUs over xGMI (AMD Instinct MI300X
platform data sheet, as in the catalog), and MI250X nodes link every GCD over Infinity Fabric
(assumed for all MI250X servers [U]). PCIe cards (MI210 and consumer GPUs) form no island.
Power caps are set through amdsmi_set_power_cap in µW (not on a VM guest); the CLI reader does
not set them.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

from agents.backends.base import PowerLimitError
from agents.backends.vendors.amd_tables import (
    FAULT_LOST,
    ecc_faults,
    gpu_entries,
    load_json,
    model_name,
    parse_amdsmi_table,
    parse_rocmsmi_table,
    with_amdsmi_json,
    with_rocmsmi_json,
)
from agents.backends.vendors.amd_tables import VENDOR as VENDOR  # the module contract's name
from agents.backends.vendors.faults import any_critical
from agents.backends.vendors.library import LibraryCallError, LibraryUnavailable
from agents.backends.vendors.smi_table import canonical_bus_id
from agents.backends.vendors.snapshot import (
    ChipReading,
    NodeSnapshot,
    NotASummaryTable,
    VendorFault,
    check_power_range,
    first_line,
    share_board_power,
)
from agents.backends.vendors.tool import (
    DEFAULT_TIMEOUT_S,
    SubprocessRunner,
    ToolError,
    ToolRunner,
    ToolTimeout,
    first_installed,
)

TOOLS = ("amd-smi", "rocm-smi")
TOOL_DIRS = ("/opt/rocm/bin",)
LIBRARY_NAMES = ("libamd_smi.so",)
LIBRARY_DIRS = ("/opt/rocm/lib",)
VISIBILITY_ENV = "HIP_VISIBLE_DEVICES"
# AMD/ATI; amd-smi static prints VENDOR_ID 0x1002 for an MI350X (ROCm/rocm-systems#2987 [V-out]).
# Radeon display GPUs share it, so detection by PCI id alone also finds desktop cards.
PCI_VENDOR_IDS = (0x1002,)
INTERCONNECT = "xgmi"
XGMI_PLATFORM_MODELS = frozenset({"MI300X", "MI325X", "MI350X", "MI355X", "MI300A", "MI250X", "MI250"})
TWO_DIE_MODELS = frozenset({"MI250X", "MI250"})


# --------------------------------------------------------------------------- boards, islands
def _pairs_in_bus_order(chips: Sequence[ChipReading]) -> Iterator[list[int]]:
    """Dies of two-die packages in BDF order, two by two (secondary next to its primary) [U]."""
    dies = sorted(
        (i for i, c in enumerate(chips) if c.model in TWO_DIE_MODELS and not c.ids.get("board_serial")),
        key=lambda i: (chips[i].bus_id, chips[i].index),
    )
    for k in range(0, len(dies) - 1, 2):
        yield dies[k : k + 2]


def group_boards(chips: Sequence[ChipReading]) -> tuple[ChipReading, ...]:
    """Chips sharing a board serial are one package; without serials, MI250X dies pair up by BDF.
    The package's power is reported once, on the first die that shows any."""
    boards: dict[str, list[int]] = {}
    for i, chip in enumerate(chips):
        serial = chip.ids.get("board_serial", "")
        if serial:
            boards.setdefault(serial, []).append(i)
    for pair in _pairs_in_bus_order(chips):
        boards[f"{chips[pair[0]].model}@{chips[pair[0]].bus_id or chips[pair[0]].index}"] = pair
    return share_board_power(chips, boards)


def islands(chips: Sequence[ChipReading]) -> tuple[tuple[int, ...], ...]:
    """xGMI hives where the library named them, else the documented OAM platforms (see above)."""
    groups: dict[str, list[int]] = {}
    hives = [c.ids.get("xgmi_hive", "") for c in chips]
    for chip, hive in zip(chips, hives, strict=True):
        if any(hives):
            if hive:
                groups.setdefault(hive, []).append(chip.index)
        elif chip.model in XGMI_PLATFORM_MODELS:
            groups.setdefault(chip.model, []).append(chip.index)
    return tuple(sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1))


def _snapshot(source: str, chips: Sequence[ChipReading]) -> NodeSnapshot:
    grouped = group_boards(chips)
    return NodeSnapshot(VENDOR, source, grouped, INTERCONNECT, islands(grouped))


# --------------------------------------------------------------------------- summary tables
def _refuse(text: str, why: str) -> NotASummaryTable:
    return NotASummaryTable(
        "not an amd-smi or rocm-smi summary table: expected plain `amd-smi` (a 'BDF GPU-Name | ... "
        f"Power-Usage' table) or plain `rocm-smi` (its Concise Info table); {why} ({first_line(text)})"
    )


def parse_summary(text: str) -> NodeSnapshot:
    """Plain `amd-smi` or plain `rocm-smi` output as a snapshot."""
    return _snapshot(*parse_table(text))


def parse_table(text: str) -> tuple[str, list[ChipReading]]:
    """(source, chips) of either tool's table, before boards and islands are worked out."""
    if not text.strip():
        raise _refuse(text, "the text is empty")
    if "usage: amd-smi" in text:
        raise _refuse(text, "this is amd-smi's help text; releases before 6.4 print it when run plainly")
    try:
        if "GPU-Name" in text or "AMD-SMI" in text:
            source, chips = parse_amdsmi_table(text)
        elif "ROCm System Management Interface" in text or "Concise Info" in text:
            source, chips = parse_rocmsmi_table(text)
        else:
            raise _refuse(text, "neither tool's banner or header was found")
    except NotASummaryTable as e:
        raise _refuse(text, str(e)) from None
    return source, chips


# --------------------------------------------------------------------------- CLI
class CliReader:
    """amd-smi where installed (else rocm-smi), through the runner; reads, never sets."""

    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._runner = runner or SubprocessRunner(timeout_s=timeout_s, extra_dirs=TOOL_DIRS)

    def _json(self, argv: list[str]) -> Any:
        """Enrichment output; None where this release lacks the subcommand (a hang still raises)."""
        try:
            text = self._runner.run(argv)
        except ToolTimeout:
            raise
        except ToolError:
            return None
        return load_json(text, " ".join(argv))

    def _has(self, tool: str) -> bool:
        which = getattr(self._runner, "which", None)
        return bool(which(tool)) if callable(which) else False

    def read(self) -> NodeSnapshot:
        if first_installed(self._runner, TOOLS) != "amd-smi":
            return self._read_rocmsmi()
        table = self._runner.run(["amd-smi"])
        if "usage: amd-smi" in table and self._has("rocm-smi"):
            return self._read_rocmsmi()  # amd-smi before ROCm 6.4 prints help, not a table
        return self._read_amdsmi(table)

    def _read_amdsmi(self, table: str) -> NodeSnapshot:
        source, chips = parse_table(table)
        listing = _by_gpu(self._json(["amd-smi", "list", "--json"]))
        static = _by_gpu(self._json(["amd-smi", "static", "--json"]))
        enriched = []
        for chip in chips:
            gpu = int(chip.ids.get("amd_smi_gpu", chip.index))
            enriched.append(with_amdsmi_json(chip, listing.get(gpu), static.get(gpu)))
        return _snapshot(source, enriched)

    def _read_rocmsmi(self) -> NodeSnapshot:
        source, chips = parse_table(self._runner.run(["rocm-smi"]))
        document = self._json(["rocm-smi", "--showbus", "--showserial", "--showuniqueid", "--json"])
        cards = {}
        if isinstance(document, dict):
            cards = {int(k[4:]): v for k, v in document.items() if k.startswith("card") and k[4:].isdigit()}
        return _snapshot(source, [with_rocmsmi_json(c, cards.get(c.index)) for c in chips])

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(
            "the amd-smi CLI reader does not set power caps; Corral sets them through amdsmi"
        )

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- library (amdsmi)
_UNSET = frozenset({0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF})
# Power caps are µW on Linux (amdsmi_power_cap_info_t: "Units uW {@linux_bm} or W {@host}",
# ROCm amdsmi docs). No real cap is below 10 mW, so a small number can only be watts.
_MICROWATTS_FLOOR = 10_000


@contextlib.contextmanager
def _rocm_path(library_path: str | None) -> Iterator[None]:
    """The binding finds libamd_smi.so under $ROCM_PATH/lib; point it at an explicit library."""
    if not library_path:
        yield
        return
    saved = os.environ.get("ROCM_PATH")
    os.environ["ROCM_PATH"] = os.path.dirname(os.path.dirname(os.path.abspath(library_path)))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("ROCM_PATH", None)
        else:
            os.environ["ROCM_PATH"] = saved


def import_amdsmi(library_path: str | None = None) -> ModuleType:
    """`import amdsmi`, which prints and raises KeyError (not ImportError) without libamd_smi."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), _rocm_path(library_path):
            return importlib.import_module("amdsmi")
    except (ImportError, KeyError, OSError, AttributeError) as e:
        raise LibraryUnavailable(f"the amdsmi Python binding cannot load libamd_smi.so: {e!r}") from None


def _number(value: Any) -> float | None:
    """amdsmi answers numbers, "N/A", or all-ones sentinels for readings it does not have."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if value in _UNSET else float(value)


class LibraryReader:
    """amdsmi (AMD's binding); raises LibraryUnavailable where it or libamd_smi is missing."""

    vendor = VENDOR
    via = "library"

    def __init__(self, library_path: str | None = None) -> None:
        self._smi = import_amdsmi(library_path)
        try:
            self._smi.amdsmi_init()
        except Exception as e:  # AmdSmiException and friends: no driver, no permission
            raise LibraryUnavailable(f"amdsmi_init failed: {e}") from None
        self._handles: dict[int, Any] = {}

    def _call(self, name: str, *args: Any) -> Any:
        """The binding's answer, or None where the call is missing or not supported here."""
        fn: Callable[..., Any] | None = getattr(self._smi, name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except self._smi.AmdSmiException:
            return None

    def read(self) -> NodeSnapshot:
        try:
            handles = self._smi.amdsmi_get_processor_handles()
        except self._smi.AmdSmiException as e:
            raise LibraryCallError("amdsmi_get_processor_handles", _status(e), str(e)) from None
        chips = [self._chip(order, handle) for order, handle in enumerate(handles)]
        self._handles = {chip.index: handle for chip, handle in zip(chips, handles, strict=True)}
        return _snapshot("amdsmi", chips)

    def _index(self, order: int, handle: Any) -> int:
        hip = _number((self._call("amdsmi_get_gpu_enumeration_info", handle) or {}).get("hip_id"))
        return int(hip) if hip is not None else order

    def _chip(self, order: int, handle: Any) -> ChipReading:
        index = self._index(order, handle)
        asic = self._call("amdsmi_get_gpu_asic_info", handle)
        bdf = self._call("amdsmi_get_gpu_device_bdf", handle)
        if asic is None and bdf is None:
            lost = VendorFault(FAULT_LOST, "amdsmi: asic info and BDF queries fail")
            return ChipReading(VENDOR, "", index, healthy=False, faults=(lost,), lost=True)
        name = str((asic or {}).get("market_name", ""))
        ecc = self._call("amdsmi_get_gpu_total_ecc_count", handle) or {}
        uncorrectable = _number(ecc.get("uncorrectable_count"))
        faults = ecc_faults(
            None if uncorrectable is None else int(uncorrectable),
            int(_number(ecc.get("deferred_count")) or 0),
        )
        total, used = self._memory(handle)
        limits = self._limits(handle, name)
        return ChipReading(
            vendor=VENDOR,
            model=model_name(name),
            index=index,
            uuid=str(self._call("amdsmi_get_gpu_device_uuid", handle) or ""),
            bus_id=canonical_bus_id(str(bdf or "")),
            memory_total_bytes=total,
            memory_used_bytes=used,
            power_w=self._power(handle),
            temperature_c=self._temperature(handle),
            utilization_pct=_number(
                (self._call("amdsmi_get_gpu_activity", handle) or {}).get("gfx_activity")
            ),
            healthy=not any_critical(VENDOR, faults),
            faults=faults,
            ecc_corrected_total=_int(_number(ecc.get("correctable_count"))),
            ecc_uncorrected_total=_int(uncorrectable),
            ids=self._ids(handle, asic),
            **limits,
        )

    def _ids(self, handle: Any, asic: dict[str, Any] | None) -> dict[str, str]:
        ids: dict[str, str] = {}
        serial = str((asic or {}).get("asic_serial", ""))
        board = str((self._call("amdsmi_get_gpu_board_info", handle) or {}).get("product_serial", ""))
        hive = _number((self._call("amdsmi_get_xgmi_info", handle) or {}).get("xgmi_hive_id"))
        for key, value in (("serial", serial), ("board_serial", board)):
            if value and value != "N/A":
                ids[key] = value
        if hive:  # 0 means "in no hive"
            ids["xgmi_hive"] = f"{int(hive):#x}"
        return ids

    def _memory(self, handle: Any) -> tuple[int | None, int | None]:
        usage = self._call("amdsmi_get_gpu_vram_usage", handle) or {}
        mib = 1024**2  # amdsmi_vram_usage_t: "In MB", i.e. MiB
        total, used = _number(usage.get("vram_total")), _number(usage.get("vram_used"))
        return (None if total is None else int(total) * mib), (None if used is None else int(used) * mib)

    def _power(self, handle: Any) -> float | None:
        """socket_power (7.x), else current (MI300+) or average (MI200 and older) socket power, W."""
        info = self._call("amdsmi_get_power_info", handle) or {}
        for key in ("socket_power", "current_socket_power", "average_socket_power"):
            value = _number(info.get(key))
            if value is not None and value > 0:
                return value
        return None

    def _temperature(self, handle: Any) -> float | None:
        kinds, metric = self._smi.AmdSmiTemperatureType, self._smi.AmdSmiTemperatureMetric
        for sensor in (kinds.HOTSPOT, kinds.EDGE):  # MI300 reports hotspot (junction), not edge
            value = _number(self._call("amdsmi_get_temp_metric", handle, sensor, metric.CURRENT))
            if value is not None:
                return value
        return None

    def _cap_info(self, handle: Any) -> tuple[dict[str, float | None], float]:
        """The cap fields in W, and the factor from W to the unit the library takes."""
        info = self._call("amdsmi_get_power_cap_info", handle) or {}
        raw = {
            k: _number(info.get(k))
            for k in ("power_cap", "default_power_cap", "min_power_cap", "max_power_cap")
        }
        biggest = max((v for v in raw.values() if v), default=0.0)
        factor = 1e6 if biggest >= _MICROWATTS_FLOOR else 1.0
        return {k: None if v is None else v / factor for k, v in raw.items()}, factor

    def _is_guest(self, handle: Any, name: str) -> bool:
        mode = (self._call("amdsmi_get_gpu_virtualization_mode", handle) or {}).get("mode")
        return name.upper().endswith(" VF") or "GUEST" in str(getattr(mode, "name", mode or "")).upper()

    def _limits(self, handle: Any, name: str) -> dict[str, Any]:
        caps, _ = self._cap_info(handle)
        low, high = caps["min_power_cap"], caps["max_power_cap"]
        settable = (
            caps["power_cap"] is not None
            and high is not None
            and (low or 0.0) < high
            and hasattr(self._smi, "amdsmi_set_power_cap")
            and not self._is_guest(handle, name)
        )
        return {
            "power_limit_w": caps["power_cap"] or None,
            "power_limit_min_w": low,
            "power_limit_max_w": high or None,
            "power_limit_default_w": caps["default_power_cap"] or None,
            "power_limit_settable": settable,
        }

    def set_power_limit(self, index: int, watts: float) -> None:
        if index not in self._handles:
            self.read()
        handle = self._handles.get(index)
        if handle is None:
            raise PowerLimitError(f"no AMD GPU with HIP id {index}")
        name = str((self._call("amdsmi_get_gpu_asic_info", handle) or {}).get("market_name", ""))
        limits = self._limits(handle, name)
        if not limits["power_limit_settable"]:
            raise PowerLimitError(f"GPU {index} takes no power cap here (VM guest, or no cap range reported)")
        check_power_range(
            f"GPU {index}", watts, limits["power_limit_min_w"] or 0.0, limits["power_limit_max_w"]
        )
        _, factor = self._cap_info(handle)
        try:
            self._smi.amdsmi_set_power_cap(handle, 0, round(watts * factor))
        except self._smi.AmdSmiException as e:
            raise PowerLimitError(f"amdsmi_set_power_cap refused {watts:g} W on GPU {index}: {e}") from None

    def close(self) -> None:
        self._call("amdsmi_shut_down")


def _by_gpu(document: Any) -> dict[int, dict[str, Any]]:
    """amd-smi JSON entries keyed by their `gpu` number (amd-smi's own index)."""
    entries = {}
    for entry in gpu_entries(document):
        if isinstance(entry["gpu"], int) or str(entry["gpu"]).isdigit():
            entries[int(entry["gpu"])] = entry
    return entries


def _status(error: Exception) -> int:
    """The amdsmi status code an AmdSmiLibraryException carries (err_code), else -1."""
    code = getattr(error, "err_code", -1)
    return code if isinstance(code, int) else -1


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
