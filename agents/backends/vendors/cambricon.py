"""Cambricon MLUs (MLU370-X4/X8, MLU590): the cnmon CLI reader, the CNDev library reader.

Research §2 (../shared/research/domestic_devices.md). The readers share the board, health and
island rules in cambricon_common.py; the cnmon text lives in cambricon_cli.py, the ctypes
binding in cambricon_lib.py. The CLI path cannot set a power limit (no cnmon flag is known,
research §2.3 [U]); the library path sets it with cndevSetPowerManagementLimitation, in whole
watts [V].
"""

from __future__ import annotations

import logging

from agents.backends.base import PowerLimitError
from agents.backends.vendors.cambricon_cli import (
    TOOL,
    merge,
    parse_detail,
    parse_summary,
    raw_chip,
    read_table,
    render_tool_output,
)
from agents.backends.vendors.cambricon_common import (
    INTERCONNECT,
    LIBRARY_DIRS,
    LIBRARY_NAMES,
    VENDOR,
    RawChip,
    assemble,
    documented_islands,
    fault,
)
from agents.backends.vendors.cambricon_lib import LibraryReader
from agents.backends.vendors.snapshot import NodeSnapshot, SnapshotError
from agents.backends.vendors.tool import (
    DEFAULT_TIMEOUT_S,
    SubprocessRunner,
    ToolError,
    ToolRunner,
    ToolTimeout,
)

log = logging.getLogger("corral.agent.cambricon")

TOOLS = (TOOL,)
TOOL_DIRS = ("/usr/local/neuware/bin", "/usr/bin")  # cnmon ships in both [V research §2.1]
VISIBILITY_ENV = "MLU_VISIBLE_DEVICES"  # CNRT / torch_mlu [S research §2.5]; takes cnmon card ids
# 0xcabc: Cambricon's PCI vendor id. GPUStack's Cambricon detector looks for vendor "0xcabc"
# [V: gpustack-runtime 0.2.6 detector/cambricon.py]; a published lspci capture shows an MLU220 as
# "Device cabc:0220" [S]. Not in the research file.
PCI_VENDOR_IDS = (0xCABC,)

__all__ = [
    "INTERCONNECT", "LIBRARY_DIRS", "LIBRARY_NAMES", "PCI_VENDOR_IDS", "TOOLS", "TOOL_DIRS", "VENDOR",
    "VISIBILITY_ENV", "CliReader", "LibraryReader", "documented_islands", "fault", "parse_summary",
    "render_tool_output",
]  # fmt: skip


class CliReader:
    """cnmon as a subprocess: the summary table for telemetry, `cnmon info -c N` per card for
    ids, serials (board grouping), health, XIDs, ECC and the power-limit range. A detail call
    that fails or prints what cannot be read leaves that card with what the summary said; one
    that hangs fails the whole read (ToolTimeout)."""

    vendor = VENDOR
    via = "cli"

    def __init__(self, runner: ToolRunner | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.runner = runner or SubprocessRunner(timeout_s=timeout_s, extra_dirs=TOOL_DIRS)
        self.tool = TOOL

    def read(self) -> NodeSnapshot:
        table = read_table(self.runner.run([self.tool]))
        chips: dict[int, RawChip] = {}
        for values in table.rows:
            chip = raw_chip(values)
            chips.setdefault(chip.index, chip)
        for index, chip in chips.items():
            try:
                detail = parse_detail(self.runner.run([self.tool, "info", "-c", str(index)]))
            except ToolTimeout:
                raise
            except (ToolError, SnapshotError) as e:
                log.warning("cnmon info -c %d unusable, using the summary row only: %s", index, e)
                continue
            merge(chip, detail)
        return assemble(list(chips.values()), f"{TOOL} {table.version}")

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError(
            f"MLU {index}: cnmon has no known flag to set a power limit; the CNDev library reader "
            "sets it (cndevSetPowerManagementLimitation)"
        )

    def close(self) -> None:
        pass
