"""Enflame backend: efsmi tables of four tool versions, `efsmi -q`, a stub libefml, faults."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import enflame
from agents.backends.vendors.faults import fault_table
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, NotASummaryTable
from agents.backends.vendors.tool import ToolTimeout
from tests.agents.vendors.helpers import (
    build_stub_library,
    fixture,
    install_fake_tool,
)

S60_X2 = "efsmi_1.2.0.301_s60_x2.txt"
Q_X2 = "efsmi_q_s60_x2_synthetic.txt"


def parse(name: str) -> NodeSnapshot:
    return enflame.parse_summary(fixture("enflame", name))


def fault_class(code: int) -> str:
    table = fault_table("enflame")
    assert table is not None
    return table.lookup(code).class_name


# --------------------------------------------------------------------------- summary tables
@pytest.mark.parametrize(
    ("name", "source", "models", "power", "limits", "temps", "memory_mib"),
    [
        ("efsmi_1.2.0.301_s60.txt", "efsmi 1.2.0.301", ["S60"], [105.0], [300.0], [39.0], [49120]),
        (
            S60_X2, "efsmi 1.2.0.301",
            ["S60", "S60"], [105.0, 128.0], [300.0, 300.0], [39.0, 46.0], [49120, 42976],
        ),
        (
            "efsmi_1.4.0.505_s60_no_power.txt", "efsmi 1.4.0.505",
            ["S60", "S60"], [None, None], [None, None], [None, None], [49120, 49120],
        ),
        (
            "efsmi_1.6.3.12_s60g_sriov_reconstructed.txt", "efsmi 1.6.3.12",
            ["S60G", "S60G"], [None, None], [None, None], [36.0, 36.0], [23552, 23552],
        ),
        (
            "efsmi_1.7.2.14_l300_reconstructed.txt", "efsmi 1.7.2.14",
            ["L300", "L300"], [112.0, 71.0], [300.0, 300.0], [41.0, 38.0], [147456, 147456],
        ),
    ],
)  # fmt: skip
def test_summary_layouts_of_every_version(
    name: str,
    source: str,
    models: list[str],
    power: list[float | None],
    limits: list[float | None],
    temps: list[float | None],
    memory_mib: list[int],
) -> None:
    snapshot = parse(name)
    assert snapshot.vendor == "enflame" and snapshot.source == source
    assert snapshot.interconnect == "gcu-lare" and snapshot.islands == ()
    devices = snapshot.devices
    assert [d.index for d in devices] == list(range(len(models)))
    assert [d.model for d in devices] == models
    assert [d.power_w for d in devices] == power
    assert [d.power_limit_w for d in devices] == limits
    assert [d.temperature_c for d in devices] == temps
    assert [d.memory_total_bytes for d in devices] == [m * MIB for m in memory_mib]
    assert all(d.vendor == "enflame" and not d.power_limit_settable and d.healthy for d in devices)


def test_summary_reads_ids_bus_and_usage_by_label() -> None:
    first, second = parse(S60_X2).devices
    assert (first.bus_id, second.bus_id) == ("0000:01:00.0", "0000:09:00.0")
    assert first.ids["serial"] == "A073640510015" and first.uuid == "A073640510015"
    assert first.utilization_pct == 0.0
    l300 = parse("efsmi_1.7.2.14_l300_reconstructed.txt").devices[0]
    assert l300.utilization_pct == 37.0 and l300.bus_id == "0000:1a:00.0"


def test_missing_power_spellings_are_none() -> None:
    # `-` (efsmi 1.4) and `N/A` (SR-IOV on 1.6) for power, `-` for temperature.
    dash = parse("efsmi_1.4.0.505_s60_no_power.txt").devices[0]
    assert dash.power_w is None and dash.power_limit_w is None and dash.temperature_c is None
    na = parse("efsmi_1.6.3.12_s60g_sriov_reconstructed.txt").devices[0]
    assert na.power_w is None and na.power_limit_w is None


def test_five_and_six_digit_memory_without_spaces() -> None:
    assert parse("efsmi_1.2.0.301_s60.txt").devices[0].memory_total_bytes == 49120 * MIB
    assert parse("efsmi_1.7.2.14_l300_reconstructed.txt").devices[0].memory_total_bytes == 147456 * MIB


def test_celsius_glyph_and_spaced_c() -> None:
    assert parse("efsmi_1.2.0.301_s60.txt").devices[0].temperature_c == 39.0  # "39 C"
    assert parse("efsmi_1.7.2.14_l300_reconstructed.txt").devices[1].temperature_c == 38.0  # "38℃"


def test_functions_of_one_card_share_a_board_and_report_power_once() -> None:
    vf0, vf1 = parse("efsmi_1.6.3.12_s60g_sriov_reconstructed.txt").devices
    assert vf0.board_id == vf1.board_id == "B102K40611207"
    powered = [replace_power(vf0, 90.0), replace_power(vf1, 90.0)]
    grouped = enflame.group_boards(powered)
    assert [c.power_w for c in grouped] == [90.0, None]


def test_redacted_serials_do_not_make_a_board() -> None:
    # The vllm-gcu capture prints `xxx` for both serials: that names no card.
    assert [d.board_id for d in parse("efsmi_1.4.0.505_s60_no_power.txt").devices] == ["", ""]


def replace_power(chip: ChipReading, watts: float) -> ChipReading:
    from dataclasses import replace

    return replace(chip, power_w=watts)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n",
        "Segmentation fault (core dumped)\n",
        "\x00\x01garbage|||\n| a | b |\n",
        fixture("amd", "amd-smi_26.2.1_mi355x_x2.txt"),
        fixture("enflame", "efsmi_q_1.4.3.4_s60.txt"),
    ],
    ids=["empty", "blank", "crash", "binary", "amd-smi-table", "efsmi-q-detail"],
)
def test_text_that_is_not_an_efsmi_table_is_refused(text: str) -> None:
    with pytest.raises(NotASummaryTable, match="not an efsmi summary table"):
        enflame.parse_summary(text)


# --------------------------------------------------------------------------- efsmi -q
def test_detail_report_of_the_recorded_s60() -> None:
    reports = enflame.parse_detail(fixture("enflame", "efsmi_q_1.4.3.4_s60.txt"))
    assert list(reports) == [0]
    chip = enflame.with_report(parse("efsmi_1.2.0.301_s60.txt").devices[0], reports[0])
    assert chip.uuid == "TPUH74190604" and chip.ids["serial"] == "C0AA640520685"
    assert chip.bus_id == "0000:00:0c.0"
    assert chip.temperature_c == 45.0  # "45 ℃", UTF-8
    assert chip.power_w == 104.0 and chip.power_limit_w == 300.0
    assert chip.memory_total_bytes == 42976 * MIB and chip.memory_used_bytes == 0
    assert chip.healthy and chip.faults == () and chip.ecc_uncorrected_total == 0


def test_unhealthy_device_codes_map_to_actions() -> None:
    reports = enflame.parse_detail(fixture("enflame", Q_X2))
    faults, dbe = enflame.report_faults(reports[1])
    assert dbe == 3
    assert {f.code: fault_class(f.code) for f in faults} == {
        1: "reset-device",  # Health : False
        2: "replace-device",  # RMA flag
        3: "replace-device",  # double-bit errors
        2002: "reset-recovered",  # SIP-sourced resets, an early warning
    }
    chip = enflame.with_report(parse(S60_X2).devices[1], reports[1])
    assert not chip.healthy and chip.ecc_uncorrected_total == 3
    assert enflame.report_faults(reports[0]) == ((), 0)


def test_older_driver_memory_keys_and_power_cable() -> None:
    report = enflame.parse_detail(fixture("enflame", "efsmi_q_old_driver_synthetic.txt"))[0]
    chip = enflame.with_report(parse("efsmi_1.2.0.301_s60.txt").devices[0], report)
    assert chip.memory_total_bytes == 49120 * MIB and chip.memory_used_bytes == 6140 * MIB
    assert chip.utilization_pct == 12.5
    codes = {f.code: fault_class(f.code) for f in chip.faults}
    assert codes == {4: "check-power-cabling", 2000: "operator-reset"}
    assert not chip.healthy  # a card short of power is not schedulable


# --------------------------------------------------------------------------- CLI, real subprocess
def install_efsmi(bin_dir: Path, summary: str, detail: str, **kw: Any) -> None:
    answers = {"": fixture("enflame", summary), "-q": fixture("enflame", detail)}
    install_fake_tool(bin_dir, "efsmi", answers, **kw)


def test_cli_reader_through_the_real_subprocess(tool_path: Path) -> None:
    install_efsmi(tool_path, S60_X2, Q_X2)
    reader = enflame.CliReader(timeout_s=10)
    assert (reader.vendor, reader.via) == ("enflame", "cli")
    snapshot = reader.read()
    healthy, sick = snapshot.devices
    assert snapshot.source == "efsmi 1.2.0.301"
    assert healthy.uuid == "TPUH74190001" and healthy.healthy
    assert sick.uuid == "TPUH74190002" and not sick.healthy
    assert sick.memory_used_bytes == 1024 * MIB and sick.temperature_c == 46.0
    assert sorted(f.code for f in sick.faults) == [1, 2, 3, 2002]


def test_cli_reader_utf8_celsius_from_the_tool(tool_path: Path) -> None:
    install_efsmi(tool_path, "efsmi_1.2.0.301_s60.txt", "efsmi_q_1.4.3.4_s60.txt")
    (chip,) = enflame.CliReader().read().devices
    assert chip.temperature_c == 45.0


def test_a_hanging_efsmi_times_out_quickly(tool_path: Path) -> None:
    install_efsmi(tool_path, S60_X2, Q_X2, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="efsmi"):
        enflame.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5


def test_garbage_from_the_tool_is_a_clear_error(tool_path: Path) -> None:
    install_fake_tool(tool_path, "efsmi", {"*": "efsmi: cannot open /dev/gcu0\n"})
    with pytest.raises(NotASummaryTable, match="efsmi"):
        enflame.CliReader().read()


def test_no_power_limit_can_be_set() -> None:
    with pytest.raises(PowerLimitError, match="admission"):
        enflame.CliReader().set_power_limit(0, 250)


# --------------------------------------------------------------------------- library, stub libefml
STUB = r"""
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
typedef struct { unsigned int version; unsigned long long total, free, used, reserved; } mem2_t;
typedef struct { unsigned int gcu, memory; } util_t;
typedef struct { unsigned int domain, bus, device, function, pciDeviceId, pciSubSystemId;
                 char busId[32]; } pci_t;
