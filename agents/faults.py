"""The fault strings `corral sim inject` sends and the simulated backend applies.

One grammar for the CLI (checked before sending), the control plane (checked on
NodeService.InjectFault) and the agent (applied), so a fault one accepts the others do too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ecc-sbe, remap-pending and remap-failed (and thermal's throttling) change only what the
# device reports in telemetry, so the agent's telemetry watch, the code that serves real
# hardware, is what turns them into health events.
FAULT_FORMS = (
    "xid:<code>",
    "ecc-dbe",
    "fell-off-bus",
    "thermal",
    "hang",
    "ecc-sbe",
    "remap-pending",
    "remap-failed",
    "vendor:<code>",
    "clear",
)
ACCEPTED = f"accepted forms: {', '.join(FAULT_FORMS)} (e.g. xid:79, vendor:80E01801)"
_XID = re.compile(r"xid:(\d{1,5})")
# A vendor's own error code as the vendor prints it: decimal (a Cambricon XID, an Iluvatar health
# bit) or hex (Ascend's 80E01801); the device's vendor table says which (faults/<vendor>.yaml).
_VENDOR = re.compile(r"vendor:(0x)?([0-9a-f]{1,16})")


@dataclass(frozen=True)
class Fault:
    kind: str  # "xid", "vendor" or one of the other forms
    code: int = 0  # the XID number for "xid"
    vendor_code: str = ""  # for "vendor": the code as written, read by the vendor's table

    def __str__(self) -> str:
        if self.kind == "vendor":
            return f"vendor:{self.vendor_code}"
        return f"xid:{self.code}" if self.kind == "xid" else self.kind


def parse_fault(text: str) -> Fault:
    """Parse a fault string (case and surrounding spaces ignored); ValueError names the forms."""
    fault = text.strip().lower()
    if fault in FAULT_FORMS[1:]:
        return Fault(fault)
    match = _XID.fullmatch(fault)
    if match and int(match.group(1)) > 0:  # XID numbers start at 1
        return Fault("xid", int(match.group(1)))
    vendor = _VENDOR.fullmatch(fault)
    if vendor:
        return Fault("vendor", vendor_code=vendor.group(2).upper())
    if fault in ("vendor", "vendor:"):
        raise ValueError(f"vendor needs the vendor's error code, e.g. vendor:80E01801; {ACCEPTED}")
    if fault in ("xid", "xid:"):
        raise ValueError(f"xid needs its code, e.g. xid:79; {ACCEPTED}")
    raise ValueError(f"unknown fault {text!r}; {ACCEPTED}")
