"""Hygon DCUs (Z100, K100, K100-AI; the newer "HCU" naming): hy-smi / rocm-smi, and ROCm-SMI.

Research §3 (../shared/research/domestic_devices.md). The CLI reader prefers `--json` (every
value a string, the unit in the key) and falls back to the concise table; the library reader
is ctypes over librocm_smi64.so. Health and islands are decided in hygon_common.py for both.
The CLI path cannot set a power cap (hy-smi's flag is not documented, research §3.3 [U]); the
library path sets it through rsmi_dev_power_cap_set in microwatts [V].
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from agents.backends.base import PowerLimitError
from agents.backends.vendors.hygon_cli import (
    apply_ecc,
    chip_from_row,
    load_cards,
    parse_json,
    parse_summary,
    read_table,
)
from agents.backends.vendors.hygon_common import (
    INTERCONNECT,
    LIBRARY_DIRS,
    LIBRARY_NAMES,
    VENDOR,
    RawChip,
    assemble,
)
from agents.backends.vendors.hygon_lib import LibraryReader
from agents.backends.vendors.snapshot import NodeSnapshot, SnapshotError
from agents.backends.vendors.tool import (
    DEFAULT_TIMEOUT_S,
    SubprocessRunner,
    ToolError,
    ToolRunner,
    ToolTimeout,
)

log = logging.getLogger("corral.agent.hygon")

TOOLS = ("hy-smi", "rocm-smi")  # hy-smi in /opt/hyhal/bin [S]; DTK also ships rocm-smi [V-out]
TOOL_DIRS = ("/opt/hyhal/bin", "/opt/dtk/bin", "/opt/rocm/bin")
VISIBILITY_ENV = "HIP_VISIBLE_DEVICES"  # the HIP runtime [V research §3.5]; takes hy-smi's DCU index [U]
# 0x1d94: Hygon (Chengdu Haiguang IC Design); GPUStack's Hygon detector looks for PCI devices of
# vendor "0x1d94" [V: gpustack-runtime 0.2.6 detector/hygon.py; not in the research file].
PCI_VENDOR_IDS = (0x1D94,)

# What one --json call asks for (research §3.2 [S: key names from two independent parsers]).
JSON_QUERY = (
    "--showproductname", "--showmeminfo", "vram", "--showuse", "--showtemp", "--showpower",
    "--showmaxpower", "--showserial", "--showbus", "--json",
)  # fmt: skip
# "Not every release accepts --showpower" [S]: the same query without it.
JSON_QUERY_NO_POWER = tuple(a for a in JSON_QUERY if a != "--showpower")
ECC_QUERY = ("--showrasinfo", "all", "--json")  # rocm-smi's RAS counters [U on hy-smi]

__all__ = [
    "INTERCONNECT", "LIBRARY_DIRS", "LIBRARY_NAMES", "PCI_VENDOR_IDS", "TOOLS", "TOOL_DIRS", "VENDOR",
    "VISIBILITY_ENV", "CliReader", "LibraryReader", "parse_summary",
]  # fmt: skip


class CliReader:
    """hy-smi (or DTK rocm-smi) as a subprocess.

    read(): `--json` with the JSON_QUERY flags (retried without --showpower when refused); the
    concise table when JSON is refused or unreadable, and to fill a power or cap JSON left out;
    `--showrasinfo all --json` for ECC counters, best effort. A tool that hangs fails the read
    (ToolTimeout) rather than being asked again.
    """

    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.runner: ToolRunner = runner or SubprocessRunner(timeout_s=timeout_s, extra_dirs=TOOL_DIRS)
        # hy-smi where installed, else DTK's rocm-smi; a runner that cannot look (the simulator,
        # tests) is asked for hy-smi.
        finder = self.runner if isinstance(self.runner, SubprocessRunner) else None
        self.tool = next((t for t in TOOLS if finder is not None and finder.which(t)), TOOLS[0])

    def read(self) -> NodeSnapshot:
        chips = self._from_json()
        if chips is None:
            id_column, rows = read_table(self.runner.run([self.tool]))
            return assemble(_unique(chip_from_row(id_column, r) for r in rows), f"{self.tool} table")
        if any(c.power_w is None or c.power_limit_w is None for c in chips):
            self._fill_from_table(chips)
        self._add_ecc(chips)
        return assemble(chips, f"{self.tool} --json")

    def _best_effort(self, argv: list[str]) -> str | None:
        try:
            return self.runner.run(argv)
        except ToolTimeout:
            raise
        except ToolError as e:
            log.info("%s: %s", " ".join(argv), e)
            return None

    def _from_json(self) -> list[RawChip] | None:
        for query in (JSON_QUERY, JSON_QUERY_NO_POWER):
            text = self._best_effort([self.tool, *query])
            if text is None:
                continue
            try:
                return parse_json(text)
            except SnapshotError as e:
                log.warning("%s --json gave no cards (%s); reading the table instead", self.tool, e)
                return None
        return None

    def _fill_from_table(self, chips: list[RawChip]) -> None:
        text = self._best_effort([self.tool])
        if text is None:
            return
        id_column, rows = read_table(text)
        table = {c.index: c for c in (chip_from_row(id_column, r) for r in rows)}
        for chip in chips:
            row = table.get(chip.index)
            if row is not None:
                chip.power_w = chip.power_w if chip.power_w is not None else row.power_w
                chip.power_limit_w = (
                    chip.power_limit_w if chip.power_limit_w is not None else row.power_limit_w
                )

    def _add_ecc(self, chips: list[RawChip]) -> None:
        text = self._best_effort([self.tool, *ECC_QUERY])
        if text is None:
            return
        try:
            cards = load_cards(text)
        except SnapshotError as e:
            log.info("%s --showrasinfo: %s", self.tool, e)
            return
        for chip in chips:
            if chip.index in cards:
                apply_ecc(chip, cards[chip.index])

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(
            f"DCU {index}: hy-smi has no documented flag to set a power cap; the ROCm-SMI library "
            "reader sets it (rsmi_dev_power_cap_set)"
        )

    def close(self) -> None:
        pass


def _unique(chips: Iterable[RawChip]) -> list[RawChip]:
    seen: dict[int, RawChip] = {}
    for chip in chips:
        seen.setdefault(chip.index, chip)
    return list(seen.values())
