"""Moore Threads backend: mthreads-gmi tables of two tool versions, the CLI reader through a
fake `mthreads-gmi` on PATH (real subprocess), and the library reader through Moore Threads'
own binding pymtml (mthreads-ml-py) against a stub libmtml.so built here."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import moorethreads
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, NodeSnapshot, NotASummaryTable
from agents.backends.vendors.tool import ToolTimeout
from tests.agents.vendors.helpers import build_stub_library, fixture, install_fake_tool

# The fake-tool PATH fixture, bound here so pytest finds it for this module's tests.

S80 = "mthreads-gmi_1.14.0_s80.txt"
S5000 = "mthreads-gmi_2.4.1_s5000.txt"
S4000X8 = "mthreads-gmi_2.4.1_s4000x8.txt"
Q_S80 = "mthreads-gmi-q_1.14.0_s80.txt"
Q_S5000 = "mthreads-gmi-q_2.4.1_s5000.txt"


def text(name: str) -> str:
    return fixture("moorethreads", name)


# ----------------------------------------------------------------------------- parse_summary


def test_mthreads_gmi_1_14_s80_verbatim() -> None:
    snap = moorethreads.parse_summary(text(S80))
    (chip,) = snap.devices
    assert snap.vendor == "moorethreads" and snap.source == "mthreads-gmi 1.14.0 (driver 2.7.0)"
    assert (chip.model, chip.index, chip.bus_id) == ("MTT S80", 0, "0000:04:00.0")
    assert (chip.memory_used_bytes, chip.memory_total_bytes) == (2 * MIB, 16384 * MIB)
    assert (chip.temperature_c, chip.utilization_pct) == (49.0, 0.0)
    # The default table has no power column; MTML has no power-limit API.
    assert chip.power_w is None and chip.power_limit_w is None and not chip.power_limit_settable
    assert chip.healthy and chip.ids == {"device_type": "Physical"}


def test_mthreads_gmi_2_4_s5000_with_perf_column_and_ecc_mode() -> None:
    snap = moorethreads.parse_summary(text(S5000))
    (chip,) = snap.devices
    assert snap.source == "mthreads-gmi 2.4.1 (driver 5.1.0-server)"
    assert (chip.model, chip.bus_id, chip.temperature_c) == ("MTT S5000", "0000:18:00.0", 48.0)
    assert (chip.memory_used_bytes, chip.memory_total_bytes) == (0, 81920 * MIB)  # five digits, no spaces
    assert chip.ids["ecc_mode"] == "On-die, EDC"


def test_eight_s4000_with_mpc_parent_and_missing_temperature() -> None:
    snap = moorethreads.parse_summary(text(S4000X8))
    assert [c.index for c in snap.devices] == list(range(8))
    assert {c.model for c in snap.devices} == {"MTT S4000"}
    chips = snap.by_index()
    assert chips[0].memory_used_bytes == 45231 * MIB and chips[0].utilization_pct == 98.0
    assert chips[2].ids["device_type"] == "MPC Parent"
    assert chips[3].temperature_c is None
    assert snap.islands == () and snap.interconnect == "pcie"


@pytest.mark.parametrize("spelling", ["49℃", "49 °C", "49C"])
def test_temperature_spellings(spelling: str) -> None:
    (chip,) = moorethreads.parse_summary(text(S80).replace("49C   YES", f"{spelling}   YES")).devices
    assert chip.temperature_c == 49.0


@pytest.mark.parametrize(
    "other",
    ["", "garbage \x00\x01\nnothing here\n", fixture("iluvatar", "ixsmi_4.1.0_bi-v150.txt")],
    ids=["empty", "garbage", "ixsmi"],
)
def test_text_that_is_not_an_mthreads_gmi_table_is_refused_clearly(other: str) -> None:
    with pytest.raises(NotASummaryTable, match="not an mthreads-gmi summary table"):
        moorethreads.parse_summary(other)


@pytest.mark.parametrize("model", ["MTTS4000", "MTT S4000", "mtt s4000", "Moore Threads MTT S4000"])
def test_model_names_as_the_catalog_names_them(model: str) -> None:
    assert moorethreads.model_name(model) == "MTT S4000"


# ----------------------------------------------------------------------------- mthreads-gmi -q


def test_query_report_keys_are_found_whatever_the_nesting() -> None:
    (section,) = moorethreads.parse_query(text(Q_S80))
    assert section["_head"] == "00000000:04:00.0"
    assert section["power draw"] == "28.57 W" and section["gpu uuid"].startswith("8d3f6c2e")


# ----------------------------------------------------------------------------- the CLI reader


def test_cli_reader_adds_power_uuid_and_serial_from_q(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mthreads-gmi", {"": text(S80), "-q": text(Q_S80)})
    (chip,) = moorethreads.CliReader(timeout_s=5).read().devices
    assert chip.power_w == 28.57
    assert chip.uuid == "8d3f6c2e-51a7-4b09-9f1e-0c4e2a7d5b31"
    assert chip.ids["serial"] == "MT2405S800142"
    assert not chip.power_limit_settable


@pytest.mark.parametrize("missing", ["N/A", "NA", "-"])
def test_cli_reader_missing_power_in_q(tool_path: Path, missing: str) -> None:
    report = text(Q_S5000).replace("Power Draw                        : N/A", f"Power Draw : {missing}")
    install_fake_tool(tool_path, "mthreads-gmi", {"": text(S5000), "-q": report})
    (chip,) = moorethreads.CliReader(timeout_s=5).read().devices
    assert chip.power_w is None
    assert chip.model == "MTT S5000"  # -q says "MTTS5000"
    assert "serial" not in chip.ids  # N/A


def test_an_unreadable_q_power_costs_only_that_reading(tool_path: Path) -> None:
    report = text(Q_S80).replace("28.57 W", "Unknown Error")
    install_fake_tool(tool_path, "mthreads-gmi", {"": text(S80), "-q": report})
    (chip,) = moorethreads.CliReader(timeout_s=5).read().devices
    assert chip.power_w is None and chip.uuid.startswith("8d3f6c2e")


def test_cli_reader_without_q_still_lists_chips(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mthreads-gmi", {"": text(S4000X8)})  # -q exits 3
    snap = moorethreads.CliReader(timeout_s=5).read()
    assert len(snap.devices) == 8 and all(c.power_w is None for c in snap.devices)


def test_a_hanging_mthreads_gmi_times_out_quickly(tool_path: Path) -> None:
    install_fake_tool(tool_path, "mthreads-gmi", {}, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="did not answer"):
        moorethreads.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5


# ----------------------------------------------------------------------------- the stub libmtml


@dataclass
class StubGpu:
    name: str
    uuid: str
    serial: str
    sbdf: str
    mem_total_mib: int
    mem_used_mib: int
    temp: int
    util: int
    power_mw: int
    ecc_uncorrected: int = 0
    ecc_corrected: int = 0
    lost: int = 0  # 1: device calls answer MTML_ERROR_GPU_IS_LOST; 2: so does opening it
    links: list[int] = field(default_factory=list)  # per MTLink: the peer index, -1 when down


STUB_C = r"""
#include <string.h>
typedef struct { int index; } mtdev;
typedef struct { unsigned version, bandWidth, linkNum, rsvd[4]; } linkspec_t;
typedef struct { char sbdf[32]; unsigned segment, bus, device, pciDeviceId, pciSubsystemId, busWidth;
                 float pciMaxSpeed, pciCurSpeed; unsigned pciMaxWidth, pciCurWidth, pciMaxGen, pciCurGen;
                 int rsvd[6]; } pci_t;
