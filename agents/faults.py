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
    "clear",
)
ACCEPTED = f"accepted forms: {', '.join(FAULT_FORMS)} (e.g. xid:79)"
_XID = re.compile(r"xid:(\d{1,5})")


@dataclass(frozen=True)
class Fault:
    kind: str  # "xid" or one of the other forms
    code: int = 0  # the XID number for "xid"

    def __str__(self) -> str:
        return f"xid:{self.code}" if self.kind == "xid" else self.kind


def parse_fault(text: str) -> Fault:
    """Parse a fault string (case and surrounding spaces ignored); ValueError names the forms."""
    fault = text.strip().lower()
    if fault in FAULT_FORMS[1:]:
        return Fault(fault)
    match = _XID.fullmatch(fault)
    if match and int(match.group(1)) > 0:  # XID numbers start at 1
        return Fault("xid", int(match.group(1)))
    if fault in ("xid", "xid:"):
        raise ValueError(f"xid needs its code, e.g. xid:79; {ACCEPTED}")
    raise ValueError(f"unknown fault {text!r}; {ACCEPTED}")
