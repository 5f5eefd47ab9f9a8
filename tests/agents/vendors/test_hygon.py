"""Hygon backend: hy-smi / rocm-smi tables and --json across DTK versions, the CLI reader through
a real subprocess, and the ROCm-SMI library reader against a stub librocm_smi64.so."""

from __future__ import annotations

import ctypes
import dataclasses
import time
from pathlib import Path

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import hygon
from agents.backends.vendors.faults import packaged_fault_table
from agents.backends.vendors.hygon_cli import parse_json
from agents.backends.vendors.hygon_common import assemble
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, NotASummaryTable, SnapshotError
from agents.backends.vendors.tool import SubprocessRunner, ToolTimeout
from tests.agents.vendors.helpers import (
    build_stub_library,
    fixture,
    install_fake_tool,
)

K100AI = "hy-smi_dtk24.04.1_k100ai.txt"
JSON_MIB = "hy-smi_json_dtk24.04.3_mib_synthetic.json"
JSON_BYTES = "hy-smi_json_bytes_hcu_synthetic.json"
RAS_CLEAN = "hy-smi_rasinfo_clean_synthetic.json"
RAS_UMC = "hy-smi_rasinfo_umc_synthetic.json"
JSON_KEY = " ".join(hygon.JSON_QUERY)
JSON_KEY_NO_POWER = " ".join(hygon.JSON_QUERY_NO_POWER)
ECC_KEY = " ".join(hygon.ECC_QUERY)


def parse(name: str) -> NodeSnapshot:
    return hygon.parse_summary(fixture("hygon", name))


# -- the concise table, every layout -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "source", "temps", "powers", "caps", "utils"),
    [
        (
            K100AI,
            "hy-smi table",
            [49.0, 48.0, 53.0, 49.0],
            [118.0, 120.0, 116.0, 138.0],
            [800.0] * 4,
            [0.0] * 4,
        ),
        (
            "rocm-smi_dtk23.10.1_k100_reconstructed.txt",
            "hy-smi table",
            [41.0, 43.0, 40.0, 42.0, 39.0, 40.0, 41.0, 44.0],
            [67.0, 69.0, 250.0, 255.0, 66.0, 65.0, 68.0, 70.0],
            [300.0] * 8,
            [0.0, 0.0, 100.0, 100.0, 0.0, 0.0, 0.0, 0.0],
        ),
        (
            "rocm-smi_z100_sclk_reconstructed.txt",
            "rocm-smi table",
            [36.0, 38.0, 51.0, 35.0],
            [41.0, 43.0, 212.0, None],
            [300.0, 300.0, 300.0, None],
            [0.0, 0.0, 99.0, 0.0],
        ),
        (
            "rocm-smi_z100_nosclk_reconstructed.txt",
            "hy-smi table",
            [33.0, 34.0],
            [35.0, 36.0],
            [300.0] * 2,
            [0.0] * 2,
        ),
        (
            "hy-smi_mode_na_synthetic.txt",
            "hy-smi table",
            [45.0, 46.0, 44.0, 47.0],
            [110.0, None, None, None],
            [600.0, 600.0, 280.0, 280.0],
            [12.0, 10.0, 0.0, 0.0],
        ),
    ],
)
def test_summary_tables_of_every_version(
    name: str,
    source: str,
    temps: list[float],
    powers: list[float | None],
    caps: list[float | None],
    utils: list[float],
) -> None:
    snap = parse(name)
    assert snap.vendor == "hygon" and snap.source == source and snap.interconnect == "xgmi"
    assert [c.index for c in snap.devices] == list(range(len(temps)))
    assert [c.temperature_c for c in snap.devices] == temps
    assert [c.power_w for c in snap.devices] == powers
    assert [c.power_limit_w for c in snap.devices] == caps
    assert [c.utilization_pct for c in snap.devices] == utils
    assert all(c.healthy and not c.power_limit_settable and c.board_id == "" for c in snap.devices)
    assert snap.islands == ()


def test_the_table_names_no_model_or_memory() -> None:
    chip = parse(K100AI).devices[0]
    assert (chip.model, chip.memory_total_bytes, chip.memory_used_bytes) == ("DCU", None, None)
    assert parse("hy-smi_mode_na_synthetic.txt").devices[0].model == "HCU"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "garbage \x00 that is not a table\n",
        fixture("cambricon", "cnmon_v5.10.22_mlu370-x8.txt"),
        fixture("hygon", JSON_MIB),
        "Device  Node  IDs  Temp  Power  PwrCap  VRAM%  GPU%\n0  1  0x74a1  40.0°C  140.0W  750.0W  0%  0%\n",
    ],
    ids=["empty", "blank", "garbage", "cnmon", "json", "amd-rocm6-device-column"],
)
def test_other_text_is_not_a_summary_table(text: str) -> None:
    with pytest.raises(NotASummaryTable, match="not a hy-smi/rocm-smi summary table"):
        hygon.parse_summary(text)