#define N %(n)d
#define MAXLINKS 4
static mtdev DEVS[N];
static const char *NAMES[N] = {%(names)s};
static const char *UUIDS[N] = {%(uuids)s};
static const char *SERIALS[N] = {%(serials)s};
static const char *SBDF[N] = {%(sbdf)s};
static unsigned long long MEM_TOTAL[N] = {%(mem_total)s};
static unsigned long long MEM_USED[N] = {%(mem_used)s};
static unsigned long long ECC[N][2] = {%(ecc)s};
static unsigned TEMP[N] = {%(temp)s};
static unsigned UTIL[N] = {%(util)s};
static unsigned POWER[N] = {%(power)s};
static int LOST[N] = {%(lost)s};
static unsigned LINKS[N] = {%(nlinks)s};
static int PEER[N][MAXLINKS] = {%(peers)s};
static int LIB_TOKEN, SYS_TOKEN;
int stub_open_devices = 0;
void stub_lose(int i) { LOST[i] = 1; }
#define CHECK(d) if (LOST[(d)->index]) return 669;
static int copy(const char *s, char *buf, unsigned n) { strncpy(buf, s, n); buf[n - 1] = 0; return 0; }
const char *mtmlErrorString(int code) { return code == 669 ? "GPU is lost" : "stub error"; }
int mtmlLibraryInit(void **lib) { *lib = &LIB_TOKEN; return 0; }
int mtmlLibraryShutDown(void *lib) { return 0; }
int mtmlLibraryInitSystem(void *lib, void **sys) { *sys = &SYS_TOKEN; return 0; }
int mtmlSystemGetDriverVersion(void *sys, char *buf, unsigned n) { return copy("2.7.0", buf, n); }
int mtmlLibraryFreeSystem(void *sys) { return 0; }
int mtmlLibraryCountDevice(void *lib, unsigned *count) { *count = N; return 0; }
int mtmlLibraryInitDeviceByIndex(void *lib, unsigned i, mtdev **out) {
    if (i >= N) return 3; if (LOST[i] == 2) return 669;
    DEVS[i].index = i; *out = &DEVS[i]; stub_open_devices++; return 0; }
