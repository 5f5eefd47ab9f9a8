"""AMD backend: amd-smi and rocm-smi tables, their JSON, and the amdsmi binding (faked).

The library path is tested against a fake `amdsmi` module placed in sys.modules: building a stub
libamd_smi.so that the real binding would accept is impractical (its ctypes wrapper binds
hundreds of symbols and struct layouts at import), so the fake mimics the binding's Python API
as read from the amdsmi 7.0.2 wheel: dict answers, "N/A" for unsupported fields, AmdSmiException.
"""

from __future__ import annotations

import enum
import json
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import amd
from agents.backends.vendors.faults import fault_table
from agents.backends.vendors.library import LibraryCallError, LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, NotASummaryTable
from agents.backends.vendors.tool import ToolTimeout
from tests.agents.vendors.helpers import (
    fixture,
    install_fake_tool,
)

X8 = "amd-smi_mi300x_x8_synthetic.txt"
MI250X = "amd-smi_mi250x_x4_synthetic.txt"
ROCM_JSON = "rocm-smi_json_mi250x_x4_synthetic.json"


def parse(name: str) -> NodeSnapshot:
    return amd.parse_summary(fixture("amd", name))


def fault_class(code: int) -> str:
    table = fault_table("amd")
    assert table is not None
    return table.lookup(code).class_name


# --------------------------------------------------------------------------- summary tables
@pytest.mark.parametrize(
    ("name", "source", "indices", "models", "power", "limits", "temps"),
    [
        (
            "amd-smi_26.2.1_mi355x_x2.txt", "amd-smi 26.2.1",
            [1, 3], ["MI355X"] * 2, [234.0, 238.0], [1400.0] * 2, [54.0] * 2,
        ),
        ("amd-smi_26.2.2_mi300x_vf_guest.txt", "amd-smi 26.2.2", [0], ["MI300X"], [160.0], [750.0], [37.0]),
        (
            "rocm-smi_6.x_mi300x_x4_concise.txt", "rocm-smi", [0, 1, 2, 3], ["MI300X"] * 4,
            [133.0, 131.0, 131.0, 137.0], [750.0] * 4, [35.0, 37.0, 34.0, 38.0],
        ),
        ("rocm-smi_3.0.0_mi300x_vf_concise.txt", "rocm-smi", [0], ["MI300X"], [191.0], [750.0], [39.0]),
        ("rocm-smi_dieedge_radeon_2023.txt", "rocm-smi", [0], [""], [4.0], [100.0], [51.0]),
    ],
)  # fmt: skip
def test_recorded_tables_of_every_layout(
    name: str,
    source: str,
    indices: list[int],
    models: list[str],
    power: list[float],
    limits: list[float],
    temps: list[float],
) -> None:
    snapshot = parse(name)
    assert snapshot.vendor == "amd" and snapshot.source == source and snapshot.interconnect == "xgmi"
    devices = snapshot.devices
    assert [d.index for d in devices] == indices
    assert [d.model for d in devices] == models
    assert [d.power_w for d in devices] == power
    assert [d.power_limit_w for d in devices] == limits
    assert [d.temperature_c for d in devices] == temps
    assert all(d.vendor == "amd" and d.healthy and not d.power_limit_settable for d in devices)


def test_amdsmi_table_index_is_the_hip_id() -> None:
    # GPU 0/1 in amd-smi's own (BDF) order are HIP devices 1 and 3: HIP_VISIBLE_DEVICES wants 1, 3.
    first, second = parse("amd-smi_26.2.1_mi355x_x2.txt").devices
    assert (first.index, first.ids["amd_smi_gpu"], first.ids["oam_id"]) == (1, "0", "6")
    assert (second.index, second.ids["amd_smi_gpu"]) == (3, "1")
    assert first.bus_id == "0000:05:00.0" and first.ids["partition"] == "SPX/NPS1"


def test_amdsmi_table_memory_in_mib() -> None:
    # "283/294896 MB": six-digit totals without a space before the slash; AMD's MB is MiB.
    chip = parse("amd-smi_26.2.1_mi355x_x2.txt").devices[0]
    assert chip.memory_total_bytes == 294896 * MIB and chip.memory_used_bytes == 283 * MIB
    guest = parse("amd-smi_26.2.2_mi300x_vf_guest.txt").devices[0]
    assert guest.memory_total_bytes == 196288 * MIB