# -- --json --------------------------------------------------------------------------------------


def test_json_in_mib_with_dcu_use() -> None:
    snap = assemble(parse_json(fixture("hygon", JSON_MIB)), "json")
    c0 = snap.devices[0]
    assert [c.index for c in snap.devices] == [0, 1, 2, 3]
    assert c0.model == "K100-AI"  # hy-smi's K100_AI, as the catalog names it
    assert (c0.memory_total_bytes, c0.memory_used_bytes) == (65520 * MIB, 120 * MIB)
    assert (c0.power_w, c0.power_limit_w, c0.temperature_c) == (118.0, 800.0, 49.0)  # edge sensor first
    assert (c0.uuid, c0.bus_id) == ("K100AI0A1B2C3D00", "0000:1c:00.0")


def test_json_in_bytes_with_hcu_use_and_missing_values() -> None:
    c0, c1 = assemble(parse_json(fixture("hygon", JSON_BYTES)), "json").devices
    assert c0.model == "Z100L"
    assert (c0.memory_total_bytes, c0.memory_used_bytes) == (34342961152, 25769803776)
    assert (c0.utilization_pct, c0.power_w, c0.uuid) == (87.0, None, "")
    assert c0.temperature_c == 58.0  # no edge sensor: core before junction
    assert (c1.power_w, c1.temperature_c) == (61.0, 40.0)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"system": {"Driver version": "6.3"}}'])
def test_json_without_cards_is_refused(text: str) -> None:
    with pytest.raises(SnapshotError, match="hy-smi --json"):
        parse_json(text)


# -- the CLI reader through a real subprocess ----------------------------------------------------


def fake_hy_smi(bin_dir: Path, answers: dict[str, str], name: str = "hy-smi", *, hang: bool = False) -> None:
    install_fake_tool(bin_dir, name, answers, hang=hang)


def healthy_answers(ras: str = RAS_CLEAN) -> dict[str, str]:
    return {
        JSON_KEY: fixture("hygon", JSON_MIB),
        ECC_KEY: fixture("hygon", ras),
        "": fixture("hygon", K100AI),
    }


def test_cli_reader_prefers_json(tool_path: Path) -> None:
    fake_hy_smi(tool_path, healthy_answers())
    snap = hygon.CliReader(timeout_s=10).read()
    assert snap.source == "hy-smi --json"
    c0 = snap.devices[0]
    assert c0.model == "K100-AI" and c0.memory_total_bytes == 65520 * MIB
    assert (c0.ecc_corrected_total, c0.ecc_uncorrected_total) == (0, 0)
    assert all(c.healthy for c in snap.devices)


def test_cli_reader_finds_rocm_smi_when_there_is_no_hy_smi(tool_path: Path) -> None:
    fake_hy_smi(tool_path, {"": fixture("hygon", "rocm-smi_z100_sclk_reconstructed.txt")}, name="rocm-smi")
    reader = hygon.CliReader(timeout_s=10)
    assert reader.tool == "rocm-smi"
    assert reader.read().source == "rocm-smi table"
    # as detection opens it: with a runner of its own
    assert hygon.CliReader(SubprocessRunner(timeout_s=10, extra_dirs=hygon.TOOL_DIRS), 10).tool == "rocm-smi"


def test_cli_reader_falls_back_to_the_table_when_json_is_refused(tool_path: Path) -> None:
    fake_hy_smi(tool_path, {"": fixture("hygon", K100AI)})  # every --json call exits 3
    snap = hygon.CliReader(timeout_s=10).read()
    assert snap.source == "hy-smi table"
    assert [c.power_w for c in snap.devices] == [118.0, 120.0, 116.0, 138.0]