int mtmlLibraryFreeDevice(mtdev *d) { stub_open_devices--; return 0; }
int mtmlDeviceGetIndex(mtdev *d, unsigned *i) { CHECK(d) *i = d->index; return 0; }
int mtmlDeviceGetName(mtdev *d, char *buf, unsigned n) { CHECK(d) return copy(NAMES[d->index], buf, n); }
int mtmlDeviceGetUUID(mtdev *d, char *buf, unsigned n) { CHECK(d) return copy(UUIDS[d->index], buf, n); }
int mtmlDeviceGetSerialNumber(mtdev *d, unsigned n, char *buf) {
    CHECK(d) return copy(SERIALS[d->index], buf, n); }
int mtmlDeviceGetPciInfo(mtdev *d, pci_t *p) {
    CHECK(d) memset(p, 0, sizeof *p); copy(SBDF[d->index], p->sbdf, 32); return 0; }
int mtmlDeviceGetPowerUsage(mtdev *d, unsigned *mw) { CHECK(d) *mw = POWER[d->index]; return 0; }
int mtmlDeviceInitMemory(mtdev *d, mtdev **mem) { CHECK(d) *mem = d; return 0; }
int mtmlDeviceFreeMemory(mtdev *mem) { return 0; }
int mtmlMemoryGetTotal(mtdev *m, unsigned long long *v) { CHECK(m) *v = MEM_TOTAL[m->index]; return 0; }
int mtmlMemoryGetUsed(mtdev *m, unsigned long long *v) { CHECK(m) *v = MEM_USED[m->index]; return 0; }
int mtmlMemoryGetEccErrorCounter(mtdev *m, unsigned type, unsigned counter, unsigned loc,
                                 unsigned long long *v) {
    CHECK(m) if (type > 1 || counter != 0 || loc != 1) return 3; *v = ECC[m->index][type]; return 0; }
int mtmlDeviceInitGpu(mtdev *d, mtdev **gpu) { CHECK(d) *gpu = d; return 0; }
int mtmlDeviceFreeGpu(mtdev *gpu) { return 0; }
int mtmlGpuGetUtilization(mtdev *g, unsigned *v) { CHECK(g) *v = UTIL[g->index]; return 0; }
int mtmlGpuGetTemperature(mtdev *g, unsigned *v) { CHECK(g) *v = TEMP[g->index]; return 0; }
int mtmlDeviceGetMtLinkSpec(mtdev *d, linkspec_t *s) {
    CHECK(d) if (!LINKS[d->index]) return 4; memset(s, 0, sizeof *s);
    s->version = 1; s->bandWidth = 240; s->linkNum = LINKS[d->index]; return 0; }
