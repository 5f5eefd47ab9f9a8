"""Iluvatar CoreX backend: ixsmi tables of three IX-ML versions, the CLI reader through a fake
`ixsmi` on PATH (real subprocess), and the library reader against a stub libixml.so."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import iluvatar
from agents.backends.vendors.faults import fault_table
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, NotASummaryTable
from agents.backends.vendors.tool import SubprocessRunner, ToolTimeout
from tests.agents.vendors.helpers import build_stub_library, fixture, install_fake_tool

# The fake-tool PATH fixture, bound here so pytest finds it for this module's tests.

V150_2 = "ixsmi_4.1.0_bi-v150.txt"
V150_4 = "ixsmi_4.1.0_bi-v150x4.txt"
V100 = "ixsmi_3.0.1_bi-v100.txt"
MR_DUO = "ixsmi_4.4.0_mr-v100-duo.txt"
QUERY_4X = "--query-gpu=index,uuid,gpu_serial,gpu.power.draw,gpu.power.limit --format=csv,noheader,nounits"
CSV_4X = "ixsmi-query-4.x_bi-v150x4.csv"
QUERY_3X = "--query-gpu=index,uuid,gpu_serial,power.draw,power.limit --format=csv,noheader,nounits"


def table(name: str) -> str:
    return fixture("iluvatar", name)


# ----------------------------------------------------------------------------- parse_summary


def test_bi_v150_verbatim_two_chips_share_a_board_with_power_on_the_second() -> None:
    snap = iluvatar.parse_summary(table(V150_2))
    assert snap.vendor == "iluvatar"
    assert snap.source == "ixsmi IX-ML 4.1.0"
    first, second = snap.devices
    assert (first.model, first.index, second.index) == ("BI-V150", 0, 1)
    assert first.bus_id == "0000:13:00.0" and second.bus_id == "0000:16:00.0"
    assert first.board_id == second.board_id == "0000:13:00.0"
    assert first.power_w is None and first.power_limit_w is None
    assert (second.power_w, second.power_limit_w) == (93.0, 350.0)
    assert first.memory_total_bytes == 32768 * MIB and first.memory_used_bytes == 116 * MIB
    assert (first.temperature_c, second.temperature_c) == (32.0, 30.0)
    assert first.utilization_pct == 0.0
    assert all(c.healthy and not c.power_limit_settable for c in snap.devices)
    assert snap.islands == ((0, 1),) and snap.interconnect == "board link"


def test_two_boards_of_two_chips_each() -> None:
    snap = iluvatar.parse_summary(table(V150_4))
    boards = [c.board_id for c in snap.devices]
    assert boards == ["0000:13:00.0", "0000:13:00.0", "0000:19:00.0", "0000:19:00.0"]
    assert snap.islands == ((0, 1), (2, 3))
    # Board power is counted once per board: the sum over chips is the sum over boards.
    assert sum(c.power_w or 0 for c in snap.devices) == 93.0 + 287.0
    assert snap.by_index()[2].memory_used_bytes == 30512 * MIB  # five-digit memory


def test_ix_ml_3_bi_v100_is_a_single_chip_board() -> None:
    snap = iluvatar.parse_summary(table(V100))
    (chip,) = snap.devices
    assert (chip.model, chip.power_w, chip.power_limit_w) == ("BI-V100", 54.0, 250.0)
    assert (chip.memory_used_bytes, chip.memory_total_bytes) == (513 * MIB, 32768 * MIB)
    assert chip.board_id == "" and snap.islands == () and snap.interconnect == "pcie"
    assert snap.source == "ixsmi IX-ML 3.0.1"


def test_ix_ml_4_4_wide_table_with_fan_na() -> None:
    snap = iluvatar.parse_summary(table(MR_DUO))
    first, second = snap.devices
    assert (first.model, second.model) == ("MR-V100", "MR-V100")
    assert (first.temperature_c, second.temperature_c) == (41.0, 43.0)
    assert first.power_w is None and (second.power_w, second.power_limit_w) == (38.0, 150.0)
    assert first.ecc_uncorrected_total == 0 and first.healthy
    assert snap.islands == ((0, 1),)
    assert first.memory_total_bytes == 16384 * MIB


@pytest.mark.parametrize("missing", ["N/A / N/A", "NA / NA", "- / -", "N/A/N/A"])
def test_missing_power_spellings_read_as_none_and_still_pair_the_board(missing: str) -> None:
    text = table(V150_4).replace("N/A / N/A", missing)
    snap = iluvatar.parse_summary(text)
    assert [c.power_w for c in snap.devices] == [None, 93.0, None, 287.0]
    assert snap.islands == ((0, 1), (2, 3))


def test_five_digit_memory_without_spaces_and_celsius_sign() -> None:
    text = table(V150_4).replace("30512MiB / 32768MiB ", "30512MiB/32768MiB   ").replace("47C ", "47℃ ")
    chip = iluvatar.parse_summary(text).by_index()[2]
    assert (chip.memory_used_bytes, chip.memory_total_bytes) == (30512 * MIB, 32768 * MIB)
    assert chip.temperature_c == 47.0


def test_a_single_chip_with_missing_power_is_not_paired_with_another_model() -> None:
    second = "Iluvatar BI-V150         | 00000000:16"
    text = table(V150_2).replace(second, second.replace("V150", "V100"))
    snap = iluvatar.parse_summary(text)
    assert snap.islands == () and all(c.board_id == "" for c in snap.devices)


def test_err_cells_and_uncorrected_ecc_make_a_chip_unhealthy() -> None:
    errored = table(V150_2).replace("| 0%   30C   P0    93W / 350W   |", "| 0%   ERR!  P0    ERR! / ERR!  |")
    chip = iluvatar.parse_summary(errored).by_index()[1]
    assert not chip.healthy and chip.temperature_c is None and chip.power_w is None
    assert "temp" in chip.ids["unreadable"]
    clean = "|                    0 |\n| N/A  43C"
    ecc = table(MR_DUO).replace(clean, clean.replace("0 |", "2 |"))
    chip = iluvatar.parse_summary(ecc).by_index()[1]
    assert chip.ecc_uncorrected_total == 2 and not chip.healthy
    first = "| N/A  41C"
    ecc_first = table(MR_DUO).replace(
        "|                    0 |\n" + first, "|                    5 |\n" + first
    )
    snap = iluvatar.parse_summary(ecc_first)
    assert not snap.by_index()[0].healthy and snap.islands == ((0, 1),)  # still one board


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n\x00\x01 not a table at all\n",
        fixture("iluvatar", "other_nvidia-smi_535.txt"),
        fixture("moorethreads", "mthreads-gmi_1.14.0_s80.txt"),
    ],
    ids=["empty", "garbage", "nvidia-smi", "mthreads-gmi"],
)
def test_text_that_is_not_an_ixsmi_table_is_refused_clearly(text: str) -> None:
    with pytest.raises(NotASummaryTable, match="not an ixsmi summary table"):
        iluvatar.parse_summary(text)


def test_nvidia_smi_refusal_names_nvidia() -> None:
    with pytest.raises(NotASummaryTable, match="NVIDIA"):
        iluvatar.parse_summary(fixture("iluvatar", "other_nvidia-smi_535.txt"))


# ----------------------------------------------------------------------------- the CLI reader


def test_cli_reader_reads_table_and_4x_query(tool_path: Path) -> None:
    install_fake_tool(tool_path, "ixsmi", {"": table(V150_4), QUERY_4X: table(CSV_4X)})
    snap = iluvatar.CliReader(timeout_s=5).read()
    chips = snap.by_index()
    assert chips[0].uuid == "GPU-3c8e51f2-6a0b-5d1e-9b47-0f2a6c81d3e5"
    assert chips[3].ids["serial"] == "2229A1500562"
    assert chips[0].power_w is None and chips[3].power_w == 287.0 and chips[3].power_limit_w == 350.0
    assert snap.islands == ((0, 1), (2, 3))


def test_cli_reader_falls_back_to_3x_field_names(tool_path: Path) -> None:
    install_fake_tool(tool_path, "ixsmi", {"": table(V100), QUERY_3X: table("ixsmi-query-3.x_bi-v100.csv")})
    (chip,) = iluvatar.CliReader(timeout_s=5).read().devices
    assert chip.uuid == "GPU-5a1f93c7-0d2e-5b64-9e18-7c3a0f6b2d41"
    assert (chip.power_w, chip.power_limit_w) == (54.0, 250.0)


def test_cli_reader_remembers_which_query_spelling_works(tool_path: Path) -> None:
    install_fake_tool(tool_path, "ixsmi", {"": table(V100), QUERY_3X: table("ixsmi-query-3.x_bi-v100.csv")})
    runner = _Recording(SubprocessRunner(timeout_s=5))
    reader = iluvatar.CliReader(runner)
    reader.read()
    runner.calls.clear()
    assert reader.read().devices[0].uuid.startswith("GPU-5a1f93c7")
    assert runner.calls == ["", QUERY_3X]


class _Recording:
    def __init__(self, inner: SubprocessRunner) -> None:
        self.inner, self.calls = inner, list[str]()

    def run(self, argv: Sequence[str]) -> str:
        self.calls.append(" ".join(argv[1:]))
        return self.inner.run(argv)


def test_cli_reader_without_any_query_answer_still_lists_chips(tool_path: Path) -> None:
    install_fake_tool(tool_path, "ixsmi", {"": table(V150_2)})
    snap = iluvatar.CliReader(timeout_s=5).read()
    assert [c.uuid for c in snap.devices] == ["", ""]
    assert snap.by_index()[1].power_w == 93.0


def test_a_hanging_ixsmi_times_out_quickly(tool_path: Path) -> None:
    install_fake_tool(tool_path, "ixsmi", {}, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="did not answer"):
        iluvatar.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5


def test_cli_reader_cannot_set_power_limits() -> None:
    with pytest.raises(PowerLimitError):
        iluvatar.CliReader(runner=_NoRunner()).set_power_limit(1, 300)


class _NoRunner:
    def run(self, argv: Sequence[str]) -> str:  # pragma: no cover - never called
        raise AssertionError(argv)


# ----------------------------------------------------------------------------- the stub libixml


@dataclass
class StubChip:
    name: str
    uuid: str
    serial: str
    bus: str
    board: int
    mem_total_mib: int
    mem_used_mib: int
    temp: int
    util: int
    power_mw: int = -1  # -1: NVML_ERROR_NOT_SUPPORTED
    board_power_mw: int = -1
    limit_mw: int = -1
    limit_min_mw: int = 0
    limit_max_mw: int = 0
    default_mw: int = -1
    health: int = 0
    lost: bool = False


@dataclass
class StubOptions:
    honour_writes: bool = True
    set_result: int = 0  # what nvmlDeviceSetPowerManagementLimit returns
    extra: list[str] = field(default_factory=list)


STUB_C = r"""
#include <string.h>
typedef struct { int index; } ixdev;
#define N %(n)d
static ixdev DEVS[N];
static const char *NAMES[N] = {%(names)s};
static const char *UUIDS[N] = {%(uuids)s};
static const char *SERIALS[N] = {%(serials)s};
static const char *BUSES[N] = {%(buses)s};
static int BOARD[N] = {%(board)s};
static unsigned long long MEM_TOTAL[N] = {%(mem_total)s};
static unsigned long long MEM_USED[N] = {%(mem_used)s};
static unsigned TEMP[N] = {%(temp)s};
static unsigned UTIL[N] = {%(util)s};
static long long POWER[N] = {%(power)s};
static long long BOARD_POWER[N] = {%(board_power)s};
static long long LIMIT[N] = {%(limit)s};
static long long LIMIT_MIN[N] = {%(limit_min)s};
static long long LIMIT_MAX[N] = {%(limit_max)s};
static long long LIMIT_DEFAULT[N] = {%(default)s};
static unsigned long long HEALTH[N] = {%(health)s};
static int LOST[N] = {%(lost)s};
int stub_set_calls = 0;
int stub_initialised = 0;
#define HONOUR_WRITES %(honour)d
#define SET_RESULT %(set_result)d
typedef struct { char busIdLegacy[16]; unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
                 char busId[32]; } pci_t;
typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned gpu, memory; } util_t;
#define CHECK(d) if (LOST[(d)->index]) return 15;
static int copy(const char *s, char *buf, unsigned n) { strncpy(buf, s, n); buf[n - 1] = 0; return 0; }
int nvmlInit(void) { stub_initialised = 1; return 0; }
int nvmlShutdown(void) { stub_initialised = 0; return 0; }
int nvmlSystemGetDriverVersion(char *buf, unsigned n) { return copy("4.1.0", buf, n); }
int nvmlDeviceGetCount(unsigned *count) { *count = N; return 0; }
int nvmlDeviceGetHandleByIndex(unsigned i, ixdev **out) {
    if (i >= N) return 2; DEVS[i].index = i; *out = &DEVS[i]; return 0; }
int nvmlDeviceGetName(ixdev *d, char *buf, unsigned n) { CHECK(d) return copy(NAMES[d->index], buf, n); }
int nvmlDeviceGetUUID(ixdev *d, char *buf, unsigned n) { CHECK(d) return copy(UUIDS[d->index], buf, n); }
int nvmlDeviceGetSerial(ixdev *d, char *buf, unsigned n) { CHECK(d) return copy(SERIALS[d->index], buf, n); }
int nvmlDeviceGetPciInfo(ixdev *d, pci_t *p) {
    CHECK(d) memset(p, 0, sizeof *p); copy(BUSES[d->index], p->busId, 32); return 0; }
