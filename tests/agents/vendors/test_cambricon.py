"""Cambricon backend: cnmon parsing across versions, the CLI reader through a real subprocess,
the CNDev library reader against a stub libcndev.so, and the simulator's cnmon round trip."""

from __future__ import annotations

import ctypes
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import cambricon
from agents.backends.vendors.faults import packaged_fault_table
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, NotASummaryTable, VendorFault
from agents.backends.vendors.tool import ToolError, ToolTimeout
from tests.agents.vendors.helpers import (
    build_stub_library,
    fixture,
    install_fake_tool,
)

X8 = "cnmon_v5.10.22_mlu370-x8.txt"
DETAIL_0 = "cnmon_info_c0_synthetic.txt"
DETAIL_1 = "cnmon_info_c1_synthetic.txt"
DETAIL_1_DBE = "cnmon_info_c1_dbe_synthetic.txt"


def parse(name: str) -> NodeSnapshot:
    return cambricon.parse_summary(fixture("cambricon", name))


# -- the summary table, every layout -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "source", "models", "powers", "caps"),
    [
        (X8, "cnmon 5.10.22", ["MLU370-X8"] * 2, [107.0, None], [250.0, 250.0]),
        (
            "cnmon_v5.10.13_sriov.txt",
            "cnmon 5.10.13",
            ["MLU370-X8"] * 4,
            [108.0, None, 221.0, None],
            [250.0] * 4,
        ),
        ("cnmon_v5.10_mlu370-x4.txt", "cnmon 5.10.22", ["MLU370-X4"] * 2, [27.0, 28.0], [150.0, 150.0]),
        ("cnmon_v5.10_mluxxx-masked.txt", "cnmon 5.10.29", ["MLUXXX-XX"] * 2, [105.0, 104.0], [550.0, 550.0]),
        (
            "cnmon_v4.20.11_reconstructed.txt",
            "cnmon 4.20.11",
            ["MLU290-M5"] * 2,
            [174.0, 61.5],
            [350.0, 350.0],
        ),
    ],
)
def test_summary_tables_of_every_version(
    name: str, source: str, models: list[str], powers: list[float | None], caps: list[float]
) -> None:
    snap = parse(name)
    assert snap.vendor == "cambricon" and snap.source == source and snap.interconnect == "mlu-link"
    assert [c.index for c in snap.devices] == list(range(len(models)))
    assert [c.model for c in snap.devices] == models
    assert [c.power_w for c in snap.devices] == powers
    assert [c.power_limit_w for c in snap.devices] == caps
    assert all(c.healthy and not c.power_limit_settable for c in snap.devices)


def test_x8_is_two_chips_of_one_card_with_the_card_power_once() -> None:
    snap = parse(X8)
    first, second = snap.devices
    assert first.board_id == second.board_id != ""
    assert (first.power_w, second.power_w) == (107.0, None)
    assert (first.bus_id, second.bus_id) == ("0000:13:00.0", "0000:16:00.0")
    assert first.memory_total_bytes == 20638 * MIB and first.memory_used_bytes == 0
    assert (first.temperature_c, second.temperature_c) == (28.0, 32.0)
    assert first.utilization_pct == 0.0
    assert snap.islands == ((0, 1),)


def test_x8_cards_pair_consecutive_chips_and_bridge_islands_of_eight() -> None:
    snap = parse("cnmon_v5.10.13_sriov.txt")
    boards = [c.board_id for c in snap.devices]
    assert boards[0] == boards[1] != boards[2] == boards[3]
    assert snap.islands == ((0, 1, 2, 3),)  # one bridge: up to 4 cards = 8 chips [S]


def test_single_chip_cards_have_no_board_or_island() -> None:
    snap = parse("cnmon_v5.10_mlu370-x4.txt")
    assert [c.board_id for c in snap.devices] == ["", ""]
    assert snap.islands == ()


def test_old_v4_layout_has_no_bus_id_and_ignores_virtual_memory() -> None:
    snap = parse("cnmon_v4.20.11_reconstructed.txt")
    first = snap.devices[0]
    assert first.bus_id == ""
    assert first.memory_used_bytes == 9720 * MIB and first.memory_total_bytes == 32768 * MIB
    assert first.utilization_pct == 12.0 and first.temperature_c == 47.0