def test_missing_power_and_temperature_are_none() -> None:
    chips = parse(X8).devices
    assert chips[6].power_w is None and chips[6].power_limit_w == 750.0  # "N/A/750 W"
    assert chips[7].temperature_c is None  # "N/A"
    radeon = parse("rocm-smi_dieedge_radeon_2023.txt").devices[0]
    assert radeon.memory_total_bytes is None and radeon.temperature_c == 51.0  # "51.0c"


def test_celsius_with_degree_sign() -> None:
    assert parse("rocm-smi_6.x_mi300x_x4_concise.txt").devices[0].temperature_c == 35.0  # "35.0°C"
    assert parse(X8).devices[0].temperature_c == 38.0  # "38 °C"


def test_uncorrectable_ecc_makes_a_gpu_unhealthy() -> None:
    sick = parse(X8).devices[5]
    assert not sick.healthy and sick.ecc_uncorrected_total == 2 and sick.utilization_pct == 97.0
    assert [(f.code, fault_class(f.code)) for f in sick.faults] == [(1, "uncorrectable-ecc")]
    table = fault_table("amd")
    assert table is not None and table.lookup(1).critical and table.lookup(3).class_name == "fallen-off-bus"


def test_mi300x_oam_node_is_one_xgmi_island() -> None:
    assert parse(X8).islands == ((0, 1, 2, 3, 4, 5, 6, 7),)
    assert parse("amd-smi_26.2.2_mi300x_vf_guest.txt").islands == ()  # one GPU: no island


def test_mi250x_packages_are_two_devices_on_one_board() -> None:
    for name in (MI250X, "rocm-smi_6.0.2_mi250x_x4_synthetic.txt"):
        dies = parse(name).devices
        assert [d.model for d in dies] == ["MI250X"] * 4
        assert dies[0].board_id == dies[1].board_id != dies[2].board_id == dies[3].board_id
        assert [d.power_w for d in dies] == [212.0, None, 212.0, None]  # package power once


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n \n",
        "Segmentation fault (core dumped)\n",
        "usage: amd-smi [-h]  ...\n\nAMD System Management Interface | Version: 26.1.0\n",
        fixture("enflame", "efsmi_1.2.0.301_s60.txt"),
        "============ System Management Interface ============\n"
        "DCU     Temp     AvgPwr     Perf     PwrCap     VRAM%      DCU%      Mode\n"
        "0       49.0C    118.0W     auto     800.0W     0%         0%        Normal\n",
    ],
    ids=["empty", "blank", "crash", "amd-smi-help", "efsmi-table", "hy-smi-table"],
)
def test_text_that_is_not_an_amd_table_is_refused(text: str) -> None:
    with pytest.raises(NotASummaryTable, match="not an amd-smi or rocm-smi summary table"):
        amd.parse_summary(text)


# --------------------------------------------------------------------------- CLI, real subprocess
def install_amdsmi(bin_dir: Path, table: str, listing: str | None, static: str | None, **kw: Any) -> None:
    answers = {"": fixture("amd", table)}
    if listing:
        answers["list --json"] = fixture("amd", listing)
    if static:
        answers["static --json"] = fixture("amd", static)
    install_fake_tool(bin_dir, "amd-smi", answers, **kw)


def test_cli_reader_amdsmi_with_json_enrichment(tool_path: Path) -> None:
    install_amdsmi(
        tool_path, X8, "amd-smi_list_mi300x_x8_synthetic.json", "amd-smi_static_mi300x_x8_synthetic.json"
    )
    reader = amd.CliReader(timeout_s=10)
    assert (reader.vendor, reader.via) == ("amd", "cli")
    snapshot = reader.read()
    first = snapshot.devices[0]
    assert first.uuid == "7eff74a1-0000-1000-8000-7e20764e2700"  # from the warning-prefixed list JSON
    assert first.ids["serial"] == "0x00005A1F00000000" and first.ids["board_serial"] == "692347006000"
    assert (first.power_limit_min_w, first.power_limit_max_w) == (200.0, 750.0)
    assert snapshot.islands == ((0, 1, 2, 3, 4, 5, 6, 7),)
    assert not snapshot.devices[5].healthy