int nvmlDeviceGetMemoryInfo(ixdev *d, mem_t *m) {
    CHECK(d) m->total = MEM_TOTAL[d->index]; m->used = MEM_USED[d->index];
    m->free = m->total - m->used; return 0; }
int nvmlDeviceGetTemperature(ixdev *d, int sensor, unsigned *t) {
    CHECK(d) if (sensor != 0) return 2; *t = TEMP[d->index]; return 0; }
int nvmlDeviceGetUtilizationRates(ixdev *d, util_t *u) {
    CHECK(d) u->gpu = UTIL[d->index]; u->memory = 0; return 0; }
int nvmlDeviceGetPowerUsage(ixdev *d, unsigned *p) {
    CHECK(d) if (POWER[d->index] < 0) return 3; *p = POWER[d->index]; return 0; }
int ixmlDeviceGetBoardPowerUsage(ixdev *d, unsigned *p) {
    CHECK(d) if (BOARD_POWER[d->index] < 0) return 3; *p = BOARD_POWER[d->index]; return 0; }
int nvmlDeviceGetPowerManagementLimit(ixdev *d, unsigned *p) {
    CHECK(d) if (LIMIT[d->index] < 0) return 3; *p = LIMIT[d->index]; return 0; }
int nvmlDeviceGetPowerManagementLimitConstraints(ixdev *d, unsigned *lo, unsigned *hi) {
    CHECK(d) if (LIMIT[d->index] < 0) return 3;
    *lo = LIMIT_MIN[d->index]; *hi = LIMIT_MAX[d->index]; return 0; }