typedef struct { bool is_dtu_support_rma; bool flags; uint32_t dbe_count; } rma_t;
typedef struct { unsigned long long event_id; int reset_type; int source;
                 unsigned long long time_stamp; unsigned int bdf; } record_t;
typedef struct { const char *name, *bus, *uuid, *sn; unsigned power_mw, limit_mw; int temp;
                 unsigned long long total, used; unsigned util; bool health, rma; unsigned dbe;
                 int cable, sip_resets, handle_rc; } stub_device;
static stub_device DEVICES[] = { %(devices)s };
#define N (sizeof(DEVICES) / sizeof(DEVICES[0]))
#define DEV(h) ((stub_device *)(h))
int efmlInit(void) { return 0; }
int efmlShutdown(void) { return 0; }
int efmlDeviceGetCount_v2(unsigned *c) { *c = N; return 0; }
int efmlDeviceGetHandleByIndex_v2(unsigned i, void **h) {
  if (i >= N) return 2;
  if (DEVICES[i].handle_rc) return DEVICES[i].handle_rc;
  *h = &DEVICES[i]; return 0; }
int efmlDeviceGetName(void *h, char *b, unsigned n) { strncpy(b, DEV(h)->name, n); return 0; }
int efmlDeviceGetPciInfo_v3(void *h, pci_t *p) { strcpy(p->busId, DEV(h)->bus); return 0; }
int efmlDeviceGetPowerUsage(void *h, unsigned *p) { *p = DEV(h)->power_mw; return 0; }
int efmlDeviceGetEnforcedPowerLimit(void *h, unsigned *p) { *p = DEV(h)->limit_mw; return 0; }
int efmlDeviceGetTemperature(void *h, int sensor, int *t) {
  if (sensor != 0) return 2; *t = DEV(h)->temp; return 0; }
