"""Huawei Ascend: npu-smi's summary table, the CLI reader through a real subprocess, the fault
table, and the simulated npu-smi read back by the real reader."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.vendors import ascend
from agents.backends.vendors.faults import fault_table
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, NotASummaryTable, SnapshotError
from agents.backends.vendors.tool import SubprocessRunner, ToolError, ToolTimeout
from tests.agents.vendors.helpers import fixture, install_fake_tool

TABLE_910B2C = "npu-smi-25.5.2-910b2c.txt"
TABLE_310P = "npu-smi-25.5.1-310p3-duo.txt"
TABLE_A3 = "npu-smi-24.1-a3-910c.txt"


def table(name: str) -> NodeSnapshot:
    return ascend.parse_summary(fixture("ascend", name))


def health(npu: int, chip: int = 0) -> str:
    return f"info -t health -i {npu} -c {chip}"


def board(npu: int, chip: int = 0) -> str:
    return f"info -t board -i {npu} -c {chip}"


# ---------------------------------------------------------------------------- the summary table


def test_910b2c_25_5_2_every_chip_with_units_normalised() -> None:
    snap = table(TABLE_910B2C)
    assert snap.vendor == "ascend" and snap.source == "npu-smi 25.5.2" and snap.interconnect == "hccs"
    assert [d.index for d in snap.devices] == [0, 1, 2]  # logic ids in table order
    assert [d.ids["npu_id"] for d in snap.devices] == ["0", "1", "15"]
    first = snap.devices[0]
    assert first.model == "Ascend 910B2C"
    assert first.power_w == 93.9 and first.temperature_c == 41.0 and first.utilization_pct == 0.0
    assert first.memory_total_bytes == 65536 * MIB and first.memory_used_bytes == 3410 * MIB
    assert first.bus_id == "0000:66:00.0" and first.board_id == ""
    assert first.power_limit_w is None and first.power_limit_settable is False
    assert all(d.healthy for d in snap.devices)


def test_summary_json_has_the_inventory_fields() -> None:
    row = table(TABLE_910B2C).devices[2].summary()
    assert row["vendor"] == "ascend" and row["model"] == "Ascend 910B2C" and row["index"] == 2
    assert row["memory_total_mib"] == 65536 and row["power_w"] == 96.0 and row["power_limit_w"] is None
    assert row["temperature_c"] == 41.0 and row["healthy"] is True


def test_five_digit_usage_without_a_space() -> None:
    snap = table("npu-smi-25.0.rc1.1-910b3-five-digit.txt")
    assert snap.source == "npu-smi 25.0.rc1.1"
    assert snap.devices[0].memory_used_bytes == 61258 * MIB
    assert snap.devices[0].memory_total_bytes == 65536 * MIB
    assert snap.devices[0].power_w == 372.4
    assert len(snap.devices) == 2  # the process table after the chips is not read as chips


def test_910b4_memory_and_one_hccs_island_of_eight() -> None:
    snap = table("npu-smi-23.0-910b4-8x.txt")
    assert {d.model for d in snap.devices} == {"Ascend 910B4"}
    assert {d.memory_total_bytes for d in snap.devices} == {32768 * MIB}
    assert snap.devices[0].memory_used_bytes == 2849 * MIB
    assert snap.islands == ((0, 1, 2, 3, 4, 5, 6, 7),)


def test_22_0_4_1_takes_hbm_over_ddr_and_keeps_the_warning_schedulable() -> None:
    snap = table("npu-smi-22.0.4.1-910b.txt")
    assert snap.source == "npu-smi 22.0.4.1"
    assert {d.memory_total_bytes for d in snap.devices} == {32768 * MIB}  # HBM, not DDR 15039
    assert snap.devices[2].ids["npu_id"] == "4" and snap.devices[2].healthy  # Warning stays up
    assert snap.islands == ((0, 1), (2, 3))  # A1 naming: 4-NPU rings by NPU id


def test_310p3_duo_two_chips_one_board_power_unreadable() -> None:
    snap = table(TABLE_310P)
    assert [d.index for d in snap.devices] == [0, 1]
    assert {d.board_id for d in snap.devices} == {"npu1"}
    assert [d.power_w for d in snap.devices] == [None, None]  # `NA`; the MCU has it
    assert [d.memory_total_bytes for d in snap.devices] == [44278 * MIB, 43693 * MIB]  # DDR
    assert [d.temperature_c for d in snap.devices] == [49.0, 45.0]
    assert [d.ids["phy_id"] for d in snap.devices] == ["0", "1"]  # the `Device` column
    assert snap.islands == ()  # PCIe only


def test_a3_dies_pair_on_a_board_with_power_on_die_0() -> None:
    snap = table(TABLE_A3)
    assert [d.model for d in snap.devices] == ["Ascend 910C"] * 4
    assert [d.board_id for d in snap.devices] == ["npu0", "npu0", "npu1", "npu1"]
    assert [d.power_w for d in snap.devices] == [181.4, None, 176.0, None]  # `-` on die 1
    assert [d.ids["phy_id"] for d in snap.devices] == ["0", "1", "2", "3"]
    assert [d.healthy for d in snap.devices] == [True, True, True, False]  # Critical
    assert snap.islands == ((0, 1, 2, 3),)


def test_a3_card_line_printed_once_for_both_dies() -> None:
    lines = fixture("ascend", TABLE_A3).splitlines()
    once = [line for i, line in enumerate(lines) if i not in (8, 9)]  # drop die 1's card line
    snap = ascend.parse_summary("\n".join(once))
    assert [d.board_id for d in snap.devices] == ["npu0", "npu0", "npu1", "npu1"]
    assert snap.devices[1].model == "Ascend 910C" and snap.devices[1].power_w is None


def test_utf8_degree_sign() -> None:
    snap = table("npu-smi-25.5.2-910b2c-celsius-sign.txt")
    assert [d.temperature_c for d in snap.devices] == [41.0, 43.0, 41.0]
    assert snap.devices[1].power_w == 96.0


@pytest.mark.parametrize("missing", ["N/A", "NA", "-"])
def test_missing_power_spellings(missing: str) -> None:
    text = fixture("ascend", TABLE_910B2C).replace("| 93.9        41", f"| {missing:<12}41")
    snap = ascend.parse_summary(text)
    assert snap.devices[0].power_w is None and snap.devices[0].temperature_c == 41.0
    assert snap.devices[1].power_w == 96.0


@pytest.mark.parametrize(("state", "healthy"), [("Warning", True), ("Alarm", False), ("Critical", False)])
def test_health_column(state: str, healthy: bool) -> None:
    text = fixture("ascend", TABLE_910B2C).replace(
        "| OK            | 96.0        43", f"| {state:<14}| 96.0        43"
    )
    assert table_from(text).devices[1].healthy is healthy


def table_from(text: str) -> NodeSnapshot:
    return ascend.parse_summary(text)


@pytest.mark.parametrize(
    "name", ["other-vendor-nvidia-smi.txt", "garbage.txt", "npu-smi-info-m-910b2c.txt", "health-ok.txt"]
)
def test_not_a_summary_table(name: str) -> None:
    with pytest.raises(NotASummaryTable, match=r"npu-smi info.*(first line is|empty)"):
        ascend.parse_summary(fixture("ascend", name))


def test_empty_text_is_not_a_summary_table() -> None:
    with pytest.raises(NotASummaryTable, match="empty"):
        ascend.parse_summary("")


def test_unreadable_value_names_the_field() -> None:
    text = fixture("ascend", TABLE_910B2C).replace("93.9", "9x.9")
    with pytest.raises(SnapshotError, match=r"Power\(W\)"):
        ascend.parse_summary(text)


# ---------------------------------------------------------------------------- the fault table


def test_fault_table_maps_codes_to_device_plugin_classes() -> None:
    faults = fault_table("ascend")
    assert faults is not None and faults.code_format == "hex"
    uce = faults.lookup(0x80E01801)
    assert uce.class_name == "RestartNPU" and uce.critical and "reset" in uce.fault_class.action
    assert faults.lookup(0x80E18402).class_name == "SeparateNPU"
    link = faults.lookup(0x81078603)
    assert "link down" in link.name and link.fault_class.component == "network"
    assert link.fault_class.early_warning and not link.critical
    assert faults.lookup(0x80E18401).class_name == "NotHandleFault"
    unknown = faults.lookup(0x12345678)
    assert not unknown.listed and unknown.fault_class.early_warning
    assert {"NotHandleFault", "RestartRequest", "RestartBusiness", "FreeRestartNPU", "RestartNPU"} <= set(
        faults.classes
    )
    assert {"SeparateNPU", "PreSeparateNPU", "ManuallySeparateNPU"} <= set(faults.classes)
    assert len(faults.codes) > 300


# ---------------------------------------------------------------------------- CLI, real subprocess


def answers_910b2c(**extra: str) -> dict[str, str]:
    answers = {
        "info": fixture("ascend", TABLE_910B2C),
        "info -m": fixture("ascend", "npu-smi-info-m-910b2c.txt"),
        health(0): fixture("ascend", "health-ok.txt"),
        health(1): fixture("ascend", "health-critical-80e01801.txt"),
        health(15): fixture("ascend", "health-warning-81078603.txt"),
        board(0): fixture("ascend", "board-910b2c-npu0.txt"),
    }
    answers.update(extra)
    return answers


def cli_read(bin_dir: Path, answers: Mapping[str, str], timeout_s: float = 10.0) -> NodeSnapshot:
    install_fake_tool(bin_dir, "npu-smi", answers)
    return ascend.CliReader(timeout_s=timeout_s).read()


def test_cli_reads_codes_and_maps_them_to_action_classes(tool_path: Path) -> None:
    snap = cli_read(tool_path, answers_910b2c())
    ok, uce, link = snap.devices
    assert ok.healthy and ok.faults == ()
    assert ok.uuid == "2A9C1A04-20B03816-8D100228-14014010-40040505"  # VDie from `-t board`
    assert uce.healthy is False and [f.code for f in uce.faults] == [0x80E01801]
    assert "multi-bit ECC" in uce.faults[0].text
    faults = fault_table("ascend")
    assert faults is not None and faults.lookup(uce.faults[0].code).class_name == "RestartNPU"
    assert link.healthy and [f.code for f in link.faults] == [0x81078603]  # Warning: still up
    assert uce.uuid == "" and link.uuid == ""  # `-t board` failed for them: no uuid, no error


def test_cli_logic_ids_come_from_info_m(tool_path: Path) -> None:
    chip_map = """NPU ID    Chip ID    Chip Logic ID    Chip Name