def test_cli_reader_without_json_subcommands_keeps_the_table(tool_path: Path) -> None:
    install_amdsmi(tool_path, "amd-smi_26.2.1_mi355x_x2.txt", None, None)  # list/static exit 3
    devices = amd.CliReader().read().devices
    assert [d.index for d in devices] == [1, 3] and devices[0].uuid == ""


def test_cli_reader_falls_back_to_rocm_smi(tool_path: Path) -> None:
    answers = {
        "": fixture("amd", "rocm-smi_6.0.2_mi250x_x4_synthetic.txt"),
        "--showbus --showserial --showuniqueid --json": fixture(
            "amd", "rocm-smi_json_mi250x_x4_synthetic.json"
        ),
    }
    install_fake_tool(tool_path, "rocm-smi", answers)
    dies = amd.CliReader().read().devices
    assert [d.bus_id for d in dies] == ["0000:c1:00.0", "0000:c6:00.0", "0000:c9:00.0", "0000:ce:00.0"]
    assert [d.board_id for d in dies] == ["692139000119"] * 2 + ["692139000342"] * 2
    assert dies[0].uuid == "0x8d1457e2c20f59d2"


def test_old_amdsmi_printing_help_falls_back_to_rocm_smi(tool_path: Path) -> None:
    help_text = "usage: amd-smi [-h]  ...\n\nAMD System Management Interface | Version: 24.6.3\n"
    install_fake_tool(tool_path, "amd-smi", {"": help_text})
    install_fake_tool(tool_path, "rocm-smi", {"": fixture("amd", "rocm-smi_6.x_mi300x_x4_concise.txt")})
    snapshot = amd.CliReader().read()
    assert snapshot.source == "rocm-smi" and [d.index for d in snapshot.devices] == [0, 1, 2, 3]


def test_a_hanging_amdsmi_times_out_quickly(tool_path: Path) -> None:
    install_amdsmi(tool_path, X8, None, None, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="amd-smi"):
        amd.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5


def test_garbage_from_the_tool_is_a_clear_error(tool_path: Path) -> None:
    install_fake_tool(
        tool_path, "amd-smi", {"*": "ERROR:root:Unable to get devices, driver not initialized\n"}
    )
    with pytest.raises(NotASummaryTable, match="amd-smi"):
        amd.CliReader().read()


def test_cli_reader_sets_no_caps() -> None:
    with pytest.raises(PowerLimitError, match="amdsmi"):
        amd.CliReader().set_power_limit(0, 500)


# --------------------------------------------------------------------------- library, fake amdsmi
class FakeAmdSmiException(Exception):
    pass


class FakeTemperatureType(enum.IntEnum):
    EDGE = 0
    HOTSPOT = 1


class FakeTemperatureMetric(enum.IntEnum):
    CURRENT = 0


class FakeVirtualizationMode(enum.IntEnum):
    BAREMETAL = 1
    GUEST = 3


@dataclass
class FakeGpu:
    hip_id: int
    bdf: str
    market_name: str
    uuid: str
    asic_serial: str
    board_serial: str
    power: dict[str, Any]  # as amdsmi_get_power_info answers: W, "N/A" where unsupported
    hotspot: int | None
    gfx: int
    vram_used: int
    vram_total: int
    hive: int = 0x5A5A5A5A
    uncorrectable: int = 0
    cap_uw: tuple[int, int, int, int] = (750_000_000, 750_000_000, 200_000_000, 750_000_000)
    guest: bool = False
    lost: bool = False
    caps_set: list[int] = field(default_factory=list)


class _Handle:
    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu


def fake_amdsmi(gpus: list[FakeGpu], *, with_enumeration: bool = True) -> types.ModuleType:
    """The parts of amdsmi's Python API the reader uses, answering like amdsmi 7.0.2 does."""
    m = types.ModuleType("amdsmi")
    m.AmdSmiException = FakeAmdSmiException  # type: ignore[attr-defined]
    m.AmdSmiTemperatureType = FakeTemperatureType  # type: ignore[attr-defined]
    m.AmdSmiTemperatureMetric = FakeTemperatureMetric  # type: ignore[attr-defined]
    state = {"init": 0, "shutdown": 0}
    m.state = state  # type: ignore[attr-defined]

    def alive(h: _Handle) -> FakeGpu:
        if not isinstance(h, _Handle):
            raise TypeError("not a processor handle")
        if h.gpu.lost:
            raise FakeAmdSmiException("AMDSMI_STATUS_DRM_ERROR")
        return h.gpu

    def unsupported() -> None:
        raise FakeAmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED")

    def temp(h: _Handle, sensor: FakeTemperatureType, metric: FakeTemperatureMetric) -> int:
        gpu = alive(h)
        if sensor != FakeTemperatureType.HOTSPOT or gpu.hotspot is None:
            unsupported()
        assert gpu.hotspot is not None
        return gpu.hotspot

    def set_cap(h: _Handle, sensor_ind: int, cap: int) -> None:
        gpu = alive(h)
        if not isinstance(cap, int) or sensor_ind != 0:
            raise FakeAmdSmiException("AMDSMI_STATUS_INVAL")
        if gpu.guest:
            unsupported()
        gpu.caps_set.append(cap)

    def cap_info(h: _Handle) -> dict[str, int]:
        cap, default, low, high = alive(h).cap_uw
        return {"power_cap": cap, "default_power_cap": default, "dpm_cap": 2100, "min_power_cap": low,
                "max_power_cap": high}  # fmt: skip

    funcs = {
        "amdsmi_init": lambda *a: state.__setitem__("init", state["init"] + 1),
        "amdsmi_shut_down": lambda: state.__setitem__("shutdown", state["shutdown"] + 1),
        "amdsmi_get_processor_handles": lambda: [_Handle(g) for g in gpus],
        "amdsmi_get_gpu_asic_info": lambda h: {
            "market_name": alive(h).market_name, "vendor_id": "0x1002", "asic_serial": alive(h).asic_serial,
        },
        "amdsmi_get_gpu_device_bdf": lambda h: alive(h).bdf,
        "amdsmi_get_gpu_device_uuid": lambda h: alive(h).uuid,
        "amdsmi_get_gpu_board_info": lambda h: {"product_serial": alive(h).board_serial, "fru_id": "N/A"},
        "amdsmi_get_power_info": lambda h: dict(alive(h).power),
        "amdsmi_get_power_cap_info": cap_info,
        "amdsmi_get_temp_metric": temp,
        "amdsmi_get_gpu_activity": lambda h: {
            "gfx_activity": alive(h).gfx, "umc_activity": 0, "mm_activity": "N/A",
        },
        "amdsmi_get_gpu_vram_usage": lambda h: {
            "vram_total": alive(h).vram_total, "vram_used": alive(h).vram_used,
        },
        "amdsmi_get_gpu_total_ecc_count": lambda h: {
            "correctable_count": 0, "uncorrectable_count": alive(h).uncorrectable, "deferred_count": 0,
        },
        "amdsmi_get_xgmi_info": lambda h: {
            "xgmi_lanes": 16, "xgmi_hive_id": alive(h).hive, "xgmi_node_id": 0,
        },
        "amdsmi_get_gpu_virtualization_mode": lambda h: {
            "mode": FakeVirtualizationMode.GUEST if alive(h).guest else FakeVirtualizationMode.BAREMETAL
        },
        "amdsmi_set_power_cap": set_cap,
    }  # fmt: skip
    if with_enumeration:
        funcs["amdsmi_get_gpu_enumeration_info"] = lambda h: {"hip_id": alive(h).hip_id, "drm_card": 0}
    for name, fn in funcs.items():
        setattr(m, name, fn)
    return m


def mi300x_node() -> list[FakeGpu]:
    """The eight GPUs of amd-smi_mi300x_x8_synthetic.txt and its list/static JSON."""
    static = json.loads(fixture("amd", "amd-smi_static_mi300x_x8_synthetic.json"))["gpu_data"]
    listing = json.loads(fixture("amd", "amd-smi_list_mi300x_x8_synthetic.json").split("\n", 1)[1])[
        "gpu_data"
    ]
    gpus = []
    for g, (entry, listed) in enumerate(zip(static, listing, strict=True)):
        gpus.append(
            FakeGpu(
                hip_id=g, bdf=entry["bus"]["bdf"], market_name="AMD Instinct MI300X", uuid=listed["uuid"],
                asic_serial=entry["asic"]["asic_serial"], board_serial=entry["board"]["product_serial"],
                power={"socket_power": 141 + g, "current_socket_power": 141 + g,
                       "average_socket_power": "N/A", "power_limit": 750},
                hotspot=38 + g, gfx=0, vram_used=283 + g, vram_total=196592,
            )
        )  # fmt: skip
    gpus[5].gfx, gpus[5].vram_used, gpus[5].uncorrectable = 97, 150212, 2
    gpus[6].power = {"socket_power": "N/A", "current_socket_power": "N/A", "average_socket_power": "N/A"}
    gpus[7].hotspot = None
    return gpus


