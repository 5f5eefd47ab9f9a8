"""MetaX backend: mx-smi tables from four tool versions, -L states, topo islands, and MXSML.

The CLI path runs the real subprocess machinery against a fake `mx-smi` on PATH; the library
path loads a stub libmxsml.so compiled from C here, so the ctypes structure layouts are
exercised against a C compiler's idea of them. Fixture sources: tests/fixtures/vendors/metax/SOURCES.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import metax
from agents.backends.vendors.faults import fault_table
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, NotASummaryTable
from agents.backends.vendors.tool import ToolTimeout
from tests.agents.vendors.helpers import build_stub_library, fixture, install_fake_tool

V = "metax"
GIB64 = 65536 * MIB


def summary(name: str) -> NodeSnapshot:
    return metax.parse_summary(fixture(V, name))


# -- the summary table, per tool version ---------------------------------------------------------


def test_224_c500_with_cap_and_state() -> None:
    snap = summary("mx-smi_2.2.4_c500.txt")
    assert snap.source == "mx-smi 2.2.4"
    assert snap.interconnect == "metaxlink"
    (chip,) = snap.devices
    assert (chip.vendor, chip.model, chip.index, chip.bus_id) == ("metax", "C500", 0, "0000:01:00.0")
    assert chip.memory_total_bytes == GIB64
    assert chip.memory_used_bytes == 858 * MIB
    assert (chip.power_w, chip.power_limit_w) == (48.0, 350.0)
    assert (chip.temperature_c, chip.utilization_pct) == (45.0, 0.0)
    assert chip.healthy and chip.faults == ()
    assert not chip.power_limit_settable


def test_216_mxc550_has_no_cap_and_no_state() -> None:
    snap = summary("mx-smi_2.1.6_mxc550_8.txt")
    assert snap.source == "mx-smi 2.1.6"
    assert [c.index for c in snap.devices] == list(range(8))
    assert {c.model for c in snap.devices} == {"C550"}
    first = snap.devices[0]
    assert (first.power_w, first.power_limit_w, first.temperature_c) == (44.0, None, 31.0)
    assert first.memory_used_bytes == 810 * MIB and first.memory_total_bytes == GIB64
    assert all(c.healthy for c in snap.devices)
    assert snap.devices[7].bus_id == "0000:da:00.0"


def test_five_digit_used_memory_without_spaces() -> None:
    snap = summary("mx-smi_2.1.6_mxc500_4.txt")
    assert snap.devices[0].memory_used_bytes == 60982 * MIB
    assert snap.devices[0].memory_total_bytes == GIB64
    assert [c.power_w for c in snap.devices] == [71.0, 76.0, 74.0, 71.0]


def test_2112_cap_without_state_published_capture() -> None:
    (chip,) = summary("mx-smi_2.1.12_c550.txt").devices
    assert (chip.model, chip.power_w, chip.power_limit_w) == ("C550", 97.0, None)  # `97W / NA`
    assert chip.healthy


def test_2112_reconstructed_layout() -> None:
    snap = summary("mx-smi_2.1.12_c500_2_reconstructed.txt")
    assert snap.source == "mx-smi 2.1.12"
    busy, idle = snap.devices
    assert (busy.power_w, busy.power_limit_w, busy.utilization_pct) == (212.0, 350.0, 37.0)
    assert busy.memory_used_bytes == 41210 * MIB
    assert (idle.power_w, idle.power_limit_w) == (None, 350.0)  # `N/A / 350W`


def test_229_layout_moves_power_and_temperature() -> None:
    snap = summary("mx-smi_2.2.9_c500_8.txt")
    assert snap.source == "mx-smi 2.2.9"
    assert len(snap.devices) == 8
    chip = snap.by_index()[3]
    assert (chip.model, chip.bus_id) == ("C500", "0000:12:00.0")
    assert (chip.power_w, chip.power_limit_w, chip.temperature_c) == (60.0, 350.0, 35.0)
    assert chip.memory_used_bytes == 826 * MIB
    assert chip.board_id == ""  # one GPU per board: no grouping
    assert chip.ids == {"board": "3"}


def test_hand_abridged_table_is_read_by_label() -> None:
    (chip,) = summary("mx-smi_2.2.x_abridged_doc.txt").devices
    assert (chip.index, chip.model, chip.bus_id) == (0, "C500", "0000:0e:00.0")
    assert (chip.power_w, chip.power_limit_w, chip.temperature_c) == (57.0, 350.0, 35.0)
    assert chip.ids == {"board": "0"} and chip.healthy


def test_gpus_sharing_a_board_are_grouped_with_power_once() -> None:
    snap = summary("mx-smi_2.2.9_shared_board_synthetic.txt")
    boards = [(c.index, c.board_id, c.power_w) for c in snap.devices]
    assert boards == [(0, "0", 150.0), (1, "0", None), (2, "1", 140.0), (3, "1", None)]


@pytest.mark.parametrize("missing", ["N/A", "NA", "-"])
def test_missing_power_reads_as_none(missing: str) -> None:
    text = fixture(V, "mx-smi_2.2.4_c500.txt").replace("48W / 350W", f"{missing} / 350W  ")
    (chip,) = metax.parse_summary(text).devices
    assert (chip.power_w, chip.power_limit_w) == (None, 350.0)
    old = fixture(V, "mx-smi_2.1.6_mxc550_8.txt").replace("44W   ", f"{missing:<3}   ", 1)
    assert metax.parse_summary(old).devices[0].power_w is None


def test_celsius_sign() -> None:
    text = fixture(V, "mx-smi_2.2.4_c500.txt").replace("45C ", "45℃ ")
    assert metax.parse_summary(text).devices[0].temperature_c == 45.0


def test_state_not_available_is_unhealthy_and_classified() -> None:
    snap = summary("mx-smi_2.2.4_not_available_synthetic.txt")
    well, broken = snap.devices
    assert well.healthy
    assert not broken.healthy
    assert broken.faults[0].code == metax.CODE_NOT_AVAILABLE
    assert "Sysfs File Unaccessible" in broken.faults[0].text
    assert (broken.memory_total_bytes, broken.temperature_c, broken.power_w) == (None, None, None)
    table = fault_table("metax")
    assert table is not None
    meaning = table.lookup(metax.CODE_NOT_AVAILABLE)
    assert meaning.class_name == "Unavailable" and meaning.critical
    assert meaning.fault_class.blame == "hardware"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n",
        "Segmentation fault (core dumped)\n",
        "mx-smi: error while loading shared libraries: libmxsml.so: cannot open shared object file\n",
        # another vendor's summary table
        "+-----------------------------------------------------------------------------+\n"
        "| XPU-SMI               Driver Version: 5.0.21.26    XPU-RT Version: 5.0.21   |\n"
        "|-------------------------------+----------------------+----------------------+\n"
        "| XPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |\n"
        "|===============================+======================+======================|\n"
        "|   0  P800 OAM           N/A   | 00000000:03:00.0 N/A |                    0 |\n"
        "+-------------------------------+----------------------+----------------------+\n",
        "+--------------------------------------------------------------------------------------+\n"
        "| npu-smi 23.0.rc2                 Version: 23.0.rc2                                   |\n",
        # the MetaX header with no table under it
        "=================== MetaX System Management Interface Log ===================\nAttached GPUs : 2\n",
    ],
)
def test_not_a_summary_table_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(NotASummaryTable) as refused:
        metax.parse_summary(text)
    assert "mx-smi" in str(refused.value) and "saw" in str(refused.value)


def test_refuses_kunlunxin_fixture() -> None:
    with pytest.raises(NotASummaryTable):
        metax.parse_summary(fixture("kunlunxin", "xpu_smi_5.0.21.26_p800_oam.txt"))


def test_no_gpus_attached_is_an_empty_snapshot() -> None:
    text = "========== MetaX System Management Interface Log ==========\nAttached GPUs : 0\n"
    assert metax.parse_summary(text).devices == ()


# -- -L and topo -----------------------------------------------------------------------------


def test_list_gives_uuids_and_states() -> None:
    listed = metax.parse_list(fixture(V, "mx-smi_-L_2.2.9.txt"))
    assert sorted(listed) == [0, 7]
    assert listed[7].uuid == "GPU-0e715b45-bcef-1500-e2db-752724095700"
    assert (listed[7].bus_id, listed[7].state, listed[7].model) == ("0000:3c:00.0", "Available", "C500")


def test_topology_two_islands_of_four() -> None:
    islands = metax.parse_topology(fixture(V, "mx-smi_topo-n_2.2.9_c500_8.txt"))
    assert islands == ((0, 1, 2, 3), (4, 5, 6, 7))


def test_topology_all_linked() -> None:
    assert metax.parse_topology(fixture(V, "mx-smi_topo-m_mxc500_4.txt")) == ((0, 1, 2, 3),)


# -- the CLI reader through a real subprocess ------------------------------------------------------

NODE8 = {
    "": fixture(V, "mx-smi_2.2.9_c500_8.txt"),
    "-L": fixture(V, "mx-smi_-L_c500_8_synthetic.txt"),
    "topo -n": fixture(V, "mx-smi_topo-n_2.2.9_c500_8.txt"),
}


def test_cli_reader_merges_table_listing_and_topology(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mx-smi", NODE8)
    reader = metax.CliReader(timeout_s=10)
    snap = reader.read()
    assert reader.via == "cli" and reader.vendor == "metax"
    assert snap.islands == ((0, 1, 2, 3), (4, 5, 6, 7))
    chip = snap.by_index()[5]
    assert chip.uuid == "GPU-3f0c2a10-5b1e-4c7d-9a20-000000000005"
    assert (chip.power_w, chip.temperature_c) == (56.0, 34.0)
    assert all(c.healthy for c in snap.devices)


def test_cli_reader_unavailable_gpu_from_listing(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mx-smi", {**NODE8, "-L": fixture(V, "mx-smi_-L_unavailable_synthetic.txt")})
    snap = metax.CliReader().read()
    sick = snap.by_index()[3]
    assert not sick.healthy
    assert [f.code for f in sick.faults] == [metax.CODE_NOT_AVAILABLE]
    assert sum(c.healthy for c in snap.devices) == 7


def test_cli_reader_old_tool_without_listing_or_topology(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mx-smi", {"": fixture(V, "mx-smi_2.1.6_mxc550_8.txt")})  # -L, topo exit 3
    snap = metax.CliReader().read()
    assert len(snap.devices) == 8 and snap.islands == ()
    assert all(c.uuid == "" and c.healthy for c in snap.devices)


def test_cli_reader_celsius_sign_through_subprocess(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mx-smi", {"*": fixture(V, "mx-smi_2.2.4_c500.txt").replace("45C ", "45℃ ")})
    snap = metax.CliReader().read()
    assert snap.devices[0].temperature_c == 45.0


def test_cli_reader_garbage_is_refused(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mx-smi", {"*": "\x00\x01 not a table at all\n"})
    with pytest.raises(NotASummaryTable):
        metax.CliReader().read()


def test_hanging_tool_times_out_quickly(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mx-smi", {}, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        metax.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5.0


def test_backend_raises_a_critical_event_for_an_unavailable_gpu(tool_path: Path) -> None:
    from corral.v1 import common_pb2

    from agents.backends.vendors.backend import VendorBackend

    install_fake_tool(tool_path, "mx-smi", {**NODE8, "-L": fixture(V, "mx-smi_-L_unavailable_synthetic.txt")})
    backend = VendorBackend(metax.CliReader(), visibility_env=metax.VISIBILITY_ENV)
    devices = backend.inventory()
    assert [d.index for d in devices] == list(range(8))
    assert {d.visibility_env for d in devices} == {"MACA_VISIBLE_DEVICES"}
    assert list(devices[0].peer_indices) == [1, 2, 3] and devices[0].interconnect == "metaxlink"
    backend.sample()
    (event,) = backend.health_events()
    assert (event.device_index, event.code, event.vendor) == (3, metax.CODE_NOT_AVAILABLE, "metax")
    assert event.severity == common_pb2.SEVERITY_CRITICAL
    assert "Unavailable" in event.message


def test_cli_power_limit_is_not_settable(tool_path: Path) -> None:
    with pytest.raises(PowerLimitError):
        metax.CliReader().set_power_limit(0, 300.0)


# -- the library reader against a stub libmxsml -----------------------------------------------------


@dataclass(frozen=True)
class StubGpu:
    bdf: str
    uuid: str
    name: str = "MXC500"
    total_mib: int = 65536
    used_mib: int = 826
    temp_c: int = 35
    power_w: int = 57
    limit_w: int = 350
    util: int = 0
    dram_ue: int = 0
    island: int = -1
    info_rc: int = 0


STUB_C = r"""
#include <string.h>
typedef struct { unsigned deviceId, type; char bdfId[32]; unsigned gpuId, nodeId; char uuid[96];
                 unsigned brand, mode; char deviceName[32]; } info_t;
