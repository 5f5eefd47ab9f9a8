"""Kunlunxin backend: xpu_smi tables from three driver versions, -q, -m, Intel's look-alike,
device states through a stub libxpuml, and the documented P800 OAM islands.

The CLI path runs the real subprocess machinery against a fake `xpu_smi` / `xpu-smi` on PATH;
the library path loads a stub libxpuml.so compiled from C here. Fixture sources:
tests/fixtures/vendors/kunlunxin/SOURCES.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import kunlunxin
from agents.backends.vendors.faults import fault_table
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, NotASummaryTable, SnapshotError
from agents.backends.vendors.tool import ToolTimeout
from tests.agents.vendors.helpers import build_stub_library, fixture, install_fake_tool

V = "kunlunxin"
HBM = 98304 * MIB
OAM8 = "xpu_smi_5.0.21.21_p800_oam_8.txt"
OAM8_Q = "xpu-smi_-q_p800_oam_8_synthetic.txt"
PCIE2 = "xpu_smi_p800_pcie_2_ecc_synthetic.txt"
PCIE2_Q = "xpu-smi_-q_p800_pcie_2_ecc_synthetic.txt"


def summary(name: str) -> NodeSnapshot:
    return kunlunxin.parse_summary(fixture(V, name))


def fault_class(code: int) -> str:
    table = fault_table(V)
    assert table is not None
    return table.lookup(code).class_name


# -- the summary table, per driver version --------------------------------------------------------


def test_three_rows_per_device_and_l3_is_not_hbm() -> None:
    snap = summary("xpu_smi_5.0.21.26_p800_oam.txt")
    assert snap.source == "xpu_smi (driver 5.0.21.26)"
    assert snap.interconnect == "xpu-link"
    (chip,) = snap.devices
    assert (chip.vendor, chip.model, chip.index, chip.bus_id) == ("kunlunxin", "P800", 0, "0000:03:00.0")
    assert chip.memory_total_bytes == HBM  # not the 96 MiB L3 row
    assert chip.memory_used_bytes == 0
    assert (chip.power_w, chip.power_limit_w, chip.temperature_c, chip.utilization_pct) == (
        85.0,
        400.0,
        37.0,
        0.0,
    )
    assert chip.ecc_uncorrected_total == 0
    assert chip.healthy and chip.board_id == "" and not chip.power_limit_settable
    assert snap.islands == ()  # one card: no documented topology applies


def test_eight_card_oam_node_gets_the_documented_islands() -> None:
    snap = summary(OAM8)
    assert snap.source == "xpu_smi (driver 5.0.21.21)"
    assert [c.index for c in snap.devices] == list(range(8))
    assert snap.islands == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert snap.by_index()[6].bus_id == "0000:a3:00.0"
    # eight single-chip boards: each chip carries its own power, none is grouped
    assert [c.power_w for c in snap.devices] == [88.0, 90.0, 89.0, 89.0, 88.0, 90.0, 90.0, 87.0]
    assert {c.board_id for c in snap.devices} == {""}


def test_driver_51558_layout() -> None:
    snap = summary("xpu-smi_515.58_p800_oam_8.txt")
    assert snap.source == "xpu_smi (driver 515.58)"
    assert len(snap.devices) == 8
    assert snap.devices[0].memory_used_bytes == 100 * MIB
    assert snap.devices[0].power_w == 98.0


def test_indented_capture_with_five_digit_memory() -> None:
    snap = summary("xpu_smi_515.58_p800_oam_4_indented.txt")
    assert len(snap.devices) == 4
    assert snap.devices[0].memory_used_bytes == 31058 * MIB
    assert snap.devices[0].memory_total_bytes == HBM
    assert snap.islands == ()  # four cards: which island they sit in is not known


def test_five_digit_memory_without_any_spaces() -> None:
    text = fixture(V, "xpu_smi_5.0.21.26_p800_oam.txt").replace("     0MiB / 98304MiB", "98304MiB/98304MiB  ")
    assert kunlunxin.parse_summary(text).devices[0].memory_used_bytes == HBM


@pytest.mark.parametrize("missing", ["N/A", "NA", "-"])
def test_missing_power_reads_as_none(missing: str) -> None:
    text = fixture(V, "xpu_smi_5.0.21.26_p800_oam.txt").replace("85W / 400W", f"{missing} / 400W".rjust(10))
    (chip,) = kunlunxin.parse_summary(text).devices
    assert (chip.power_w, chip.power_limit_w) == (None, 400.0)
    both = fixture(V, "xpu_smi_5.0.21.26_p800_oam.txt").replace(
        "85W / 400W", f"{missing} / {missing}".rjust(10)
    )
    chip = kunlunxin.parse_summary(both).devices[0]
    assert (chip.power_w, chip.power_limit_w) == (None, None)


def test_celsius_sign() -> None:
    text = fixture(V, "xpu_smi_5.0.21.26_p800_oam.txt").replace(" 37C ", " 37℃ ")
    assert kunlunxin.parse_summary(text).devices[0].temperature_c == 37.0


def test_volatile_uncorrectable_ecc_is_unhealthy_and_classified() -> None:
    well, sick = summary(PCIE2).devices
    assert well.healthy and well.model == "P800 PCIe"
    assert not sick.healthy
    assert sick.ecc_uncorrected_total == 2
    assert [f.code for f in sick.faults] == [kunlunxin.CODE_DRAM_UE]
    assert fault_class(kunlunxin.CODE_DRAM_UE) == "MemoryUE"
    assert (sick.power_w, sick.power_limit_w, sick.utilization_pct) == (None, 350.0, 63.0)


# -- refusing what is not Kunlunxin's summary table --------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "intel_xpu-smi_v2.0_default.txt",
        "intel_xpu-smi_discovery.txt",
        "intel_xpu-smi_discovery_-j_reconstructed.json",
    ],
)
def test_intel_xpu_smi_output_is_refused(name: str) -> None:
    with pytest.raises(NotASummaryTable, match="Intel"):
        kunlunxin.parse_summary(fixture(V, name))


def test_intel_usage_text_is_refused_as_intel() -> None:
    usage = "Intel XPU System Management Interface -- v1.2.13\nUsage: xpu-smi [Options]\n  xpu-smi -v\n"
    with pytest.raises(NotASummaryTable, match="Intel"):
        kunlunxin.parse_summary(usage)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n  \n",
        "xpu_smi: error while loading shared libraries: libxpuml.so.1: cannot open shared object file\n",
        "Killed\n",
        fixture("metax", "mx-smi_2.2.4_c500.txt"),
        "+-----------------------------------------------------------------------------+\n"
        "| XPU-SMI               Driver Version: 5.0.21.26    XPU-RT Version: 5.0.21   |\n"
        "+-----------------------------------------------------------------------------+\n",
    ],
)
def test_garbage_and_other_tables_are_refused(text: str) -> None:
    with pytest.raises(NotASummaryTable) as refused:
        kunlunxin.parse_summary(text)
    assert "xpu_smi" in str(refused.value) and "saw" in str(refused.value)


def test_pci_vendor_gate() -> None:
    assert kunlunxin.is_kunlunxin_pci_vendor(0x1D22)
    assert kunlunxin.is_kunlunxin_pci_vendor(0x2057)
    assert not kunlunxin.is_kunlunxin_pci_vendor(0x8086)  # Intel, whose xpu-smi shares the name
    assert not kunlunxin.is_kunlunxin_pci_vendor(0x10DE)


# -- -q and -m ----------------------------------------------------------------------------------


def test_query_labelled_details() -> None:
    queried = kunlunxin.parse_query(fixture(V, "xpu-smi_-q_5.0.21.26_p800_pcie.txt"))
    xpu = queried["0000:01:00.0"]
    assert (xpu.product_name, xpu.serial) == ("P800 PCIe", "02K0MA0258D0007R")
    assert xpu.uuid == "GPU-420716f2-9928-5108-a5b2-e6b7cf36b37c"
    assert (xpu.power_limit_w, xpu.power_w, xpu.temperature_c) == (350.0, 76.0, 46.0)  # "46 C"
    assert xpu.memory_total_bytes == HBM and xpu.memory_used_bytes == 0  # not the L3 "Total : 96 MiB"
    assert (xpu.ecc_volatile_uncorrected, xpu.ecc_aggregate_uncorrected) == (0, 0)


def test_query_refuses_intel_and_garbage() -> None:
    with pytest.raises(NotASummaryTable):
        kunlunxin.parse_query(fixture(V, "intel_xpu-smi_discovery_-j_reconstructed.json"))
    with pytest.raises(SnapshotError):
        kunlunxin.parse_query("no XPU here\n")


def test_machine_readable_fallback_fields() -> None:
    rows = kunlunxin.parse_machine(fixture(V, "xpu_smi_-m_p800_oam.txt"))
    row = rows["0000:05:00.0"]
    assert (row.index, row.serial, row.model, row.temperature_c) == (1, "02K15K624CV0030V", "P800", 39.0)
    assert row.memory_total_bytes == HBM
    with pytest.raises(SnapshotError):
        kunlunxin.parse_machine("00000000:03:00.0 0 0\n")


# -- the CLI reader through a real subprocess ------------------------------------------------------


def test_cli_reader_merges_table_and_query(tool_path: Path) -> None:
    install_fake_tool(tool_path, "xpu_smi", {"": fixture(V, OAM8), "-q": fixture(V, OAM8_Q)})
    reader = kunlunxin.CliReader()
    snap = reader.read()
    assert reader.via == "cli" and reader.vendor == "kunlunxin"
    assert snap.islands == ((0, 1, 2, 3), (4, 5, 6, 7))
    chip = snap.by_index()[6]
    assert chip.uuid == "GPU-5a1c7e00-0000-4000-8000-000000000006"
    assert chip.ids == {"serial": "02K15K624CV00306", "minor": "6"}
    assert (chip.power_w, chip.power_limit_w, chip.temperature_c) == (90.0, 400.0, 39.0)
    assert (chip.ecc_uncorrected_total, chip.ecc_corrected_total) == (0, 0)


def test_cli_reader_ecc_from_query_marks_the_xpu_unhealthy(tool_path: Path) -> None:
    table = fixture(V, PCIE2).replace("|                    2 |", "|                  N/A |")  # only -q knows
    install_fake_tool(tool_path, "xpu_smi", {"": table, "-q": fixture(V, PCIE2_Q)})
    well, sick = kunlunxin.CliReader().read().devices
    assert well.healthy and well.power_w == 76.0
    assert not sick.healthy and [f.code for f in sick.faults] == [kunlunxin.CODE_DRAM_UE]
    assert sick.ecc_uncorrected_total == 2
    assert sick.power_w is None  # `N/A` in both the table and -q


def test_cli_reader_uses_the_hyphen_name_and_falls_back_to_m(tool_path: Path) -> None:
    oam = fixture(V, "xpu_smi_5.0.21.21_p800_oam_8.txt")
    install_fake_tool(
        tool_path, "xpu-smi", {"": oam, "-m": fixture(V, "xpu_smi_-m_p800_oam.txt")}
    )  # -q fails
    snap = kunlunxin.CliReader().read()
    first, second = snap.devices[:2]
    assert (first.uuid, first.ids) == ("02K15K624CV00304", {"serial": "02K15K624CV00304", "minor": "0"})
    assert second.uuid == "02K15K624CV0030V"
    assert snap.devices[2].uuid == ""  # -m knew only two of the eight
    assert first.power_w == 88.0  # from the table; -m's power field is never used


def test_cli_reader_refuses_intel_tool(tool_path: Path) -> None:
    install_fake_tool(tool_path, "xpu-smi", {"*": fixture(V, "intel_xpu-smi_v2.0_default.txt")})
    with pytest.raises(NotASummaryTable, match="Intel"):
        kunlunxin.CliReader().read()


def test_cli_reader_celsius_sign_through_subprocess(tool_path: Path) -> None:
    text = fixture(V, "xpu_smi_5.0.21.26_p800_oam.txt").replace(" 37C ", " 37℃ ")
    install_fake_tool(tool_path, "xpu_smi", {"": text})
    assert kunlunxin.CliReader().read().devices[0].temperature_c == 37.0


def test_hanging_tool_times_out_quickly(tool_path: Path) -> None:
    install_fake_tool(tool_path, "xpu_smi", {}, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        kunlunxin.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5.0


def test_tool_hanging_on_query_times_out_too(tool_path: Path) -> None:
    install_fake_tool(tool_path, "xpu-smi", {}, hang=True)  # the -q call goes to the hanging one
    install_fake_tool(tool_path, "xpu_smi", {"": fixture(V, OAM8)})

    class Split:
        """Table from xpu_smi, everything else from the hanging xpu-smi."""

        def __init__(self) -> None:
            from agents.backends.vendors.tool import SubprocessRunner

            self.runner = SubprocessRunner(timeout_s=0.5)

        def run(self, argv: list[str]) -> str:
            return self.runner.run(argv if len(argv) == 1 else ["xpu-smi", *argv[1:]])

    with pytest.raises(ToolTimeout):
        kunlunxin.CliReader(runner=Split()).read()


def test_cli_power_limit_is_not_settable() -> None:
    with pytest.raises(PowerLimitError):
        kunlunxin.CliReader().set_power_limit(0, 300.0)


# -- the library reader against a stub libxpuml -----------------------------------------------------


@dataclass(frozen=True)
class StubXpu:
    bus: str  # as XPUML prints it: %08X:%02X:%02X.%01X
    serial: str
    uuid: str
    name: str = "P800 OAM"
    used_mib: int = 0
    temp_c: int = 37
    power_w: int = 88
    util: int = 0
    state: int = 201
    lost: int = 0
    reset_required: int = 0


STUB_C = r"""
#include <stdio.h>
#include <string.h>
typedef struct { unsigned domain, bus, device, function, pciDeviceId, pciSubSystemId; char busId[32];
                 unsigned long long reserved[9]; } pci_t;