int efmlDeviceGetMemoryInfo_v2(void *h, mem2_t *m) {
  if (m->version != (unsigned)(sizeof(mem2_t) | (2u << 24))) return 25;
  m->total = DEV(h)->total; m->used = DEV(h)->used; m->free = m->total - m->used; return 0; }
int efmlDeviceGetUtilizationRates(void *h, util_t *u) { u->gcu = DEV(h)->util; u->memory = 0; return 0; }
int EfmlInit(bool no_driver) { return no_driver ? 2 : 0; }
int EfmlGetDevHealth(uint32_t i, bool *b) { *b = DEVICES[i].health; return 0; }
int EfmlGetDevRmaDetails(uint32_t i, rma_t *r) {
  r->is_dtu_support_rma = true; r->flags = DEVICES[i].rma; r->dbe_count = DEVICES[i].dbe; return 0; }
int EfmlGetCableQualify(uint32_t i, int *s) { *s = DEVICES[i].cable; return 0; }
int EfmlGetErrorRecords(uint32_t i, uint32_t count, record_t *r, uint32_t *total) {
  unsigned k; for (k = 0; k < (unsigned)DEVICES[i].sip_resets && k < count; k++) r[k].source = 2;
  *total = DEVICES[i].sip_resets; return 0; }
int EfmlGetDevUuid(uint32_t i, char *b) { strcpy(b, DEVICES[i].uuid); return 0; }
int EfmlGetDevSn(uint32_t i, char *b) { strcpy(b, DEVICES[i].sn); return 0; }
"""

# The two S60s of efsmi_1.2.0.301_s60_x2.txt + efsmi_q_s60_x2_synthetic.txt, as EFML answers:
# power in mW, memory in bytes.
S60_DEVICES = [
    '{"S60", "0000:01:00.0", "TPUH74190001", "A073640510015", 105000, 300000, 39,'
    f" {49120 * MIB}ULL, 0ULL, 0, true, false, 0, 1, 0, 0}}",
    '{"Enflame S60", "0000:09:00.0", "TPUH74190002", "C807J40510285", 128000, 300000, 46,'
    f" {42976 * MIB}ULL, {1024 * MIB}ULL, 0, false, true, 3, 1, 2, 0}}",
]


def stub_library(tmp_path: Path, devices: list[str]) -> str:
    return str(build_stub_library(tmp_path, "libefml.so", STUB % {"devices": ", ".join(devices)}))


def comparable(chip: ChipReading) -> dict[str, Any]:
    return {
        "index": chip.index, "model": chip.model, "uuid": chip.uuid, "bus_id": chip.bus_id,
        "board_id": chip.board_id, "serial": chip.ids.get("serial"),
        "memory_total": chip.memory_total_bytes, "memory_used": chip.memory_used_bytes,
        "power": chip.power_w, "limit": chip.power_limit_w, "settable": chip.power_limit_settable,
        "temperature": chip.temperature_c, "utilization": chip.utilization_pct,
        "healthy": chip.healthy, "faults": sorted(f.code for f in chip.faults),
        "dbe": chip.ecc_uncorrected_total, "lost": chip.lost,
    }  # fmt: skip


def test_library_reader_against_a_stub_libefml(tmp_path: Path) -> None:
    reader = enflame.LibraryReader(stub_library(tmp_path, S60_DEVICES))
    assert (reader.vendor, reader.via) == ("enflame", "library")
    snapshot = reader.read()
    healthy, sick = snapshot.devices
    assert snapshot.source == "libefml" and snapshot.interconnect == "gcu-lare"
    assert healthy.power_w == 105.0 and healthy.power_limit_w == 300.0  # from mW
    assert healthy.memory_total_bytes == 49120 * MIB and healthy.healthy
    assert sick.model == "S60" and not sick.healthy
    assert {f.code: fault_class(f.code) for f in sick.faults} == {
        1: "reset-device",
        2: "replace-device",
        3: "replace-device",
        2002: "reset-recovered",
    }
    with pytest.raises(PowerLimitError):
        reader.set_power_limit(0, 200)
    reader.close()


def test_cli_and_library_agree_on_the_same_devices(tool_path: Path, tmp_path: Path) -> None:
    install_efsmi(tool_path, S60_X2, Q_X2)
    from_cli = enflame.CliReader().read()
    from_library = enflame.LibraryReader(stub_library(tmp_path, S60_DEVICES)).read()
    assert [comparable(c) for c in from_cli.devices] == [comparable(c) for c in from_library.devices]
    assert (from_cli.interconnect, from_cli.islands) == (from_library.interconnect, from_library.islands)


def test_a_gcu_that_fell_off_the_bus(tmp_path: Path) -> None:
    lost = '{"S60", "", "", "", 0, 0, 0, 0ULL, 0ULL, 0, true, false, 0, 1, 0, 15}'
    snapshot = enflame.LibraryReader(stub_library(tmp_path, [S60_DEVICES[0], lost])).read()
    ok, gone = snapshot.devices
    assert ok.healthy and not ok.lost
    assert gone.index == 1 and gone.lost and not gone.healthy
    assert [(f.code, fault_class(f.code)) for f in gone.faults] == [(1015, "fallen-off-bus")]


def test_cards_in_dual_mode_share_a_board(tmp_path: Path) -> None:
    die = (
        '{"L300", "0000:%s:00.0", "TPUL3%s", "C311Q50700118", %d, 300000, 40,'
        " 1ULL, 0ULL, 5, true, false, 0, 1, 0, 0}"
    )
    devices = [die % ("1a", "01", 150000), die % ("1b", "02", 150000)]
    first, second = enflame.LibraryReader(stub_library(tmp_path, devices)).read().devices
    assert first.board_id == second.board_id == "C311Q50700118"
    assert (first.power_w, second.power_w) == (150.0, None)


def test_older_libraries_without_some_calls(tmp_path: Path) -> None:
    # No efmlDeviceGetPciInfo_v3, and a legacy call failing with the old enum's 8
    # (EFML_ERROR_INVALID_INPUT), which must not read as v2's 8 (INSUFFICIENT_POWER).
    source = (STUB % {"devices": S60_DEVICES[0]}).replace("efmlDeviceGetPciInfo_v3", "efmlUnusedPciInfo")
    source = source.replace("*s = DEVICES[i].cable; return 0;", "return 8;")
    library = str(build_stub_library(tmp_path, "libefml.so", source))
    (chip,) = enflame.LibraryReader(library).read().devices
    assert chip.bus_id == "" and chip.healthy and chip.faults == ()
    assert chip.power_w == 105.0 and chip.uuid == "TPUH74190001"


def test_missing_library_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable):
        enflame.LibraryReader(str(tmp_path / "libefml.so"))


def test_module_contract() -> None:
    assert enflame.VENDOR == "enflame" and enflame.TOOLS == ("efsmi",)
    assert enflame.VISIBILITY_ENV == "TOPS_VISIBLE_DEVICES"
    assert enflame.PCI_VENDOR_IDS == (0x1E36,) and enflame.INTERCONNECT == "gcu-lare"
    assert "libefml.so" in enflame.LIBRARY_NAMES