def test_missing_power_five_digit_memory_and_utf8_celsius() -> None:
    snap = parse("cnmon_missing_power_synthetic.txt")
    c0, c1, c2, c3 = snap.devices
    assert (c0.power_w, c0.power_limit_w) == (None, None)  # `N/A W/ N/A W`
    assert (c1.power_w, c1.power_limit_w) == (None, None)  # `NA/ NA`
    assert (c2.power_w, c2.power_limit_w) == (None, 150.0)  # `-  W/ 150 W`
    assert (c3.power_w, c3.power_limit_w) == (148.0, None)  # `148 W/ -`
    assert c0.temperature_c == 31.0  # 31℃
    assert c2.temperature_c == 33.0  # 33 °C
    assert (c0.memory_used_bytes, c0.memory_total_bytes) == (123 * MIB, 23308 * MIB)
    assert (c2.memory_used_bytes, c2.memory_total_bytes) == (20480 * MIB, 23308 * MIB)
    assert (c1.memory_total_bytes, c1.temperature_c, c1.utilization_pct) == (None, None, None)
    assert c2.bus_id == ""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "garbage \x00\x01 that is not a table\n| a | b |\n",
        fixture("hygon", "hy-smi_dtk24.04.1_k100ai.txt"),
        "+------+\n| NPU   Name  | Health |\n|======|\n| 0  910B3 | OK |\n",
        "| CNMON v5.10.22 |\n| Fan  Temp |\n",  # a banner but no card header
    ],
    ids=["empty", "blank", "garbage", "hygon", "npu-smi-like", "no-header"],
)
def test_other_text_is_not_a_summary_table(text: str) -> None:
    with pytest.raises(NotASummaryTable, match="not a cnmon summary table"):
        cambricon.parse_summary(text)


# -- the CLI reader through a real subprocess ----------------------------------------------------


def fake_cnmon(bin_dir: Path, detail_1: str = DETAIL_1, **answers: str) -> None:
    install_fake_tool(
        bin_dir,
        "cnmon",
        {
            "": fixture("cambricon", X8),
            "info -c 0": fixture("cambricon", DETAIL_0),
            "info -c 1": fixture("cambricon", detail_1),
            **answers,
        },
    )


def test_cli_reader_adds_ids_health_and_limits_from_the_detail(tool_path: Path) -> None:
    fake_cnmon(tool_path)
    snap = cambricon.CliReader(timeout_s=10).read()
    c0, c1 = snap.devices
    assert snap.source == "cnmon 5.10.22"
    assert c0.uuid == "MLU-20001012-1916-0000-0000-000000000000"
    assert c0.board_id == c1.board_id == "4d1120311084"
    assert (c0.power_limit_min_w, c0.power_limit_max_w, c0.power_limit_default_w) == (150.0, 250.0, 250.0)
    assert (c0.power_w, c1.power_w) == (107.0, None)
    assert c1.ecc_corrected_total == 3 and c1.ecc_uncorrected_total == 0
    # a single-bit-error warning keeps the chip in service (early warning only)
    assert c1.faults == (VendorFault(1014, "CNDEV_FR_SBE_VIOLATION"),)
    assert c1.healthy and packaged_fault_table("cambricon").lookup(1014).fault_class.early_warning
    assert not c0.power_limit_settable


def test_cli_reader_unhealthy_chip_maps_its_codes_to_actions(tool_path: Path) -> None:
    fake_cnmon(tool_path, detail_1=DETAIL_1_DBE)
    c0, c1 = cambricon.CliReader(timeout_s=10).read().devices
    assert c0.healthy and not c1.healthy
    assert [f.code for f in c1.faults] == [15, 1015, 2000]
    assert c1.faults[0].text == "CNDEV_XID_DBE_ECC_ERROR"
    meanings = {f.code: packaged_fault_table("cambricon").lookup(f.code) for f in c1.faults}
    assert meanings[15].class_name == "SeparateMLU" and meanings[15].critical
    assert meanings[15].fault_class.blame == "hardware"
    assert meanings[1015].class_name == "SeparateMLU"
    assert meanings[2000].class_name == "ResetMLU"
    assert c1.ecc_uncorrected_total == 2


def test_cli_reader_keeps_the_summary_when_a_detail_call_fails(tool_path: Path) -> None:
    install_fake_tool(tool_path, "cnmon", {"": fixture("cambricon", X8)})  # `info -c N` exits 3
    snap = cambricon.CliReader(timeout_s=10).read()
    assert [c.power_w for c in snap.devices] == [107.0, None]
    assert all(c.uuid == "" and c.healthy for c in snap.devices)


def test_cli_reader_garbage_from_the_tool_is_refused(tool_path: Path) -> None:
    install_fake_tool(tool_path, "cnmon", {"*": "Segmentation fault\n"})
    with pytest.raises(NotASummaryTable):
        cambricon.CliReader(timeout_s=10).read()