int nvmlDeviceGetPowerManagementDefaultLimit(ixdev *d, unsigned *p) {
    CHECK(d) if (LIMIT_DEFAULT[d->index] < 0) return 3; *p = LIMIT_DEFAULT[d->index]; return 0; }
int nvmlDeviceSetPowerManagementLimit(ixdev *d, unsigned mw) {
    CHECK(d) stub_set_calls++; if (SET_RESULT) return SET_RESULT;
    if (LIMIT[d->index] < 0) return 3;
    if (HONOUR_WRITES) LIMIT[d->index] = mw; return 0; }
int ixmlDeviceGetHealth(ixdev *d, unsigned long long *h) {
    CHECK(d) if (HEALTH[d->index] == ~0ULL) return 999; /* the query itself fails */
    if (HEALTH[d->index] == ~0ULL - 1) return 3; /* not supported */
    *h = HEALTH[d->index]; return 0; }
void stub_lose(int i) { LOST[i] = 1; }
int nvmlDeviceOnSameBoard(ixdev *a, ixdev *b, int *same) {
    CHECK(a) CHECK(b) *same = BOARD[a->index] == BOARD[b->index]; return 0; }
%(extra)s
"""


def _c_list(values: Sequence[str | int]) -> str:
    return ", ".join(f'"{v}"' if isinstance(v, str) else str(int(v)) for v in values)


def build_ixml(tmp_path: Path, chips: Sequence[StubChip], options: StubOptions | None = None) -> Path:
    opts = options or StubOptions()
    source = STUB_C % {
        "n": len(chips),
        "names": _c_list([c.name for c in chips]),
        "uuids": _c_list([c.uuid for c in chips]),
        "serials": _c_list([c.serial for c in chips]),
        "buses": _c_list([c.bus for c in chips]),
        "board": _c_list([c.board for c in chips]),
        "mem_total": _c_list([c.mem_total_mib * MIB for c in chips]),
        "mem_used": _c_list([c.mem_used_mib * MIB for c in chips]),
        "temp": _c_list([c.temp for c in chips]),
        "util": _c_list([c.util for c in chips]),
        "power": _c_list([c.power_mw for c in chips]),
        "board_power": _c_list([c.board_power_mw for c in chips]),
        "limit": _c_list([c.limit_mw for c in chips]),
        "limit_min": _c_list([c.limit_min_mw for c in chips]),
        "limit_max": _c_list([c.limit_max_mw for c in chips]),
        "default": _c_list([c.default_mw for c in chips]),
        "health": _c_list([c.health for c in chips]),
        "lost": _c_list([c.lost for c in chips]),
        "honour": int(opts.honour_writes),
        "set_result": opts.set_result,
        "extra": "\n".join(opts.extra),
    }
    return build_stub_library(tmp_path, "libixml.so", source)


def bi_v150x4() -> list[StubChip]:
    """The four chips of ixsmi_4.1.0_bi-v150x4.txt and its 4.x query, as libixml reports them:
    the board power on both chips of a board through ixmlDeviceGetBoardPowerUsage, the chip
    power and the cap only on the second chip (where ixsmi shows them)."""

    def capped(chip: StubChip) -> StubChip:
        return replace(chip, limit_mw=350_000, limit_min_mw=150_000, limit_max_mw=350_000, default_mw=350_000)

    return [
        StubChip("Iluvatar BI-V150", "GPU-3c8e51f2-6a0b-5d1e-9b47-0f2a6c81d3e5", "2229A1500417",
                 "00000000:13:00.0", 0, 32768, 116, 32, 0, board_power_mw=93_000),
        capped(StubChip("Iluvatar BI-V150", "GPU-7d02a9c4-1e6f-5b38-8a90-4c1f7e2b6d09", "2229A1500417",
                        "00000000:16:00.0", 0, 32768, 116, 30, 0, power_mw=93_000, board_power_mw=93_000)),
        StubChip("Iluvatar BI-V150", "GPU-b41e06d7-3f9a-5c82-a1d5-6e0b9f3c7a24", "2229A1500562",
                 "00000000:19:00.0", 1, 32768, 30512, 47, 88, board_power_mw=287_000),
        capped(StubChip("Iluvatar BI-V150", "GPU-e95c3a18-7b2d-54f0-bc63-1a8d4e0f92b7", "2229A1500562",
                        "00000000:1C:00.0", 1, 32768, 30498, 49, 91, power_mw=287_000,
                        board_power_mw=287_000)),
    ]  # fmt: skip


def open_library(path: Path) -> iluvatar.LibraryReader:
    return iluvatar.LibraryReader(str(path))


COMPARED = ("vendor", "model", "index", "uuid", "bus_id", "board_id", "memory_total_bytes",
            "memory_used_bytes", "power_w", "power_limit_w", "temperature_c", "utilization_pct", "healthy",
            "lost")  # fmt: skip


def comparable(snap: NodeSnapshot) -> list[dict[str, object]]:
    return [{k: getattr(c, k) for k in COMPARED} | {"serial": c.ids.get("serial")} for c in snap.devices]


# ----------------------------------------------------------------------------- the library reader


def test_library_and_cli_agree_on_the_same_chips(tmp_path: Path, tool_path: Path) -> None:
    install_fake_tool(tool_path, "ixsmi", {"": table(V150_4), QUERY_4X: table(CSV_4X)})
    cli = iluvatar.CliReader(timeout_s=5).read()
    reader = open_library(build_ixml(tmp_path, bi_v150x4()))
    try:
        lib = reader.read()
    finally:
        reader.close()
    assert comparable(lib) == comparable(cli)
    assert lib.islands == cli.islands == ((0, 1), (2, 3))
    assert lib.interconnect == cli.interconnect == "board link"
    assert lib.source == "libixml 4.1.0"


def test_library_reads_limit_range_and_probes_a_driver_that_honours_writes(tmp_path: Path) -> None:
    path = build_ixml(tmp_path, bi_v150x4())
    reader = open_library(path)
    try:
        chips = reader.read().by_index()
        carrier, other = chips[1], chips[0]
        assert carrier.power_limit_settable and not other.power_limit_settable
        assert (carrier.power_limit_min_w, carrier.power_limit_max_w, carrier.power_limit_default_w) == (
            150.0,
            350.0,
            350.0,
        )
        assert other.power_limit_w is None and other.power_limit_min_w is None
        # The probe moved the limit and put it back.
        assert carrier.power_limit_w == 350.0
        stub = ctypes.CDLL(str(path))
        assert ctypes.c_int.in_dll(stub, "stub_set_calls").value == 4  # two chips x (probe + restore)
        reader.set_power_limit(3, 300)
        assert reader.read().by_index()[3].power_limit_w == 300.0
        with pytest.raises(PowerLimitError, match="outside"):
            reader.set_power_limit(3, 500)
        with pytest.raises(PowerLimitError, match="belongs to chip 1"):
            reader.set_power_limit(0, 300)
    finally:
        reader.close()


def test_a_driver_that_ignores_writes_is_not_settable(tmp_path: Path) -> None:
    reader = open_library(build_ixml(tmp_path, bi_v150x4(), StubOptions(honour_writes=False)))
    try:
        chips = reader.read().devices
        assert not any(c.power_limit_settable for c in chips)
        assert chips[1].power_limit_w == 350.0
        with pytest.raises(PowerLimitError, match="read back"):
            reader.set_power_limit(1, 300)
    finally:
        reader.close()


def test_a_driver_that_refuses_writes_is_not_settable(tmp_path: Path) -> None:
    reader = open_library(build_ixml(tmp_path, bi_v150x4(), StubOptions(set_result=3)))
    try:
        assert not any(c.power_limit_settable for c in reader.read().devices)
        with pytest.raises(PowerLimitError, match="refused"):
            reader.set_power_limit(3, 300)
    finally:
        reader.close()


def test_health_bits_become_faults_mapped_to_their_action_class(tmp_path: Path) -> None:
    chips = bi_v150x4()
    chips[2].health = 0x10 | 0x4
    chips[3].health = 0x100  # a bit the table does not list
    reader = open_library(build_ixml(tmp_path, chips))
    try:
        snap = reader.read().by_index()
    finally:
        reader.close()
    assert snap[0].healthy and snap[0].faults == ()
    sick = snap[2]
    assert not sick.healthy
    assert [f.code for f in sick.faults] == [0x4, 0x10]
    table_ = fault_table("iluvatar")
    assert table_ is not None
    ecc = table_.lookup(0x10)
    assert ecc.class_name == "memory_fault" and ecc.critical and ecc.fault_class.blame == "hardware"
    assert table_.lookup(0x4).class_name == "thermal" and table_.lookup(0x4).fault_class.early_warning
    assert "ECC" in sick.faults[1].text
    unknown = snap[3]
    assert not unknown.healthy and [f.code for f in unknown.faults] == [0x100]
    assert not table_.lookup(0x100).listed and table_.lookup(0x100).class_name == "unknown_bit"


def test_a_failing_health_query_fails_closed_but_an_unsupported_one_does_not(tmp_path: Path) -> None:
    chips = bi_v150x4()
    chips[0].health = 2**64 - 1  # the stub answers 999 (unknown error)
    chips[1].health = 2**64 - 2  # the stub answers 3 (not supported)
    reader = open_library(build_ixml(tmp_path, chips))
    try:
        snap = reader.read().by_index()
    finally:
        reader.close()
    assert not snap[0].healthy and "999" in snap[0].ids["health_error"] and snap[0].faults == ()
    assert snap[1].healthy and snap[1].faults == ()


def test_every_documented_health_bit_is_in_the_table() -> None:
    table_ = fault_table("iluvatar")
    assert table_ is not None
    assert sorted(table_.codes) == [0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40]
    assert all(table_.lookup(code).critical for code in (0x1, 0x2, 0x8, 0x10, 0x20, 0x40))


def test_a_lost_chip_is_reported_lost(tmp_path: Path) -> None:
    chips = bi_v150x4()
    chips[3].lost = True
    reader = open_library(build_ixml(tmp_path, chips))
    try:
        snap = reader.read().by_index()
    finally:
        reader.close()
    assert snap[3].lost and not snap[3].healthy
    assert not snap[2].lost and snap[2].healthy


def test_a_board_stays_a_board_when_one_of_its_chips_is_lost(tmp_path: Path) -> None:
    path = build_ixml(tmp_path, bi_v150x4())
    reader = open_library(path)
    try:
        assert reader.read().islands == ((0, 1), (2, 3))
        ctypes.CDLL(str(path)).stub_lose(3)
        snap = reader.read()
    finally:
        reader.close()
    chips = snap.by_index()
    assert chips[3].lost and chips[2].board_id == chips[3].board_id == "0000:19:00.0"
    assert (chips[3].model, chips[3].uuid) == ("BI-V150", "GPU-e95c3a18-7b2d-54f0-bc63-1a8d4e0f92b7")
    assert snap.islands == ((0, 1), (2, 3))
    assert chips[2].power_w is None  # the board's power sat on the lost chip


def test_single_chip_boards_read_their_own_power(tmp_path: Path) -> None:
    chip = StubChip("Iluvatar BI-V100", "GPU-5a1f93c7-0d2e-5b64-9e18-7c3a0f6b2d41", "2108A1000233",
                    "00000000:3B:00.0", 0, 32768, 513, 38, 0, power_mw=54_000, limit_mw=250_000,
                    limit_min_mw=150_000, limit_max_mw=250_000)  # fmt: skip
    reader = open_library(build_ixml(tmp_path, [chip]))
    try:
        snap = reader.read()
    finally:
        reader.close()
    (read,) = snap.devices
    assert (read.power_w, read.power_limit_w, read.board_id) == (54.0, 250.0, "")
    assert read.power_limit_settable  # 250 W is the top of the range: the probe steps down
    assert snap.islands == () and snap.interconnect == "pcie"


def test_a_missing_library_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable):
        iluvatar.LibraryReader(str(tmp_path / "nowhere" / "libixml.so"))


def test_module_constants() -> None:
    assert iluvatar.VISIBILITY_ENV == "CUDA_VISIBLE_DEVICES"
    assert iluvatar.TOOLS == ("ixsmi",)
    assert 0x1E3E in iluvatar.PCI_VENDOR_IDS
    assert isinstance(ChipReading(vendor="iluvatar", model="BI-V150", index=0).summary(), dict)