int mtmlDeviceGetMtLinkState(mtdev *d, unsigned link, unsigned *state) {
    CHECK(d) if (link >= LINKS[d->index]) return 3; *state = PEER[d->index][link] >= 0; return 0; }
int mtmlDeviceGetMtLinkRemoteDevice(mtdev *d, unsigned link, mtdev **out) {
    CHECK(d) int peer = PEER[d->index][link]; if (peer < 0) return 7;
    DEVS[peer].index = peer; *out = &DEVS[peer]; return 0; }
"""


def _c(values: Sequence[str | int]) -> str:
    return ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values)


def build_mtml(tmp_path: Path, gpus: Sequence[StubGpu]) -> Path:
    peers = ", ".join("{" + _c([*g.links, *[-1] * (4 - len(g.links))]) + "}" for g in gpus)
    source = STUB_C % {
        "n": len(gpus),
        "names": _c([g.name for g in gpus]),
        "uuids": _c([g.uuid for g in gpus]),
        "serials": _c([g.serial for g in gpus]),
        "sbdf": _c([g.sbdf for g in gpus]),
        "mem_total": _c([g.mem_total_mib * MIB for g in gpus]),
        "mem_used": _c([g.mem_used_mib * MIB for g in gpus]),
        "ecc": ", ".join("{" + _c([g.ecc_corrected, g.ecc_uncorrected]) + "}" for g in gpus),
        "temp": _c([g.temp for g in gpus]),
        "util": _c([g.util for g in gpus]),
        "power": _c([g.power_mw for g in gpus]),
        "lost": _c([g.lost for g in gpus]),
        "nlinks": _c([len(g.links) for g in gpus]),
        "peers": peers,
    }
    return build_stub_library(tmp_path, "libmtml.so.2", source)


def s80() -> StubGpu:
    """The chip of mthreads-gmi_1.14.0_s80.txt and its -q report, as MTML reports it."""
    return StubGpu(
        "MTT S80", "8d3f6c2e-51a7-4b09-9f1e-0c4e2a7d5b31", "MT2405S800142", "00000000:04:00.0",
        16384, 2, 49, 0, 28_570,
    )  # fmt: skip


def s4000(index: int, links: list[int] | None = None, **changes: int) -> StubGpu:
    gpu = StubGpu(
        "MTT S4000", f"uuid-s4000-{index}", f"SN{index:04d}", f"0000:{0x0F + index:02x}:00.0",
        49152, 1024 * index, 40 + index, 10 * index, 100_000 + 1000 * index, links=links or [],
    )  # fmt: skip
    for key, value in changes.items():
        setattr(gpu, key, value)
    return gpu


def read_library(path: Path) -> NodeSnapshot:
    reader = moorethreads.LibraryReader(str(path))
    try:
        return reader.read()
    finally:
        reader.close()


COMPARED = ("vendor", "model", "index", "uuid", "bus_id", "board_id", "memory_total_bytes",
            "memory_used_bytes", "power_w", "power_limit_w", "power_limit_settable", "temperature_c",
            "utilization_pct", "healthy", "lost")  # fmt: skip


def comparable(snap: NodeSnapshot) -> list[dict[str, object]]:
    return [{k: getattr(c, k) for k in COMPARED} | {"serial": c.ids.get("serial")} for c in snap.devices]


# ----------------------------------------------------------------------------- the library reader


def test_library_and_cli_agree_on_the_same_chip(tmp_path: Path, tool_path: Path) -> None:
    install_fake_tool(tool_path, "mthreads-gmi", {"": text(S80), "-q": text(Q_S80)})
    cli = moorethreads.CliReader(timeout_s=5).read()
    lib = read_library(build_mtml(tmp_path, [s80()]))
    assert comparable(lib) == comparable(cli)
    assert lib.islands == cli.islands == () and lib.interconnect == cli.interconnect == "pcie"
    assert lib.source == "libmtml 2.7.0"


def test_library_units_are_normalised(tmp_path: Path) -> None:
    (chip,) = read_library(build_mtml(tmp_path, [s4000(2)])).devices
    assert chip.power_w == 102.0  # mW
    assert chip.memory_total_bytes == 49152 * MIB and chip.memory_used_bytes == 2048 * MIB  # bytes
    assert (chip.temperature_c, chip.utilization_pct) == (42.0, 20.0)
    assert (chip.ecc_uncorrected_total, chip.ecc_corrected_total) == (0, 0)
    assert chip.bus_id == "0000:11:00.0" and chip.ids == {"serial": "SN0002"}


def test_uncorrected_ecc_makes_a_chip_unhealthy(tmp_path: Path) -> None:
    gpus = [s4000(0), s4000(1, ecc_uncorrected=3, ecc_corrected=17), s4000(2, ecc_corrected=5)]
    chips = read_library(build_mtml(tmp_path, gpus)).by_index()
    assert chips[0].healthy
    assert not chips[1].healthy and chips[1].ecc_uncorrected_total == 3 and chips[1].ecc_corrected_total == 17
    assert chips[2].healthy and chips[2].ecc_corrected_total == 5  # corrected errors alone are fine


def test_gpu_is_lost_marks_the_chip_lost(tmp_path: Path) -> None:
    gpus = [s4000(0), s4000(1, lost=1), s4000(2, lost=2)]
    chips = read_library(build_mtml(tmp_path, gpus)).by_index()
    assert not chips[0].lost and chips[0].healthy
    assert chips[1].lost and not chips[1].healthy
    assert chips[2].lost and not chips[2].healthy


def test_a_chip_lost_later_keeps_its_identity(tmp_path: Path) -> None:
    import ctypes

    path = build_mtml(tmp_path, [s4000(0), s4000(1)])
    reader = moorethreads.LibraryReader(str(path))
    try:
        reader.read()
        ctypes.CDLL(str(path)).stub_lose(1)
        lost = reader.read().by_index()[1]
    finally:
        reader.close()
    assert lost.lost and not lost.healthy
    assert (lost.model, lost.uuid, lost.bus_id) == ("MTT S4000", "uuid-s4000-1", "0000:10:00.0")


def test_mtlink_islands(tmp_path: Path) -> None:
    gpus = [
        s4000(0, links=[1, 2]),
        s4000(1, links=[0, -1]),  # the second link is down
        s4000(2, links=[0]),
        s4000(3, links=[4]),
        s4000(4, links=[3]),
        s4000(5),  # no MTLink
    ]
    snap = read_library(build_mtml(tmp_path, gpus))
    assert snap.islands == ((0, 1, 2), (3, 4))
    assert snap.interconnect == "mtlink"


def test_devices_are_freed_after_each_read(tmp_path: Path) -> None:
    import ctypes

    path = build_mtml(tmp_path, [s4000(0), s4000(1)])
    read_library(path)
    assert ctypes.c_int.in_dll(ctypes.CDLL(str(path)), "stub_open_devices").value == 0


def test_no_power_limit_can_be_set(tmp_path: Path) -> None:
    reader = moorethreads.LibraryReader(str(build_mtml(tmp_path, [s80()])))
    try:
        assert not any(c.power_limit_settable for c in reader.read().devices)
        with pytest.raises(PowerLimitError, match="no power-limit API"):
            reader.set_power_limit(0, 200)
    finally:
        reader.close()
    with pytest.raises(PowerLimitError):
        moorethreads.CliReader(runner=_NoRunner()).set_power_limit(0, 200)


class _NoRunner:
    def run(self, argv: Sequence[str]) -> str:  # pragma: no cover - never called
        raise AssertionError(argv)


def test_a_missing_library_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable):
        moorethreads.LibraryReader(str(tmp_path / "none" / "libmtml.so.2"))


def test_a_missing_binding_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymtml", None)  # import raises ImportError
    with pytest.raises(LibraryUnavailable, match="mthreads-ml-py"):
        moorethreads.LibraryReader(str(tmp_path / "libmtml.so.2"))


def test_module_constants() -> None:
    assert moorethreads.VISIBILITY_ENV == "MUSA_VISIBLE_DEVICES"
    assert moorethreads.INTERCONNECT == "mtlink"
    assert moorethreads.TOOLS == ("mthreads-gmi",)
    assert 0x1ED5 in moorethreads.PCI_VENDOR_IDS
