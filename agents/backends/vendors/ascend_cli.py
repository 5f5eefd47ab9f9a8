"""Huawei Ascend through npu-smi: the CLI reader, and the simulated npu-smi that answers it.

A read is one `npu-smi info` (the summary table), one `npu-smi info -m` (logic ids, MCUs), and
per chip `npu-smi info -t health -i N -c C` (health state and error codes) and, once per chip,
`npu-smi info -t board -i N -c C` (VDie id, the uuid). A card whose chips show no power (310P:
`NA`, the chips answer NOT_SUPPORT) gets `npu-smi info -t power -i N -c <MCU>`, the MCU's board
power [V npu-smi source, research §1.2]. Every call has the runner's deadline; a hung npu-smi
is ToolTimeout, which the backend turns into a health event.

`render_tool_output` is the same conversation from the other side: given a snapshot, it answers
every command line CliReader issues in npu-smi 25.5.2's layout, so the simulator can run the
real parser and inject Ascend error codes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agents.backends.base import PowerLimitError
from agents.backends.vendors import units
from agents.backends.vendors.ascend_model import (
    TOOL_DIRS,
    TOOLS,
    VENDOR,
    ChipFacts,
    assemble,
    effective_health,
    health_state,
)
from agents.backends.vendors.ascend_npusmi import (
    MappedChip,
    TableChip,
    first_watts,
    parse_chip_map,
    parse_error_codes,
    parse_key_values,
    parse_table,
    vdie_uuid,
)
from agents.backends.vendors.faults import packaged_fault_table
from agents.backends.vendors.snapshot import MIB, ChipReading, NodeSnapshot, SnapshotError, VendorFault
from agents.backends.vendors.tool import SubprocessRunner, ToolError, ToolRunner, ToolTimeout

log = logging.getLogger("corral.agent.ascend")

NO_POWER_CAP = (
    "Ascend NPUs have no per-chip power cap: neither DCMI nor npu-smi can set one (research §1.3); "
    "power budgets on Ascend nodes are enforced by admission only"
)
_MCU_POWER_KEYS = ("powerdissipation", "npurealtimepower")


class CliReader:
    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = 10.0) -> None:
        self._runner = runner or SubprocessRunner(timeout_s=timeout_s, extra_dirs=TOOL_DIRS)
        # VDie ids never change; asked once per chip (by card, chip and bus id).
        self._uuids: dict[tuple[int, int, str], str] = {}

    def read(self) -> NodeSnapshot:
        table = parse_table(self._run("info"))
        mapped = self._chip_map()
        logic_ids = _logic_ids(table.chips, mapped)
        phy_ids = {(m.npu_id, m.chip_id): m.phy_id for m in mapped}
        facts = [
            self._facts(
                chip, logic_ids[(chip.npu_id, chip.chip_id)], phy_ids.get((chip.npu_id, chip.chip_id))
            )
            for chip in table.chips
        ]
        source = f"npu-smi {table.version}" if table.version else "npu-smi"
        return assemble(facts, source, self._board_power(table.chips, mapped))

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(NO_POWER_CAP)

    def close(self) -> None:
        pass

    def _run(self, *args: str) -> str:
        return self._runner.run([TOOLS[0], *args])

    def _optional(self, *args: str) -> str | None:
        """A query whose failure leaves a reading out; a hang still ends the whole read."""
        try:
            return self._run(*args)
        except ToolTimeout:
            raise
        except ToolError:
            return None

    def _chip_map(self) -> tuple[MappedChip, ...]:
        """`info -m`, or nothing when it fails or reads oddly (the chips keep table order)."""
        text = self._optional("info", "-m")
        if text is None:
            return ()
        try:
            return parse_chip_map(text)
        except SnapshotError as e:
            log.warning("npu-smi info -m unreadable, numbering chips in table order: %s", e)
            return ()

    def _facts(self, chip: TableChip, logic_id: int, mapped_phy_id: int | None) -> ChipFacts:
        health, faults = self._health(chip)
        return ChipFacts(
            npu_id=chip.npu_id,
            chip_id=chip.chip_id,
            logic_id=logic_id,
            chip_name=chip.name,
            health=health,
            faults=faults,
            phy_id=chip.phy_id if chip.phy_id is not None else mapped_phy_id,
            bus_id=chip.bus_id,
            uuid=self._uuid(chip),
            power_w=chip.power_w,
            temperature_c=chip.temperature_c,
            utilization_pct=chip.utilization_pct,
            memory_used_bytes=chip.memory_used_bytes,
            memory_total_bytes=chip.memory_total_bytes,
        )

    def _health(self, chip: TableChip) -> tuple[str, tuple[VendorFault, ...]]:
        """`-t health`: the state and the error codes; the table's Health column if it fails."""
        text = self._optional("info", "-t", "health", "-i", str(chip.npu_id), "-c", str(chip.chip_id))
        if text is None:
            return chip.health, ()
        values = parse_key_values(text)
        state = health_state(values["healthstatus"]) if "healthstatus" in values else chip.health
        codes = parse_error_codes(values.get("errorcode"))
        information = values.get("errorinformation")
        said = "" if units.is_missing(information) else str(information)
        return effective_health(state, codes), tuple(VendorFault(code, said) for code in codes)

    def _uuid(self, chip: TableChip) -> str:
        key = (chip.npu_id, chip.chip_id, chip.bus_id)
        if key not in self._uuids:
            text = self._optional("info", "-t", "board", "-i", str(chip.npu_id), "-c", str(chip.chip_id))
            self._uuids[key] = vdie_uuid(parse_key_values(text).get("vdieid")) if text else ""
        return self._uuids[key]

    def _board_power(
        self, chips: Sequence[TableChip], mapped: Sequence[MappedChip]
    ) -> dict[int, float | None]:
        """The MCU's power for each card whose chips show none and which has an MCU."""
        mcu_of = {m.npu_id: m.chip_id for m in mapped if m.is_mcu}
        shown = {c.npu_id for c in chips if c.power_w is not None}
        power: dict[int, float | None] = {}
        for npu_id in sorted({c.npu_id for c in chips} - shown):
            if npu_id in mcu_of:
                text = self._optional("info", "-t", "power", "-i", str(npu_id), "-c", str(mcu_of[npu_id]))
                power[npu_id] = first_watts(parse_key_values(text), _MCU_POWER_KEYS) if text else None
        return power