def mi250x_node() -> list[FakeGpu]:
    """Two MI250X packages (four GCDs), answering like ROCm 6.x's amdsmi (no socket_power key)."""
    static = json.loads(fixture("amd", "amd-smi_static_mi250x_x4_synthetic.json"))
    listing = json.loads(fixture("amd", "amd-smi_list_mi250x_x4_synthetic.json"))
    gpus = []
    for g, (entry, listed) in enumerate(zip(static, listing, strict=True)):
        primary = g % 2 == 0
        gpus.append(
            FakeGpu(
                hip_id=g, bdf=entry["bus"]["bdf"], market_name="AMD Instinct MI250X", uuid=listed["uuid"],
                asic_serial=entry["asic"]["asic_serial"], board_serial=entry["board"]["product_serial"],
                power={"current_socket_power": "N/A", "average_socket_power": 212 if primary else "N/A"},
                hotspot=40 + g, gfx=35 if g == 0 else 0, vram_used=10 + g, vram_total=65520,
                cap_uw=(560_000_000, 560_000_000, 0, 560_000_000),
            )
        )  # fmt: skip
    return gpus


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(gpus: list[FakeGpu], **kw: Any) -> types.ModuleType:
        module = fake_amdsmi(gpus, **kw)
        monkeypatch.setitem(sys.modules, "amdsmi", module)
        return module

    return install


def comparable(chip: ChipReading) -> dict[str, Any]:
    return {
        "index": chip.index, "model": chip.model, "uuid": chip.uuid, "bus_id": chip.bus_id,
        "board_id": chip.board_id, "serial": chip.ids.get("serial"),
        "memory_total": chip.memory_total_bytes, "memory_used": chip.memory_used_bytes,
        "power": chip.power_w, "limit": chip.power_limit_w,
        "limit_range": (chip.power_limit_min_w, chip.power_limit_max_w),
        "temperature": chip.temperature_c, "utilization": chip.utilization_pct,
        "healthy": chip.healthy, "faults": sorted(f.code for f in chip.faults),
        "uncorrected": chip.ecc_uncorrected_total, "lost": chip.lost,
    }  # fmt: skip


def test_library_reader_against_the_fake_binding(node: Any) -> None:
    module = node(mi300x_node())
    reader = amd.LibraryReader()
    assert (reader.vendor, reader.via) == ("amd", "library") and module.state["init"] == 1
    snapshot = reader.read()
    first, sick, no_power, no_temp = (snapshot.devices[i] for i in (0, 5, 6, 7))
    assert snapshot.source == "amdsmi" and snapshot.islands == ((0, 1, 2, 3, 4, 5, 6, 7),)
    assert first.model == "MI300X" and first.power_w == 141.0
    assert first.power_limit_w == 750.0 and first.power_limit_min_w == 200.0  # from µW
    assert first.power_limit_default_w == 750.0 and first.power_limit_settable
    assert first.memory_total_bytes == 196592 * MIB
    assert not sick.healthy and [f.code for f in sick.faults] == [1]
    assert no_power.power_w is None and no_temp.temperature_c is None
    reader.close()
    assert module.state["shutdown"] == 1


def test_cli_and_library_agree_on_the_mi300x_node(tool_path: Path, node: Any) -> None:
    install_amdsmi(
        tool_path, X8, "amd-smi_list_mi300x_x8_synthetic.json", "amd-smi_static_mi300x_x8_synthetic.json"
    )
    from_cli = amd.CliReader().read()
    node(mi300x_node())
    from_library = amd.LibraryReader().read()
    assert [comparable(c) for c in from_cli.devices] == [comparable(c) for c in from_library.devices]
    assert from_cli.islands == from_library.islands and from_cli.interconnect == from_library.interconnect