def test_cli_reader_retries_without_showpower_and_fills_power_from_the_table(tool_path: Path) -> None:
    fake_hy_smi(
        tool_path,
        {
            JSON_KEY_NO_POWER: fixture("hygon", JSON_BYTES),
            "": fixture("hygon", "rocm-smi_z100_nosclk_reconstructed.txt"),
        },
    )
    c0, c1 = hygon.CliReader(timeout_s=10).read().devices
    assert c0.power_w == 35.0  # JSON said N/A; the table has it
    assert c1.power_w == 61.0  # JSON's own reading wins
    assert c0.model == "Z100L" and c0.ecc_uncorrected_total is None  # no RAS answer: unknown


def test_cli_reader_unhealthy_dcu_maps_its_block_to_an_action(tool_path: Path) -> None:
    fake_hy_smi(tool_path, healthy_answers(RAS_UMC))
    chips = hygon.CliReader(timeout_s=10).read().devices
    sick = chips[2]
    assert not sick.healthy and all(c.healthy for c in chips if c.index != 2)
    assert (sick.ecc_corrected_total, sick.ecc_uncorrected_total) == (5, 2)
    assert [f.code for f in sick.faults] == [1]
    meaning = packaged_fault_table("hygon").lookup(sick.faults[0].code)
    assert (
        meaning.class_name == "SeparateDCU" and meaning.critical and meaning.fault_class.blame == "hardware"
    )