def _logic_ids(chips: Sequence[TableChip], mapped: Sequence[MappedChip]) -> dict[tuple[int, int], int]:
    """Logic ids from `info -m`; where it is missing or incomplete, table order, which is the
    order npu-smi enumerates logic ids in (assumed, as parse_summary does)."""
    by_chip = {(m.npu_id, m.chip_id): m.logic_id for m in mapped if not m.is_mcu}
    keys = [(c.npu_id, c.chip_id) for c in chips]
    found = [by_chip.get(k) for k in keys]
    if keys and all(i is not None for i in found) and len(set(found)) == len(found):
        return {k: int(i) for k, i in zip(keys, found, strict=True) if i is not None}
    return {k: i for i, k in enumerate(keys)}


# ---------------------------------------------------------------------------- simulated npu-smi

_RULE = "+" + "-" * 27 + "+" + "-" * 15 + "+" + "-" * 52 + "+"
_DOUBLE_RULE = "+" + "=" * 27 + "+" + "=" * 15 + "+" + "=" * 52 + "+"
_DEFAULT_VERSION = "25.5.2"


@dataclass(frozen=True)
class _SimChip:
    reading: ChipReading
    npu_id: int
    chip_id: int


def render_tool_output(argv: Sequence[str], snapshot: NodeSnapshot) -> str:
    """What npu-smi would print for `argv` on a node in `snapshot`'s state (25.5.2 layout).

    Answers every command line CliReader issues: `info`, `info -m`, `info -t health|board|power
    -i N [-c C]`. Chips keep their ids["npu_id"/"chip_id"] where present; otherwise each board
    (board_id) becomes a card and each other chip a card of its own. 310-family cards print `NA`
    power and report the board's power on an MCU chip, as the hardware does.
    """
    args = list(argv[1:]) if argv and argv[0].endswith(TOOLS[0]) else list(argv)
    chips = _layout(snapshot)
    if args == ["info"]:
        return _render_table(chips, _version(snapshot))
    if args == ["info", "-m"]:
        return _render_map(chips)
    if len(args) >= 5 and args[:2] == ["info", "-t"] and args[3] == "-i":
        chip_id = args[6] if len(args) >= 7 and args[5] == "-c" else "0"
        if args[4].isdigit() and chip_id.isdigit():
            return _render_query(args[2], chips, int(args[4]), int(chip_id))
    raise ToolError(f"npu-smi {' '.join(args)}: the simulated npu-smi has no answer for this command")