def test_cli_and_library_agree_on_mi250x_packages(tool_path: Path, node: Any) -> None:
    install_amdsmi(
        tool_path, MI250X, "amd-smi_list_mi250x_x4_synthetic.json", "amd-smi_static_mi250x_x4_synthetic.json"
    )
    from_cli = amd.CliReader().read()
    node(mi250x_node())
    from_library = amd.LibraryReader().read()
    assert [comparable(c) for c in from_cli.devices] == [comparable(c) for c in from_library.devices]
    dies = from_library.devices
    assert [d.board_id for d in dies] == ["692139000119"] * 2 + ["692139000342"] * 2
    assert [d.power_w for d in dies] == [212.0, None, 212.0, None]
    assert from_cli.islands == from_library.islands == ((0, 1, 2, 3),)


def test_hip_ids_come_from_enumeration_info(node: Any) -> None:
    gpus = mi300x_node()[:2]
    gpus[0].hip_id, gpus[1].hip_id = 1, 0
    node(gpus)
    assert [d.index for d in amd.LibraryReader().read().devices] == [1, 0]
    node(gpus, with_enumeration=False)  # ROCm 6.x bindings lack the call: enumeration order
    assert [d.index for d in amd.LibraryReader().read().devices] == [0, 1]


def test_power_cap_is_set_in_microwatts(node: Any) -> None:
    gpus = mi300x_node()
    node(gpus)
    reader = amd.LibraryReader()
    reader.read()
    reader.set_power_limit(3, 500)
    assert gpus[3].caps_set == [500_000_000]
    with pytest.raises(PowerLimitError, match="outside"):
        reader.set_power_limit(3, 900)
    with pytest.raises(PowerLimitError, match="outside"):
        reader.set_power_limit(3, 150)
    with pytest.raises(PowerLimitError, match="no AMD GPU"):
        reader.set_power_limit(42, 500)


def test_no_cap_on_a_vm_guest(node: Any) -> None:
    gpus = mi300x_node()[:1]
    gpus[0].market_name, gpus[0].guest = "AMD Instinct MI300X VF", True
    node(gpus)
    reader = amd.LibraryReader()
    (chip,) = reader.read().devices
    assert chip.model == "MI300X" and not chip.power_limit_settable
    with pytest.raises(PowerLimitError, match="guest"):
        reader.set_power_limit(0, 500)
    assert gpus[0].caps_set == []


def test_a_gpu_that_stops_answering_is_lost(node: Any) -> None:
    gpus = mi300x_node()[:2]
    gpus[1].lost = True
    node(gpus, with_enumeration=False)
    ok, gone = amd.LibraryReader().read().devices
    assert ok.healthy and not ok.lost
    assert gone.lost and not gone.healthy and gone.index == 1
    assert [(f.code, fault_class(f.code)) for f in gone.faults] == [(3, "fallen-off-bus")]


def test_binding_without_its_library_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the real amdsmi 7.0.2 does without libamd_smi.so: print, then raise KeyError.
    (tmp_path / "amdsmi.py").write_text(
        "print('Unable to find libamd_smi.so library try installing amd-smi-lib')\n"
        "raise KeyError('libamd_smi.so')\n"
    )
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LibraryUnavailable, match="libamd_smi"):
        amd.LibraryReader()
    assert "Unable to find" not in capsys.readouterr().out  # the agent's stdout stays clean


def test_binding_not_installed_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import raises ImportError
    with pytest.raises(LibraryUnavailable):
        amd.LibraryReader()


def test_init_failure_is_unavailable(node: Any) -> None:
    module = node([])

    def no_driver(*args: Any) -> None:
        raise FakeAmdSmiException("AMDSMI_STATUS_NO_DRV")

    module.amdsmi_init = no_driver
    with pytest.raises(LibraryUnavailable, match="amdsmi_init"):
        amd.LibraryReader()


def test_enumeration_failure_is_a_backend_error(node: Any) -> None:
    module = node(mi300x_node())
    reader = amd.LibraryReader()

    def broken() -> None:
        raise FakeAmdSmiException("AMDSMI_STATUS_DRM_ERROR")

    module.amdsmi_get_processor_handles = broken
    with pytest.raises(LibraryCallError, match="amdsmi_get_processor_handles"):
        reader.read()


def test_module_contract() -> None:
    assert amd.VENDOR == "amd" and amd.TOOLS == ("amd-smi", "rocm-smi")
    assert amd.VISIBILITY_ENV == "HIP_VISIBLE_DEVICES" and amd.INTERCONNECT == "xgmi"
    assert amd.PCI_VENDOR_IDS == (0x1002,) and "/opt/rocm/bin" in amd.TOOL_DIRS