def test_cli_reader_gives_up_quickly_on_a_hung_hy_smi(tool_path: Path) -> None:
    fake_hy_smi(tool_path, {}, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        hygon.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5


def test_cli_reader_garbage_from_the_tool_is_refused(tool_path: Path) -> None:
    fake_hy_smi(tool_path, {"*": "hy-smi: error while loading shared libraries\n"})
    with pytest.raises(NotASummaryTable):
        hygon.CliReader(timeout_s=10).read()


def test_cli_reader_cannot_set_a_power_cap() -> None:
    with pytest.raises(PowerLimitError, match="rsmi_dev_power_cap_set"):
        hygon.CliReader().set_power_limit(0, 500)


# -- the library reader against a stub librocm_smi64.so ------------------------------------------

RSMI_STUB = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#define N 4
typedef struct { uint64_t correctable, uncorrectable; } error_count_t;
static int faulty, deny;
static uint64_t caps[N] = {800000000ULL, 800000000ULL, 800000000ULL, 800000000ULL};
static const int64_t temps[N] = {49000, 48000, 53000, 49000};
static const uint64_t powers[N] = {118000000ULL, 120000000ULL, 116000000ULL, 138000000ULL};
static const uint64_t buses[N] = {0x1c, 0x3d, 0x99, 0xb8};
void stub_set_faulty(int on) { faulty = on; }
void stub_deny_permission(int on) { deny = on; }
#define CHECK(d) if ((d) >= N) return 1

int rsmi_init(uint64_t flags) { return 0; }
int rsmi_shut_down(void) { return 0; }
int rsmi_num_monitor_devices(uint32_t *n) { *n = N; return 0; }
int rsmi_dev_name_get(uint32_t d, char *name, size_t len) {
    CHECK(d); snprintf(name, len, "K100_AI"); return 0; }
int rsmi_dev_serial_number_get(uint32_t d, char *s, uint32_t len) {
    CHECK(d); snprintf(s, len, "K100AI0A1B2C3D%02u", d); return 0; }
int rsmi_dev_pci_id_get(uint32_t d, uint64_t *bdf) { CHECK(d); *bdf = buses[d] << 8; return 0; }
int rsmi_dev_memory_total_get(uint32_t d, int type, uint64_t *v) { CHECK(d); *v = 65520ULL << 20; return 0; }
int rsmi_dev_memory_usage_get(uint32_t d, int type, uint64_t *v) { CHECK(d); *v = 120ULL << 20; return 0; }
int rsmi_dev_busy_percent_get(uint32_t d, uint32_t *p) { CHECK(d); *p = 0; return 0; }
int rsmi_dev_temp_metric_get(uint32_t d, uint32_t sensor, int metric, int64_t *t) {
    CHECK(d); if (sensor != 0) return 2; *t = temps[d]; return 0; }
int rsmi_dev_power_ave_get(uint32_t d, uint32_t s, uint64_t *p) { CHECK(d); *p = powers[d]; return 0; }
int rsmi_dev_power_cap_get(uint32_t d, uint32_t s, uint64_t *c) { CHECK(d); *c = caps[d]; return 0; }
int rsmi_dev_power_cap_default_get(uint32_t d, uint64_t *c) { CHECK(d); *c = 800000000ULL; return 0; }
int rsmi_dev_power_cap_range_get(uint32_t d, uint32_t s, uint64_t *max, uint64_t *min) {
    CHECK(d); *max = 800000000ULL; *min = 400000000ULL; return 0; }
int rsmi_dev_power_cap_set(uint32_t d, uint32_t s, uint64_t cap) {
    CHECK(d); if (deny) return 4; if (cap < 400000000ULL || cap > 800000000ULL) return 1;
    caps[d] = cap; return 0; }
int rsmi_dev_ecc_count_get(uint32_t d, uint64_t block, error_count_t *e) {
    CHECK(d); if (block != 0x1 && block != 0x4) return 2;  /* UMC and GFX only */
    e->correctable = 0; e->uncorrectable = 0;
    if (faulty && d == 2 && block == 0x1) { e->correctable = 5; e->uncorrectable = 2; }
    return 0; }
int rsmi_topo_get_link_type(uint32_t a, uint32_t b, uint64_t *hops, uint32_t *type) {
    *hops = 1; *type = 1;  /* PCIE */
#ifdef WITH_XGMI
    if (a / 2 == b / 2) *type = 2;  /* XGMI between 0-1 and 2-3 */
#endif
    return 0; }
"""


@pytest.fixture
def librsmi(tmp_path: Path) -> Path:
    return build_stub_library(tmp_path, "librocm_smi64.so", RSMI_STUB)


def comparable(chip: ChipReading) -> ChipReading:
    """What the CLI path can see of a DCU: no limit range, default or settability."""
    return dataclasses.replace(
        chip,
        power_limit_settable=False,
        power_limit_min_w=None,
        power_limit_max_w=None,
        power_limit_default_w=None,
    )


def test_library_reads_the_k100_ai_node(librsmi: Path) -> None:
    reader = hygon.LibraryReader(str(librsmi))
    snap = reader.read()
    reader.close()
    c0 = snap.devices[0]
    assert snap.source == "librocm_smi64" and snap.islands == ()
    assert (c0.model, c0.uuid, c0.bus_id) == ("K100-AI", "K100AI0A1B2C3D00", "0000:1c:00.0")
    assert (c0.power_w, c0.power_limit_w, c0.temperature_c) == (118.0, 800.0, 49.0)  # µW, milli-°C
    assert (c0.power_limit_min_w, c0.power_limit_max_w, c0.power_limit_default_w) == (400.0, 800.0, 800.0)
    assert c0.power_limit_settable and c0.memory_total_bytes == 65520 * MIB


@pytest.mark.parametrize("faulty", [False, True], ids=["healthy", "umc-uncorrectable"])
def test_library_and_cli_agree_on_the_same_devices(
    librsmi: Path,
    tool_path: Path,
    faulty: bool,
) -> None:
    ctypes.CDLL(str(librsmi)).stub_set_faulty(int(faulty))
    fake_hy_smi(tool_path, healthy_answers(RAS_UMC if faulty else RAS_CLEAN))
    from_library = hygon.LibraryReader(str(librsmi)).read()
    from_cli = hygon.CliReader(timeout_s=10).read()
    assert [comparable(c) for c in from_library.devices] == list(from_cli.devices)
    assert from_library.devices[2].healthy is not faulty


def test_library_sets_the_power_cap_in_microwatts(librsmi: Path) -> None:
    reader = hygon.LibraryReader(str(librsmi))
    reader.set_power_limit(3, 650)
    assert [c.power_limit_w for c in reader.read().devices] == [800.0, 800.0, 800.0, 650.0]
    with pytest.raises(PowerLimitError, match="outside the settable 400-800 W"):
        reader.set_power_limit(0, 900)
    ctypes.CDLL(str(librsmi)).stub_deny_permission(1)
    with pytest.raises(PowerLimitError, match="needs root"):
        reader.set_power_limit(0, 500)


def test_library_islands_are_the_xgmi_links(tmp_path: Path) -> None:
    stub = build_stub_library(tmp_path, "librocm_smi64.so", "#define WITH_XGMI\n" + RSMI_STUB)
    assert hygon.LibraryReader(str(stub)).read().islands == ((0, 1), (2, 3))


def test_library_unavailable_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(LibraryUnavailable):
        hygon.LibraryReader(str(tmp_path / "absent" / "librocm_smi64.so"))
    not_rsmi = build_stub_library(tmp_path, "libother.so", "int something(void) { return 0; }\n")
    with pytest.raises(LibraryUnavailable, match="not ROCm-SMI"):
        hygon.LibraryReader(str(not_rsmi))