def _version(snapshot: NodeSnapshot) -> str:
    words = snapshot.source.split()
    return words[1] if len(words) == 2 and words[0] == TOOLS[0] else _DEFAULT_VERSION


def _layout(snapshot: NodeSnapshot) -> list[_SimChip]:
    taken = {int(d.ids["npu_id"]) for d in snapshot.devices if d.ids.get("npu_id", "").isdigit()}
    fresh = (n for n in range(10_000) if n not in taken)
    card_of_board: dict[str, int] = {}
    chips_on: dict[int, int] = {}
    out = []
    for d in sorted(snapshot.devices, key=lambda d: d.index):
        npu_text, chip_text = d.ids.get("npu_id", ""), d.ids.get("chip_id", "")
        if npu_text.isdigit():
            npu_id = int(npu_text)
        elif d.board_id:
            npu_id = card_of_board.setdefault(d.board_id, next(fresh))
        else:
            npu_id = next(fresh)
        chip_id = int(chip_text) if chip_text.isdigit() else chips_on.get(npu_id, 0)
        chips_on[npu_id] = max(chips_on.get(npu_id, 0), chip_id + 1)
        out.append(_SimChip(d, npu_id, chip_id))
    return sorted(out, key=lambda c: (c.npu_id, c.chip_id))


def _board(chips: Sequence[_SimChip], npu_id: int) -> list[_SimChip]:
    return [c for c in chips if c.npu_id == npu_id]


def _has_mcu(board: Sequence[_SimChip]) -> bool:
    return any(c.reading.model.startswith("Ascend 310") for c in board)


def _board_watts(board: Sequence[_SimChip]) -> float | None:
    readings = [c.reading.power_w for c in board if c.reading.power_w is not None]
    return sum(readings) if readings else None


def _name(model: str) -> str:
    core = model.removeprefix("Ascend").strip()
    return "Ascend910" if core == "910C" else core or "Ascend"


def _state(reading: ChipReading) -> str:
    """A state CliReader reads back as the same health: npu-smi shows OK for a chip without
    codes (see effective_health), so an unhealthy chip without codes is shown UNKNOWN."""
    if reading.healthy:
        return "Warning" if reading.faults else "OK"
    return "Critical" if reading.faults else "UNKNOWN"


def _fmt(value: float | None, spec: str = "g") -> str:
    return "NA" if value is None else format(value, spec)


def _pair(used: int | None, total: int | None) -> str:
    if total is None:
        return "NA"
    return f"{round((used or 0) / MIB):<5}/ {round(total / MIB)}"


def _line(first: str, middle: str, last: str) -> str:
    return f"| {first:<26}| {middle:<14}| {last:<51}|"


def _render_table(chips: Sequence[_SimChip], version: str) -> str:
    banner = f"npu-smi {version}".ljust(33) + f"Version: {version}"
    lines = [
        "+" + "-" * 96 + "+",
        f"| {banner:<95}|",
        _RULE,
        _line("NPU   Name", "Health", "Power(W)    Temp(C)           Hugepages-Usage(page)"),
        _line("Chip", "Bus-Id", "AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)"),
        _DOUBLE_RULE,
    ]
    for chip in chips:
        lines += [*_chip_lines(chip, _board(chips, chip.npu_id)), _DOUBLE_RULE]
    lines += [
        _RULE,
        "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |",
        _DOUBLE_RULE,
    ]
    for npu_id in sorted({c.npu_id for c in chips}):
        lines += [f"| {f'No running processes found in NPU {npu_id}':<95}|", _DOUBLE_RULE]
    return "\n".join(lines) + "\n"