0         0          0                Ascend 910B2C
1         0          2                Ascend 910B2C
15        0          1                Ascend 910B2C
"""
    snap = cli_read(tool_path, answers_910b2c(**{"info -m": chip_map}))
    assert {d.ids["npu_id"]: d.index for d in snap.devices} == {"0": 0, "1": 2, "15": 1}
    assert snap.islands == ((0, 2),)  # NPU 0 and 1 share a ring, whatever their logic ids


def test_cli_falls_back_to_table_order_without_info_m(tool_path: Path) -> None:
    answers = answers_910b2c()
    del answers["info -m"]
    snap = cli_read(tool_path, answers)
    assert [d.index for d in snap.devices] == [0, 1, 2]


def test_cli_unreadable_info_m_keeps_table_order(tool_path: Path) -> None:
    snap = cli_read(tool_path, answers_910b2c(**{"info -m": "Usage: npu-smi info -m\n"}))
    assert [d.index for d in snap.devices] == [0, 1, 2]


def test_info_m_with_tabs_and_a_phy_id_column() -> None:
    from agents.backends.vendors.ascend_npusmi import parse_chip_map

    mapped = parse_chip_map(
        "NPU ID\tChip ID\tChip Logic ID\tChip Phy-ID\tChip Name\n3\t1\t7\t9\tAscend 910\n"
    )
    assert [(m.npu_id, m.chip_id, m.logic_id, m.phy_id, m.name) for m in mapped] == [
        (3, 1, 7, 9, "Ascend 910")
    ]
    pro = parse_chip_map(fixture("ascend", "npu-smi-info-m-310p3-pro.txt"))
    assert [(m.logic_id, m.is_mcu) for m in pro] == [(0, False), (None, True)]


def test_cli_several_codes_and_alarm(tool_path: Path) -> None:
    snap = cli_read(
        tool_path, answers_910b2c(**{health(0): fixture("ascend", "health-alarm-multiple-codes.txt")})
    )
    chip = snap.devices[0]
    assert [f.code for f in chip.faults] == [0x80E18402, 0x80E18401]
    assert chip.healthy is False and "105℃" in chip.faults[0].text  # UTF-8 through the pipe


def test_cli_310p_duo_board_power_from_the_mcu(tool_path: Path) -> None:
    answers = {
        "info": fixture("ascend", TABLE_310P),
        "info -m": fixture("ascend", "npu-smi-info-m-310p3-duo.txt"),
        health(1, 0): fixture("ascend", "health-ok.txt"),
        health(1, 1): fixture("ascend", "health-ok.txt"),
        "info -t power -i 1 -c 2": fixture("ascend", "power-mcu-310p3-duo.txt"),
    }
    snap = cli_read(tool_path, answers)
    assert [d.power_w for d in snap.devices] == [63.2, None]  # the board's power, once
    assert [d.board_id for d in snap.devices] == ["npu1", "npu1"]
    assert [d.index for d in snap.devices] == [0, 1]  # the MCU (logic id `-`) is not a device


def test_cli_a3_dies(tool_path: Path) -> None:
    answers = {
        "info": fixture("ascend", TABLE_A3),
        "info -m": fixture("ascend", "npu-smi-info-m-a3-910c.txt"),
        health(1, 1): fixture("ascend", "health-critical-80e01801.txt"),
        "*": fixture("ascend", "health-ok.txt"),
    }
    snap = cli_read(tool_path, answers)
    assert [d.healthy for d in snap.devices] == [True, True, True, False]
    assert snap.devices[3].faults[0].code == 0x80E01801
    assert [d.power_w for d in snap.devices] == [181.4, None, 176.0, None]


def test_cli_hung_tool_times_out_quickly(tool_path: Path) -> None:
    install_fake_tool(tool_path, "npu-smi", {}, hang=True)
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        ascend.CliReader(timeout_s=0.5).read()
    assert time.monotonic() - started < 5


def test_cli_garbage_is_not_a_summary_table(tool_path: Path) -> None:
    with pytest.raises(NotASummaryTable):
        cli_read(tool_path, {"info": fixture("ascend", "garbage.txt")})


def test_cli_missing_tool_is_a_tool_error(tool_path: Path) -> None:
    with pytest.raises(ToolError, match="npu-smi"):
        ascend.CliReader(SubprocessRunner(timeout_s=1.0)).read()


def test_power_is_not_settable() -> None:
    reader = ascend.CliReader(runner=FakeRunner({}))
    with pytest.raises(PowerLimitError, match="no per-chip power cap"):
        reader.set_power_limit(0, 250.0)


def test_module_contract() -> None:
    assert ascend.VENDOR == "ascend" and ascend.TOOLS == ("npu-smi",)
    assert ascend.VISIBILITY_ENV == "ASCEND_RT_VISIBLE_DEVICES" and ascend.INTERCONNECT == "hccs"
    assert 0x19E5 in ascend.PCI_VENDOR_IDS and ascend.LIBRARY_NAMES == ("libdcmi.so",)


# ---------------------------------------------------------------------------- simulated npu-smi


class FakeRunner:
    """A runner answering from recorded outputs, or from a snapshot through render_tool_output."""

    def __init__(self, answers: Mapping[str, str], snapshot: NodeSnapshot | None = None) -> None:
        self.answers, self.snapshot = answers, snapshot
        self.calls: list[str] = []

    def run(self, argv: Sequence[str]) -> str:
        self.calls.append(" ".join(argv[1:]))
        if self.snapshot is not None:
            return ascend.render_tool_output(argv, self.snapshot)
        key = " ".join(argv[1:])
        if key not in self.answers:
            raise ToolError(f"no answer for {key}")
        return self.answers[key]


def round_trip(snapshot: NodeSnapshot) -> NodeSnapshot:
    return ascend.CliReader(FakeRunner({}, snapshot)).read()


def test_round_trip_with_a_fault_reads_back_the_same_snapshot() -> None:
    original = ascend.CliReader(FakeRunner(answers_910b2c())).read()
    assert original.devices[1].faults[0].code == 0x80E01801 and not original.devices[1].healthy
    runner = FakeRunner({}, original)
    again = ascend.CliReader(runner).read()
    assert again == original
    assert set(runner.calls) >= {"info", "info -m", health(1), board(15)}
    shown = ascend.render_tool_output(["npu-smi", "info", "-t", "health", "-i", "1", "-c", "0"], original)
    assert "Critical" in shown and "80E01801" in shown


@pytest.mark.parametrize("name", [TABLE_310P, TABLE_A3, "npu-smi-23.0-910b4-8x.txt"])
def test_round_trip_of_every_layout(name: str) -> None:
    original = table(name)
    assert round_trip(original) == original


def test_round_trip_310p_board_power_goes_through_the_mcu() -> None:
    original = ascend.CliReader(
        FakeRunner(
            {
                "info": fixture("ascend", TABLE_310P),
                "info -m": fixture("ascend", "npu-smi-info-m-310p3-duo.txt"),
                "info -t power -i 1 -c 2": fixture("ascend", "power-mcu-310p3-duo.txt"),
            }
        )
    ).read()
    runner = FakeRunner({}, original)
    assert ascend.CliReader(runner).read() == original
    assert "info -t power -i 1 -c 2" in runner.calls
    assert "| NA " in ascend.render_tool_output(["npu-smi", "info"], original)


def test_round_trip_of_a_snapshot_without_vendor_ids() -> None:
    """The simulator's snapshots carry no npu/chip ids: each chip becomes a card of its own."""
    bare = NodeSnapshot(
        vendor="ascend",
        source="simulated",
        devices=tuple(
            ChipReading(
                vendor="ascend",
                model="Ascend 910B",
                index=i,
                memory_total_bytes=65536 * MIB,
                memory_used_bytes=0,
                power_w=95.0,
                temperature_c=41.0,
                utilization_pct=0.0,
            )
            for i in range(8)
        ),
    )
    back = round_trip(bare)
    assert [d.index for d in back.devices] == list(range(8))
    assert [d.ids["npu_id"] for d in back.devices] == [str(i) for i in range(8)]
    assert {(d.model, d.power_w, d.memory_total_bytes, d.healthy) for d in back.devices} == {
        ("Ascend 910B", 95.0, 65536 * MIB, True)
    }


def test_simulated_tool_refuses_unknown_commands() -> None:
    with pytest.raises(ToolError, match="no answer"):
        ascend.render_tool_output(["npu-smi", "set", "-t", "reset", "-i", "0"], table(TABLE_910B2C))