typedef struct { unsigned long long pageSizeGlobalMemory, totalGlobalMemory, freeGlobalMemory,
                 usedGlobalMemory, pageSizeL3Memory, totalL3Memory, freeL3Memory, usedL3Memory,
                 reserved[8]; } mem_t;
typedef struct { unsigned xpu, memory; unsigned long long reserved[15]; } util_t;
typedef struct dev { unsigned index; } *handle_t;
#define N %(n)d
static struct dev DEVS[N > 0 ? N : 1];
static const char *BUS[] = {%(bus)s};
static const char *SERIAL[] = {%(serial)s};
static const char *UUID[] = {%(uuid)s};
static const char *NAME[] = {%(name)s};
static const unsigned long long USED_MIB[] = {%(used)s};
static const unsigned TEMP[] = {%(temp)s};
static const unsigned POWER_MW[] = {%(power)s};
static const unsigned UTIL[] = {%(util)s};
static const int STATE[] = {%(state)s};
static const int LOST[] = {%(lost)s};
static const int RESET[] = {%(reset)s};
int xpumlInit(void) { return 0; }
int xpumlShutdown(void) { return 0; }
int xpumlDeviceGetCount(unsigned *count) { *count = N; return 0; }
int xpumlDeviceGetHandleByIndex(unsigned i, handle_t *h) {
    if (i >= N) return 2;
    if (LOST[i] == 1) return 15;
    DEVS[i].index = i; *h = &DEVS[i]; return 0;
}
int xpumlDeviceGetName(handle_t h, char *name, unsigned len) {
    snprintf(name, len, "%%s", NAME[h->index]); return 0;
}
int xpumlDeviceGetSerial(handle_t h, char *s, unsigned len) {
    snprintf(s, len, "%%s", SERIAL[h->index]); return 0;
}
%(uuid_call)s
int xpumlDeviceGetMinorNumber(handle_t h, unsigned *m) { *m = h->index; return 0; }
int xpumlDeviceGetPciInfo(handle_t h, pci_t *p) {
    memset(p, 0, sizeof *p); p->pciDeviceId = 0x36882057u; snprintf(p->busId, 32, "%%s", BUS[h->index]);
    return LOST[h->index] == 2 ? 15 : 0;
}
int xpumlDeviceGetMemoryInfo(handle_t h, mem_t *m) {
    memset(m, 0, sizeof *m);
    m->totalGlobalMemory = 98304ULL << 20; m->usedGlobalMemory = USED_MIB[h->index] << 20;
    m->freeGlobalMemory = m->totalGlobalMemory - m->usedGlobalMemory; m->totalL3Memory = 96ULL << 20;
    return 0;
}
int xpumlDeviceGetUtilizationRates(handle_t h, util_t *u) {
    memset(u, 0, sizeof *u); u->xpu = UTIL[h->index]; return 0;
}
int xpumlDeviceGetState(handle_t h, int *s) { *s = STATE[h->index]; return RESET[h->index] ? 16 : 0; }
int xpumlDeviceGetTemperature(handle_t h, int sensor, unsigned *t) {
    *t = TEMP[h->index]; return sensor == 0 ? 0 : 2;
}
int xpumlDeviceGetPowerUsage(handle_t h, unsigned *p) {
    *p = POWER_MW[h->index]; return POWER_MW[h->index] ? 0 : 3;
}
"""

UUID_CALL = (
    "int xpumlDeviceGetUUID(handle_t h, char *u, unsigned len)"
    ' { snprintf(u, len, "%%s", UUID[h->index]); return 0; }'
)


def stub_library(tmp_path: Path, xpus: list[StubXpu], with_uuid: bool = True) -> str:
    def row(values: list[object], quote: bool = False) -> str:
        return ", ".join(f'"{v}"' if quote else str(v) for v in values)

    source = STUB_C % {
        "n": len(xpus),
        "bus": row([x.bus for x in xpus], quote=True),
        "serial": row([x.serial for x in xpus], quote=True),
        "uuid": row([x.uuid for x in xpus], quote=True),
        "name": row([x.name for x in xpus], quote=True),
        "used": row([f"{x.used_mib}ULL" for x in xpus]),
        "temp": row([x.temp_c for x in xpus]),
        "power": row([x.power_w * 1000 for x in xpus]),
        "util": row([x.util for x in xpus]),
        "state": row([x.state for x in xpus]),
        "lost": row([x.lost for x in xpus]),
        "reset": row([x.reset_required for x in xpus]),
        "uuid_call": (UUID_CALL % ()) if with_uuid else "",
    }
    return str(build_stub_library(tmp_path, "libxpuml.so", source))


# The node of xpu_smi_5.0.21.21_p800_oam_8.txt and its synthetic -q, as XPUML would give it.
OAM8_ROWS = [  # (bus, temperature, power)
    ("00000000:03:00.0", 37, 88), ("00000000:05:00.0", 41, 90), ("00000000:63:00.0", 36, 89),
    ("00000000:65:00.0", 36, 89), ("00000000:83:00.0", 40, 88), ("00000000:85:00.0", 40, 90),
    ("00000000:A3:00.0", 39, 90), ("00000000:A5:00.0", 40, 87),
]  # fmt: skip
OAM8_XPUS = [
    StubXpu(bus, f"02K15K624CV0030{i}", f"GPU-5a1c7e00-0000-4000-8000-00000000000{i}", temp_c=t, power_w=p)
    for i, (bus, t, p) in enumerate(OAM8_ROWS)
]


def comparable(chip: ChipReading) -> tuple[object, ...]:
    return (
        chip.index, chip.vendor, chip.model, chip.uuid, chip.bus_id, chip.board_id, dict(chip.ids),
        chip.memory_total_bytes, chip.memory_used_bytes, chip.power_w, chip.temperature_c,
        chip.utilization_pct, chip.healthy, chip.faults, chip.lost, chip.power_limit_settable,
    )  # fmt: skip


def test_library_reads_units(tmp_path: Path) -> None:
    reader = kunlunxin.LibraryReader(stub_library(tmp_path, OAM8_XPUS))
    snap = reader.read()
    assert reader.via == "library" and snap.source == "libxpuml"
    assert snap.islands == ((0, 1, 2, 3), (4, 5, 6, 7))
    chip = snap.by_index()[1]
    assert (chip.model, chip.bus_id) == ("P800", "0000:05:00.0")
    assert chip.memory_total_bytes == HBM  # bytes, not the L3 SRAM
    assert (chip.power_w, chip.temperature_c) == (90.0, 41.0)  # mW -> W
    assert chip.power_limit_w is None  # xpumlDeviceGetPowerManagementLimit is commented out in xpuml.h
    assert chip.ecc_uncorrected_total is None  # XPUML has no ECC counter call
    reader.close()
    reader.close()


def test_cli_and_library_agree_on_the_same_node(tool_path: Path, tmp_path: Path) -> None:
    install_fake_tool(tool_path, "xpu_smi", {"": fixture(V, OAM8), "-q": fixture(V, OAM8_Q)})
    from_cli = kunlunxin.CliReader().read()
    from_library = kunlunxin.LibraryReader(stub_library(tmp_path, OAM8_XPUS)).read()
    assert from_cli.islands == from_library.islands
    assert from_cli.interconnect == from_library.interconnect == "xpu-link"
    assert [comparable(c) for c in from_cli.devices] == [comparable(c) for c in from_library.devices]
    # The one documented difference: only the tool shows the enforced limit.
    assert {c.power_limit_w for c in from_cli.devices} == {400.0}
    assert {c.power_limit_w for c in from_library.devices} == {None}


def test_library_without_uuid_call_uses_the_serial(tmp_path: Path) -> None:
    snap = kunlunxin.LibraryReader(stub_library(tmp_path, OAM8_XPUS[:2], with_uuid=False)).read()
    assert [c.uuid for c in snap.devices] == ["02K15K624CV00300", "02K15K624CV00301"]
    assert snap.islands == ()


@pytest.mark.parametrize(
    ("state", "healthy", "cls"),
    [(207, False, "DeviceError"), (208, False, "DeviceError"), (205, True, "Resetting")],
)
def test_library_device_states(tmp_path: Path, state: int, healthy: bool, cls: str) -> None:
    xpus = [OAM8_XPUS[0], StubXpu("00000000:05:00.0", "S1", "GPU-b", state=state)]
    well, odd = kunlunxin.LibraryReader(stub_library(tmp_path, xpus)).read().devices
    assert well.healthy and well.faults == ()
    assert odd.healthy is healthy
    assert [f.code for f in odd.faults] == [state]
    assert fault_class(state) == cls
    table = fault_table(V)
    assert table is not None and table.lookup(state).critical is not healthy


def test_idle_state_is_no_fault(tmp_path: Path) -> None:
    xpus = [StubXpu("00000000:03:00.0", "S0", "GPU-a", state=0)]
    (chip,) = kunlunxin.LibraryReader(stub_library(tmp_path, xpus)).read().devices
    assert chip.healthy and chip.faults == ()


@pytest.mark.parametrize("where", [1, 2])  # lost when asked for its handle, or midway through the reading
def test_library_lost_xpu(tmp_path: Path, where: int) -> None:
    xpus = [OAM8_XPUS[0], StubXpu("00000000:05:00.0", "S1", "GPU-b", lost=where)]
    well, lost = kunlunxin.LibraryReader(stub_library(tmp_path, xpus)).read().devices
    assert well.healthy and not well.lost
    assert lost.lost and not lost.healthy and lost.index == 1
    assert [f.code for f in lost.faults] == [kunlunxin.XPUML_ERROR_XPU_IS_LOST]
    assert fault_class(kunlunxin.XPUML_ERROR_XPU_IS_LOST) == "Lost"


def test_library_reset_required(tmp_path: Path) -> None:
    xpus = [StubXpu("00000000:03:00.0", "S0", "GPU-a", reset_required=1)]
    (chip,) = kunlunxin.LibraryReader(stub_library(tmp_path, xpus)).read().devices
    assert not chip.healthy
    assert [f.code for f in chip.faults] == [kunlunxin.XPUML_ERROR_RESET_REQUIRED]


def test_backend_reports_a_lost_xpu(tmp_path: Path) -> None:
    from corral.v1 import common_pb2

    from agents.backends.vendors.backend import VendorBackend

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    healthy = kunlunxin.LibraryReader(stub_library(tmp_path / "a", OAM8_XPUS))
    backend = VendorBackend(healthy, visibility_env=kunlunxin.VISIBILITY_ENV)
    assert [d.index for d in backend.inventory()] == list(range(8))
    assert list(backend.inventory()[5].peer_indices) == [4, 6, 7]
    broken = [*OAM8_XPUS[:5], replace(OAM8_XPUS[5], lost=1), *OAM8_XPUS[6:]]
    backend.reader = kunlunxin.LibraryReader(
        stub_library(tmp_path / "b", broken)
    )  # the next read sees it lost
    telemetry = backend.sample()
    assert 5 not in [t.index for t in telemetry]
    kinds = {(e.device_index, e.kind) for e in backend.health_events()}
    assert (5, common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST) in kinds


def test_library_power_limit_is_not_settable(tmp_path: Path) -> None:
    reader = kunlunxin.LibraryReader(stub_library(tmp_path, OAM8_XPUS[:1]))
    assert reader.read().devices[0].power_limit_settable is False
    with pytest.raises(PowerLimitError):
        reader.set_power_limit(0, 300.0)


def test_library_missing_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable):
        kunlunxin.LibraryReader(str(tmp_path / "nowhere" / "libxpuml.so"))


def test_library_without_driver_is_unavailable(tmp_path: Path) -> None:
    path = build_stub_library(tmp_path, "libxpuml.so", "int xpumlInit(void) { return 9; }\n")
    with pytest.raises(LibraryUnavailable, match="driver not loaded"):
        kunlunxin.LibraryReader(str(path))


def test_module_constants() -> None:
    assert kunlunxin.VENDOR == "kunlunxin"
    assert kunlunxin.TOOLS == ("xpu_smi", "xpu-smi")
    assert kunlunxin.VISIBILITY_ENV == "XPU_VISIBLE_DEVICES"
    assert kunlunxin.INTERCONNECT == "xpu-link"
    assert (
        kunlunxin.catalog_model("P800 OAM") == "P800" and kunlunxin.catalog_model("P800 PCIe") == "P800 PCIe"
    )