def _chip_lines(chip: _SimChip, board: Sequence[_SimChip]) -> list[str]:
    r = chip.reading
    first_on_board = chip is board[0]
    power = "NA" if _has_mcu(board) else _fmt(_board_watts(board), ".1f") if first_on_board else "-"
    ddr, hbm = _pair(r.memory_used_bytes, r.memory_total_bytes), "0    / 0"
    if not _has_mcu(board):
        ddr, hbm = ("0    / 0", ddr) if r.memory_total_bytes is not None else ("NA", "NA")
    top = f"{power:<12}{_fmt(r.temperature_c):<18}{'0    / 0':<21}"
    bottom = f"{_fmt(r.utilization_pct):<12}{ddr:<18}{hbm:<21}"
    return [
        _line(f"{chip.npu_id:<6}{_name(r.model)}", _state(r), top),
        _line(str(chip.chip_id), r.bus_id or "NA", bottom),
    ]


def _render_map(chips: Sequence[_SimChip]) -> str:
    with_phy = any("phy_id" in c.reading.ids for c in chips)
    header = ["NPU ID", "Chip ID", "Chip Logic ID", *(["Chip Phy-ID"] if with_phy else []), "Chip Name"]
    rows = [header]
    for npu_id in sorted({c.npu_id for c in chips}):
        board = _board(chips, npu_id)
        for c in board:
            phy = [c.reading.ids.get("phy_id", "-")] if with_phy else []
            rows.append([str(npu_id), str(c.chip_id), str(c.reading.index), *phy, c.reading.model])
        if _has_mcu(board):
            mcu = str(max(c.chip_id for c in board) + 1)
            rows.append([str(npu_id), mcu, "-", *(["-"] if with_phy else []), "Mcu"])
    return "".join("\t" + "".join(f"{cell:<31}" for cell in row).rstrip() + "\n" for row in rows)


def _render_query(kind: str, chips: Sequence[_SimChip], npu_id: int, chip_id: int) -> str:
    board = _board(chips, npu_id)
    chip = next((c for c in board if c.chip_id == chip_id), None)
    if kind == "power" and board and _has_mcu(board) and chip is None:
        return _block({"Power Dissipation(W)": _fmt(_board_watts(board), ".1f")})
    if chip is None:
        raise ToolError(f"npu-smi info -t {kind} -i {npu_id} -c {chip_id}: no such device")
    r = chip.reading
    if kind == "health":
        return _block(_health_block(r))
    if kind == "board":
        vdie = " ".join(r.uuid.split("-")) if r.uuid else "NA"
        return _block(
            {
                "NPU ID": str(npu_id),
                "Chip ID": str(chip_id),
                "Chip Type": "Ascend",
                "Chip Name": _name(r.model),
                "VDie ID": vdie,
                "PCIe Bus Info": r.bus_id or "NA",
            }
        )
    if kind == "power":
        shown = "NA" if _has_mcu(board) else _fmt(r.power_w, ".1f")
        return _block({"NPU Real-time Power(W)": shown})
    raise ToolError(f"npu-smi info -t {kind}: the simulated npu-smi has no answer for this type")


def _health_block(reading: ChipReading) -> dict[str, str]:
    table = packaged_fault_table(VENDOR)
    codes = [table.format_code(f.code) for f in reading.faults]
    said = list(dict.fromkeys(f.text for f in reading.faults if f.text))
    return {
        "Health Status": _state(reading),
        "Error Code": " ".join(codes) or "NA",
        "Error Information": "; ".join(said) or "NA",
    }


def _block(values: Mapping[str, str]) -> str:
    return "".join(f"\t{key:<31}: {value}\n" for key, value in values.items())