typedef struct { long visVramTotal, visVramUse, vramTotal, vramUse, xttTotal, xttUse; } mem_t;
typedef struct { unsigned voltage, current, power; } rail_t;
typedef struct { unsigned sramCE, sramUE, dramCE, dramUE, retiredPage; } ecc_t;
#define N %(n)d
static const char *BDF[] = {%(bdf)s};
static const char *UUID[] = {%(uuid)s};
static const char *NAME[] = {%(name)s};
static const long TOTAL_KIB[] = {%(total)s};
static const long USED_KIB[] = {%(used)s};
static const int TEMP_CENTI[] = {%(temp)s};
static const unsigned POWER_MW[] = {%(power)s};
static const unsigned LIMIT_MW[] = {%(limit)s};
static const int UTIL[] = {%(util)s};
static const unsigned DRAM_UE[] = {%(dram_ue)s};
static const int ISLAND[] = {%(island)s};
static const int INFO_RC[] = {%(info_rc)s};
int shut = 0;
int mxSmlInit(void) { return 0; }
int mxSmlShutdown(void) { shut = 1; return 0; }
unsigned mxSmlGetDeviceCount(void) { return N; }
int mxSmlGetDeviceInfo(unsigned i, info_t *o) {
    if (i >= N) return 6;
    if (INFO_RC[i]) return INFO_RC[i];
    memset(o, 0, sizeof *o); o->deviceId = i;
    strcpy(o->bdfId, BDF[i]); strcpy(o->uuid, UUID[i]); strcpy(o->deviceName, NAME[i]);
    return 0;
}
int mxSmlGetMemoryInfo(unsigned i, mem_t *o) {
    memset(o, 0, sizeof *o); o->vramTotal = TOTAL_KIB[i]; o->vramUse = USED_KIB[i];
    o->visVramTotal = 1; o->xttTotal = 7; return 0;
}
int mxSmlGetTemperatureInfo(unsigned i, unsigned sensor, int *t) {
    if (sensor != 0) return 3; *t = TEMP_CENTI[i]; return 0;
}
int mxSmlGetBoardPowerInfo(unsigned i, unsigned *size, rail_t *rails) {
    if (rails == 0 || *size < 2) { *size = 2; return 10; }
    rails[0].power = POWER_MW[i] - 20000; rails[1].power = 20000; rails[0].voltage = 12000; *size = 2;
    return 0;
}
int mxSmlGetBoardPowerLimit(unsigned i, unsigned *limit) { *limit = LIMIT_MW[i]; return 0; }
int mxSmlGetDeviceIpUsage(unsigned i, unsigned ip, int *u) { if (ip != 4) return 3; *u = UTIL[i]; return 0; }
int mxSmlGetTotalEccErrors(unsigned i, ecc_t *e) {
    memset(e, 0, sizeof *e); e->dramUE = DRAM_UE[i]; e->dramCE = 3; e->retiredPage = 9; return 0;
}
int mxSmlGetDeviceTopology(unsigned a, unsigned b, unsigned *level) {
    *level = (ISLAND[a] >= 0 && ISLAND[a] == ISLAND[b]) ? 5 : 4; return 0;
}
"""


def stub_library(tmp_path: Path, gpus: list[StubGpu]) -> str:
    def row(values: list[object], quote: bool = False) -> str:
        return ", ".join(f'"{v}"' if quote else str(v) for v in values)

    source = STUB_C % {
        "n": len(gpus),
        "bdf": row([g.bdf for g in gpus], quote=True),
        "uuid": row([g.uuid for g in gpus], quote=True),
        "name": row([g.name for g in gpus], quote=True),
        "total": row([g.total_mib * 1024 for g in gpus]),
        "used": row([g.used_mib * 1024 for g in gpus]),
        "temp": row([g.temp_c * 100 for g in gpus]),
        "power": row([g.power_w * 1000 for g in gpus]),
        "limit": row([g.limit_w * 1000 for g in gpus]),
        "util": row([g.util for g in gpus]),
        "dram_ue": row([g.dram_ue for g in gpus]),
        "island": row([g.island for g in gpus]),
        "info_rc": row([g.info_rc for g in gpus]),
    }
    return str(build_stub_library(tmp_path, "libmxsml.so", source))


# The 8-GPU node of mx-smi_2.2.9_c500_8.txt / topo -n / the synthetic -L, as MXSML would give it.
NODE8_ROWS = [  # (bus id, temperature, power) per GPU, as mx-smi_2.2.9_c500_8.txt prints them
    ("0000:0e:00.0", 35, 57), ("0000:0f:00.0", 37, 58), ("0000:10:00.0", 36, 58), ("0000:12:00.0", 35, 60),
    ("0000:35:00.0", 33, 57), ("0000:36:00.0", 34, 56), ("0000:37:00.0", 34, 55), ("0000:38:00.0", 36, 56),
]  # fmt: skip
NODE8_GPUS = [
    StubGpu(bdf, f"GPU-3f0c2a10-5b1e-4c7d-9a20-00000000000{i}", temp_c=t, power_w=p, island=i // 4)
    for i, (bdf, t, p) in enumerate(NODE8_ROWS)
]


def comparable(chip: ChipReading) -> tuple[object, ...]:
    return (
        chip.index, chip.vendor, chip.model, chip.uuid, chip.bus_id, chip.board_id,
        chip.memory_total_bytes, chip.memory_used_bytes, chip.power_w, chip.power_limit_w,
        chip.temperature_c, chip.utilization_pct, chip.healthy, chip.faults, chip.power_limit_settable,
    )  # fmt: skip


def test_library_reads_units_and_islands(tmp_path: Path) -> None:
    reader = metax.LibraryReader(stub_library(tmp_path, NODE8_GPUS))
    snap = reader.read()
    assert reader.via == "library" and snap.source == "libmxsml"
    assert snap.islands == ((0, 1, 2, 3), (4, 5, 6, 7))
    chip = snap.by_index()[3]
    assert chip.model == "C500"
    assert chip.memory_total_bytes == GIB64 and chip.memory_used_bytes == 826 * MIB  # KiB -> bytes
    assert (chip.power_w, chip.power_limit_w, chip.temperature_c) == (60.0, 350.0, 35.0)  # mW, 0.01 C
    assert (chip.ecc_uncorrected_total, chip.ecc_corrected_total) == (0, 3)
    reader.close()
    reader.close()  # closing twice is harmless


def test_cli_and_library_agree_on_the_same_node(tool_path: Path, tmp_path: Path) -> None:
    install_fake_tool(tool_path, "mx-smi", NODE8)
    from_cli = metax.CliReader().read()
    from_library = metax.LibraryReader(stub_library(tmp_path, NODE8_GPUS)).read()
    assert from_cli.islands == from_library.islands
    assert from_cli.interconnect == from_library.interconnect == "metaxlink"
    assert [comparable(c) for c in from_cli.devices] == [comparable(c) for c in from_library.devices]


def test_library_dram_ue_is_unhealthy_and_classified(tmp_path: Path) -> None:
    gpus = [StubGpu("0000:01:00.0", "GPU-a"), StubGpu("0000:02:00.0", "GPU-b", dram_ue=4)]
    snap = metax.LibraryReader(stub_library(tmp_path, gpus)).read()
    well, sick = snap.devices
    assert well.healthy and snap.islands == ()
    assert not sick.healthy and sick.ecc_uncorrected_total == 4
    assert [f.code for f in sick.faults] == [metax.CODE_DRAM_UE]
    table = fault_table("metax")
    assert table is not None and table.lookup(metax.CODE_DRAM_UE).class_name == "MemoryUE"


def test_library_unreadable_gpu_is_a_fault_not_a_crash(tmp_path: Path) -> None:
    gpus = [StubGpu("0000:01:00.0", "GPU-a"), StubGpu("0000:02:00.0", "GPU-b", info_rc=4)]
    snap = metax.LibraryReader(stub_library(tmp_path, gpus)).read()
    broken = snap.by_index()[1]
    assert not broken.healthy
    assert broken.faults[0].code == metax.CODE_NOT_AVAILABLE and "sysfs error" in broken.faults[0].text


def test_library_power_limit_is_not_settable(tmp_path: Path) -> None:
    reader = metax.LibraryReader(stub_library(tmp_path, NODE8_GPUS[:1]))
    assert reader.read().devices[0].power_limit_settable is False
    with pytest.raises(PowerLimitError):
        reader.set_power_limit(0, 300.0)


def test_library_missing_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable):
        metax.LibraryReader(str(tmp_path / "no" / "libmxsml.so"))


def test_library_that_will_not_initialise_is_unavailable(tmp_path: Path) -> None:
    source = (
        "int mxSmlInit(void) { return 26; }\n"
        "unsigned mxSmlGetDeviceCount(void) { return 0; }\n"
        "int mxSmlGetDeviceInfo(unsigned i, void *o) { return 2; }\n"
    )
    path = build_stub_library(tmp_path, "libmxsml.so", source)
    with pytest.raises(LibraryUnavailable, match="mxSmlInit returned 26"):
        metax.LibraryReader(str(path))


def test_a_library_that_is_not_mxsml_is_unavailable(tmp_path: Path) -> None:
    path = build_stub_library(tmp_path, "libmxsml.so", "int mxSmlInit(void) { return 0; }\n")
    with pytest.raises(LibraryUnavailable, match="lacks mxSmlGetDeviceCount"):
        metax.LibraryReader(str(path))


def test_module_constants() -> None:
    assert metax.VENDOR == "metax"
    assert metax.TOOLS == ("mx-smi",)
    assert metax.VISIBILITY_ENV == "MACA_VISIBLE_DEVICES"
    assert metax.INTERCONNECT == "metaxlink"
    assert 0x9999 in metax.PCI_VENDOR_IDS
    assert metax.catalog_model("MetaX C550") == "C550" and metax.catalog_model("MXC500") == "C500"