def test_cli_reader_gives_up_quickly_on_a_hung_cnmon(tool_path: Path) -> None:
    install_fake_tool(tool_path, "cnmon", {}, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        cambricon.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5


def test_cli_reader_cannot_set_a_power_limit() -> None:
    with pytest.raises(PowerLimitError, match="cndevSetPowerManagementLimitation"):
        cambricon.CliReader().set_power_limit(0, 200)


# -- the library reader against a stub libcndev.so ---------------------------------------------

CNDEV_STUB = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifndef CHIPS
#define CHIPS 2
#endif
typedef struct { int version; unsigned number; } cardinfo_t;
typedef struct { int version; uint8_t uuid[37]; uint64_t ncs; } uuid_t_;
typedef struct { int version; int64_t sn; int64_t motherboard; } sn_t;
typedef struct { uint32_t subsystem, device_id; uint16_t vendor, subvendor;
                 uint32_t domain, bus, device, function;
                 uint16_t module, slot; uint32_t reserved[8]; } pcie_t;
typedef struct { int64_t total, used, reserved, vtotal, vused; uint64_t global, r[16]; } mem_t;
typedef struct { int32_t usage, cap, machine, tdp, max_power, r[16]; } power_t;
typedef struct { int version, board, cluster[20], die[8], chip, inlet, outlet, memory, video, cpu; } temp_t;
typedef struct { int version, average, cores[80]; } util_t;
typedef struct { int version; uint64_t one, multi_one, multi, multi_multi, corrected, uncorrected, total,
                 forbidden; } ecc_t;
typedef struct { char msg[512]; uint32_t device_id, bdf; int code; uint32_t category, severity; } detail_t;
typedef struct { int system, health; detail_t error; } incident_t;
typedef struct { int health, device_state, driver_state, overall; uint32_t count; incident_t incidents[64];
                 uint32_t reserved[8]; } health_t;
typedef struct { uint32_t version; uint64_t supported[32], count[32]; } xid_t;
typedef struct { int32_t version; uint16_t limit, decimal; } limit_t;
typedef struct { int32_t version; uint16_t min, min_decimal, max, max_decimal; } range_t;
typedef struct { int version, active, serdes, cable; } link_status_t;
typedef struct { int version; uint64_t mc_sn, ba_sn; uint32_t slot, port; uint8_t ip[16];
                 uint8_t uuid[37]; } remote_t;

static int faulty, deny;
static uint16_t limits[CHIPS];
void stub_set_faulty(int on) { faulty = on; }
void stub_deny_permission(int on) { deny = on; }
static int at(int handle) { return handle - 100; }
#define CHECK(h) if (at(h) < 0 || at(h) >= CHIPS) return 6

int cndevInit(int reserved) { for (int i = 0; i < CHIPS; i++) limits[i] = 250; return 0; }
int cndevRelease(void) { return 0; }
int cndevGetDeviceCount(cardinfo_t *c) { c->number = CHIPS; return 0; }
int cndevGetDeviceHandleByIndex(int i, int *h) { if (i < 0 || i >= CHIPS) return 6; *h = 100 + i; return 0; }
const char *cndevGetCardNameStringByDevId(int h) { return "MLU370-X8"; }
int cndevGetUUID(uuid_t_ *u, int h) {
    CHECK(h); char b[40]; snprintf(b, sizeof b, "20001012-1916-0000-0000-%012d", at(h));
    memcpy(u->uuid, b, 36); u->uuid[36] = 0; return 0; }
int cndevGetCardSN(sn_t *s, int h) {
    CHECK(h); s->sn = 0x4D1120311084LL + at(h) / 2; s->motherboard = 7; return 0; }
int cndevGetPCIeInfoV2(pcie_t *p, int h) {
    CHECK(h); memset(p, 0, sizeof *p); p->bus = 0x13 + 3 * at(h); return 0; }
int cndevGetMemoryUsageV2(mem_t *m, int h) { CHECK(h); memset(m, 0, sizeof *m); m->total = 20638; return 0; }
int cndevGetDevicePowerInfo(power_t *p, int h) {
    CHECK(h); memset(p, 0, sizeof *p); p->usage = 107; return 0; }
int cndevGetTemperatureInfo(temp_t *t, int h) { CHECK(h); t->board = 28 + 4 * at(h); return 0; }
int cndevGetDeviceUtilizationInfo(util_t *u, int h) { CHECK(h); u->average = 0; return 0; }
int cndevGetECCInfo(ecc_t *e, int h) {
    CHECK(h); memset(e, 0, sizeof *e);
    if (at(h) == 1) { e->corrected = faulty ? 12 : 3; e->uncorrected = faulty ? 2 : 0; }
    return 0; }
int cndevGetCardHealthStateV2(health_t *s, int h) {
    CHECK(h); memset(s, 0, sizeof *s); s->health = 1; s->device_state = 1; s->driver_state = 4;
    if (at(h) == 1) {
        s->count = 1; s->incidents[0].system = 0x10;
        s->incidents[0].health = faulty ? 20 : 10;  /* FAIL : WARN */
        s->incidents[0].error.code = faulty ? 15 : 14;  /* DBE_VIOLATION : SBE_VIOLATION */
        if (faulty) { s->health = 0; s->device_state = 0; }
    }
    return 0; }
int cndevGetXidErrorV2(xid_t *x, int h) {
    CHECK(h); memset(x->count, 0, sizeof x->count); if (faulty && at(h) == 1) x->count[15] = 2; return 0; }
int cndevGetPowerManagementLimitation(limit_t *l, int h) { CHECK(h); l->limit = limits[at(h)]; return 0; }
int cndevGetPowerManagementDefaultLimitation(limit_t *l, int h) { CHECK(h); l->limit = 250; return 0; }
int cndevGetPowerManagementLimitationRange(range_t *r, int h) {
    CHECK(h); r->min = 150; r->max = 250; return 0; }
int cndevSetPowerManagementLimitation(limit_t *l, int h) {
    CHECK(h); if (deny) return 13; if (l->limit < 150 || l->limit > 250) return 5;
    limits[at(h)] = l->limit; return 0; }
#ifdef WITH_MLULINK
/* Port 0 links the two chips of a card; port 1 of chip 1 links to chip 2 when CROSS_LINK. */
int cndevGetMLULinkPortNumber(int h) { return 2; }
int cndevGetMLULinkStatus(link_status_t *s, int h, int port) {
#ifdef CROSS_LINK
    s->active = port == 0 || (port == 1 && at(h) == 1);
#else
    s->active = port == 0;
#endif
    return 0; }
int cndevGetMLULinkRemoteInfo(remote_t *r, int h, int port) {
    int peer = port == 0 ? at(h) ^ 1 : 2; char b[40];
    snprintf(b, sizeof b, "20001012-1916-0000-0000-%012d", peer); memcpy(r->uuid, b, 36); r->uuid[36] = 0;
    return 0; }
#endif
"""


@pytest.fixture
def libcndev(tmp_path: Path) -> Path:
    return build_stub_library(tmp_path, "libcndev.so", CNDEV_STUB)


def comparable(chip: ChipReading) -> ChipReading:
    """What the CLI path can see of a chip: all of it but settability."""
    return dataclasses.replace(chip, power_limit_settable=False)


def test_library_reads_the_x8_card(libcndev: Path) -> None:
    reader = cambricon.LibraryReader(str(libcndev))
    snap = reader.read()
    reader.close()
    c0, c1 = snap.devices
    assert snap.source == "libcndev" and snap.islands == ((0, 1),)
    assert c0.model == "MLU370-X8" and c0.uuid == "MLU-20001012-1916-0000-0000-000000000000"
    assert c0.board_id == c1.board_id == "4d1120311084"
    assert (c0.power_w, c1.power_w) == (107.0, None)
    assert c0.power_limit_settable and c0.power_limit_w == 250.0
    assert (c0.power_limit_min_w, c0.power_limit_max_w) == (150.0, 250.0)


@pytest.mark.parametrize("faulty", [False, True], ids=["healthy", "dbe"])
def test_library_and_cli_agree_on_the_same_devices(
    libcndev: Path,
    tool_path: Path,
    faulty: bool,
) -> None:
    ctypes.CDLL(str(libcndev)).stub_set_faulty(int(faulty))
    fake_cnmon(tool_path, detail_1=DETAIL_1_DBE if faulty else DETAIL_1)
    from_library = cambricon.LibraryReader(str(libcndev)).read()
    from_cli = cambricon.CliReader(timeout_s=10).read()
    assert [comparable(c) for c in from_library.devices] == list(from_cli.devices)
    assert from_library.islands == from_cli.islands
    assert from_library.devices[1].healthy is not faulty


def test_library_sets_the_power_limit_in_whole_watts(libcndev: Path) -> None:
    reader = cambricon.LibraryReader(str(libcndev))
    reader.set_power_limit(1, 199.6)
    assert [c.power_limit_w for c in reader.read().devices] == [250.0, 200.0]
    with pytest.raises(PowerLimitError, match="outside the settable 150-250 W"):
        reader.set_power_limit(0, 300)
    ctypes.CDLL(str(libcndev)).stub_deny_permission(1)
    with pytest.raises(PowerLimitError, match="no permission"):
        reader.set_power_limit(0, 200)


def test_library_islands_follow_the_observed_mlu_links(tmp_path: Path) -> None:
    cases = [
        ("#define CHIPS 4\n#define WITH_MLULINK\n", ((0, 1), (2, 3))),
        ("#define CHIPS 4\n#define WITH_MLULINK\n#define CROSS_LINK\n", ((0, 1, 2, 3),)),
        ("#define CHIPS 4\n", ((0, 1, 2, 3),)),  # no MLU-Link calls: the documented bridge
    ]
    for n, (defines, islands) in enumerate(cases):
        (tmp_path / str(n)).mkdir()
        stub = build_stub_library(tmp_path / str(n), "libcndev.so", defines + CNDEV_STUB)
        assert cambricon.LibraryReader(str(stub)).read().islands == islands, defines


def test_library_unavailable_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable):
        cambricon.LibraryReader(str(tmp_path / "absent" / "libcndev.so"))
    not_cndev = build_stub_library(tmp_path, "libother.so", "int something(void) { return 0; }\n")
    with pytest.raises(LibraryUnavailable, match="not CNDev"):
        cambricon.LibraryReader(str(not_cndev))


# -- the simulator's cnmon ---------------------------------------------------------------------


class RenderedCnmon:
    """A ToolRunner answering from `render_tool_output`, as the simulator does."""

    def __init__(self, snapshot: NodeSnapshot) -> None:
        self.snapshot = snapshot
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        return cambricon.render_tool_output(argv, self.snapshot)


@pytest.mark.parametrize("detail_1", [DETAIL_1, DETAIL_1_DBE], ids=["healthy", "unhealthy"])
def test_rendered_cnmon_reads_back_the_same_snapshot(tool_path: Path, detail_1: str) -> None:
    fake_cnmon(tool_path, detail_1=detail_1)
    original = cambricon.CliReader(timeout_s=10).read()
    runner = RenderedCnmon(original)
    again = cambricon.CliReader(runner=runner).read()
    assert again.devices == original.devices and again.islands == original.islands
    assert runner.calls == [["cnmon"], ["cnmon", "info", "-c", "0"], ["cnmon", "info", "-c", "1"]]
    # and the rendered summary is itself a summary table that parse_summary reads
    summary = cambricon.render_tool_output(["cnmon"], original)
    assert [c.power_w for c in cambricon.parse_summary(summary).devices] == [107.0, None]


def test_rendered_cnmon_of_a_hand_built_node() -> None:
    # heartbeat XID; a booting driver; codes the table does not list (the simulator may inject any)
    faults = {
        0: (),
        1: (cambricon.fault(2102),),
        2: (cambricon.fault(99), cambricon.fault(1077), cambricon.fault(2250)),
        3: (cambricon.fault(12),),
    }
    chips = tuple(
        ChipReading(
            vendor="cambricon",
            model="MLU370-X8",
            index=i,
            uuid=f"MLU-{i}",
            bus_id=f"0000:{0x13 + i:02x}:00.0",
            board_id=f"card{i // 2}",
            memory_total_bytes=23374 * MIB,
            memory_used_bytes=100 * i * MIB,
            power_w=None if i % 2 else 180.5,
            power_limit_w=250.0,
            temperature_c=40.0 + i,
            utilization_pct=10.0 * i,
            faults=faults[i],
            healthy=i not in (1, 3),
            ecc_corrected_total=0,
            ecc_uncorrected_total=0,
        )
        for i in range(4)
    )
    node = NodeSnapshot("cambricon", "sim", chips, "mlu-link", cambricon.documented_islands(chips))
    again = cambricon.CliReader(runner=RenderedCnmon(node)).read()
    assert again.devices == node.devices and again.islands == node.islands
    assert packaged_fault_table("cambricon").lookup(again.devices[3].faults[0].code).class_name == "ResetMLU"
    assert [f.text for f in again.devices[2].faults] == ["XID_99", "INCIDENT_77", "CODE_2250"]
    assert (
        packaged_fault_table("cambricon").lookup(2102).class_name == "WaitForDriver"
        and not again.devices[1].healthy
    )


def test_rendered_cnmon_refuses_other_commands() -> None:
    with pytest.raises(ToolError):
        cambricon.render_tool_output(["cnmon", "topo"], parse(X8))
    with pytest.raises(ToolError):
        cambricon.render_tool_output(["cnmon", "info", "-c", "9"], parse(X8))
