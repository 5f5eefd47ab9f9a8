"""Which vendor module serves which name, how to open it, and which vendors this node has.

Detection looks for each vendor's PCI devices (vendor id in sysfs, accelerator classes only) and
then for a way in: the vendor library first (richer and faster), else the vendor tool. A name
on PATH alone is not enough where two vendors share it: Kunlunxin's `xpu-smi` is also Intel's,
so `xpu-smi` counts only beside a Kunlunxin PCI device.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Literal

from agents.backends.base import BackendError
from agents.backends.vendors import VENDOR_NAMES
from agents.backends.vendors.library import LibraryUnavailable
from agents.backends.vendors.snapshot import VendorReader
from agents.backends.vendors.tool import SubprocessRunner, ToolRunner

log = logging.getLogger("corral.agent.detect")

Via = Literal["auto", "library", "cli"]
VIAS: tuple[str, ...] = ("auto", "library", "cli")
# The vendors with a module here (NVIDIA is served by NVML in agents/backends/nvml.py).
DOMESTIC: tuple[str, ...] = tuple(v for v in VENDOR_NAMES if v != "nvidia")
PCI_ROOT = Path("/sys/bus/pci/devices")
# PCI base classes of accelerators: display controllers (0x03) and processing accelerators (0x12).
_ACCELERATOR_CLASSES = (0x03, 0x12)
# Tool names that another vendor also uses; they count only beside the vendor's PCI devices.
_AMBIGUOUS_TOOLS = frozenset({"xpu-smi", "rocm-smi"})


class UnknownVendor(BackendError):
    pass


def vendor_module(vendor: str) -> ModuleType:
    if vendor not in DOMESTIC:
        raise UnknownVendor(f"unknown vendor {vendor!r}; known: {', '.join(VENDOR_NAMES)}")
    return importlib.import_module(f"agents.backends.vendors.{vendor}")


def pci_vendor_ids(root: Path = PCI_ROOT) -> set[int]:
    """Vendor ids of this machine's accelerator-class PCI functions; empty without sysfs."""
    found: set[int] = set()
    for dev in root.glob("*") if root.is_dir() else ():
        try:
            pci_class = int((dev / "class").read_text().strip(), 16)
            vendor = int((dev / "vendor").read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        if pci_class >> 16 in _ACCELERATOR_CLASSES:
            found.add(vendor)
    return found


def find_tool(module: ModuleType, runner: SubprocessRunner | None = None) -> str | None:
    finder = runner or SubprocessRunner(extra_dirs=module.TOOL_DIRS)
    return next((t for t in module.TOOLS if finder.which(t)), None)


def open_reader(
    vendor: str,
    via: Via = "auto",
    *,
    runner: ToolRunner | None = None,
    library_path: str | None = None,
    timeout_s: float = 10.0,
) -> VendorReader:
    """A reader for `vendor`: its library where loadable (via auto or library), else its tool."""
    module = vendor_module(vendor)
    library_error: LibraryUnavailable | None = None
    if via in ("auto", "library"):
        try:
            reader: VendorReader = module.LibraryReader(library_path)
            return reader
        except LibraryUnavailable as e:
            if via == "library":
                raise
            library_error = e
    if runner is None:
        tool = find_tool(module)
        if tool is None:
            tried = f"; library: {library_error}" if library_error else ""
            raise BackendError(f"{vendor}: none of {', '.join(module.TOOLS)} is installed{tried}")
        runner = SubprocessRunner(timeout_s=timeout_s, extra_dirs=module.TOOL_DIRS)
    cli: VendorReader = module.CliReader(runner, timeout_s)
    return cli


def detect_vendors(pci_ids: Iterable[int] | None = None) -> list[str]:
    """Domestic vendors present here: by PCI id where sysfs shows devices, else by tool."""
    ids = set(pci_vendor_ids() if pci_ids is None else pci_ids)
    present = []
    for vendor in DOMESTIC:
        module = vendor_module(vendor)
        on_pci = bool(ids & set(module.PCI_VENDOR_IDS))
        tool = find_tool(module)
        if on_pci or (tool is not None and tool not in _AMBIGUOUS_TOOLS and not ids):
            present.append(vendor)
    return present
