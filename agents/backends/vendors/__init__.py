"""Accelerator vendors other than NVIDIA: one module per vendor, one normalised snapshot.

Each vendor module offers a summary-table parser (`parse_summary`), a CLI reader (the vendor
tool as a subprocess) and a library reader (ctypes or the vendor's Python binding); both
readers produce the same `NodeSnapshot`, which `VendorBackend` serves behind `DeviceBackend`.
"""

from __future__ import annotations

# The vendor names used on the command line, in inventory JSON and in Device.vendor.
VENDOR_NAMES: tuple[str, ...] = (
    "nvidia", "ascend", "cambricon", "hygon", "moorethreads",
    "iluvatar", "metax", "kunlunxin", "enflame", "amd",
)  # fmt: skip
