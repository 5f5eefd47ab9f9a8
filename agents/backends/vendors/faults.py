"""Vendor error codes as data: what each code means and what to do about it.

One YAML file per vendor in `faults/` (ascend.yaml, cambricon.yaml, ...), each code citing
its source. A table names *classes* (what to do: Ascend's RestartNPU, SeparateNPU, ...) with a
severity, the component at fault, the default blame and whether it is an early warning, and
lists *codes*, each pointing at a class. The agent uses the table to decide a chip's health and
the severity it sends; the control plane (scheduler/reliability/signals.py) classifies every
vendor health event through the same table, as it does XIDs through xid.yaml.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from corral.v1 import common_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.backends.vendors.snapshot import ChipReading, VendorFault

FAULTS_DIR = Path(__file__).resolve().parent / "faults"
SEVERITY_BY_NAME: dict[str, common_pb2.Severity.ValueType] = {
    "info": common_pb2.SEVERITY_INFO,
    "warning": common_pb2.SEVERITY_WARNING,
    "critical": common_pb2.SEVERITY_CRITICAL,
}


class FaultClass(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: Literal["info", "warning", "critical"]
    component: Literal["device", "node", "network", "job"]
    blame: Literal["hardware", "job", "unknown"]
    early_warning: bool
    action: str = Field(min_length=1)


class FaultCode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: int
    name: str = Field(min_length=1)
    # `class` is a Python keyword; the YAML key is `class`.
    fault_class: str = Field(alias="class", min_length=1)
    source: str = Field(min_length=1)
    confidence: Literal["V", "V-out", "S", "U"] = "V"

    @field_validator("code", mode="before")
    @classmethod
    def _hex_or_int(cls, v: object) -> object:
        # Ascend codes are written as vendors print them: "0x80E01801" or "80E01801".
        if isinstance(v, str):
            text = v.strip().lower().removeprefix("0x")
            try:
                return int(text, 16)
            except ValueError:
                raise ValueError(f"must be an integer or a hex string (got {v!r})") from None
        return v


class FaultTableFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: str = Field(min_length=1)
    source: str = Field(min_length=1)
    code_format: Literal["decimal", "hex"] = "decimal"
    classes: dict[str, FaultClass]
    codes: list[FaultCode]
    unknown: str = Field(min_length=1)  # the class of a code the table does not list


@dataclass(frozen=True)
class FaultMeaning:
    code: int
    name: str
    class_name: str
    fault_class: FaultClass
    source: str
    listed: bool  # False when the code was not in the table and `unknown` applied

    @property
    def critical(self) -> bool:
        return self.fault_class.severity == "critical"


class FaultTableError(ValueError):
    pass


@dataclass(frozen=True)
class FaultTable:
    vendor: str
    source: str
    code_format: str
    classes: dict[str, FaultClass]
    codes: dict[int, FaultCode]
    unknown: str

    def format_code(self, code: int) -> str:
        return f"{code:08X}" if self.code_format == "hex" else str(code)

    def lookup(self, code: int) -> FaultMeaning:
        entry = self.codes.get(code)
        if entry is None:
            return FaultMeaning(
                code, f"code {self.format_code(code)} (not in the {self.vendor} table)", self.unknown,
                self.classes[self.unknown], self.source, listed=False,
            )  # fmt: skip
        return FaultMeaning(
            code, entry.name, entry.fault_class, self.classes[entry.fault_class], entry.source, listed=True
        )

    @classmethod
    def parse(cls, data: Any, origin: str) -> FaultTable:
        try:
            f = FaultTableFile.model_validate(data)
        except ValidationError as e:
            lines = [f"{origin}: {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
            raise FaultTableError("\n".join(lines)) from None
        problems = []
        if f.unknown not in f.classes:
            problems.append(f"{origin}: unknown: class {f.unknown!r} is not under classes")
        codes: dict[int, FaultCode] = {}
        for i, c in enumerate(f.codes):
            if c.fault_class not in f.classes:
                problems.append(f"{origin}: codes[{i}].class: {c.fault_class!r} is not under classes")
            if c.code in codes:
                problems.append(f"{origin}: codes[{i}].code: {c.code} is listed twice")
            codes[c.code] = c
        if problems:
            raise FaultTableError("\n".join(problems))
        return cls(f.vendor, f.source, f.code_format, dict(f.classes), codes, f.unknown)


@functools.cache
def fault_table(vendor: str) -> FaultTable | None:
    """The packaged table for `vendor`, or None where the vendor has no codes of its own."""
    path = FAULTS_DIR / f"{vendor}.yaml"
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as fh:
        table = FaultTable.parse(yaml.safe_load(fh), path.name)
    if table.vendor != vendor:
        raise FaultTableError(f"{path.name}: vendor: says {table.vendor!r}, expected {vendor!r}")
    return table


def packaged_fault_table(vendor: str) -> FaultTable:
    """The table of a vendor whose module ships one (faults/<vendor>.yaml); its absence is a
    broken install, not a vendor without codes, so it raises rather than answering None."""
    table = fault_table(vendor)
    if table is None:
        raise FaultTableError(f"faults/{vendor}.yaml is packaged with the agent but was not found")
    return table


def any_critical(vendor: str, faults: Iterable[VendorFault]) -> bool:
    """Whether any of `faults` is in a critical class of the vendor's packaged table."""
    table = packaged_fault_table(vendor)
    return any(table.lookup(f.code).critical for f in faults)


def with_faults(chip: ChipReading, extra: Iterable[VendorFault] = ()) -> ChipReading:
    """`chip` with `extra` faults added (one per code, a fault already on the chip winning),
    ordered by code, and `healthy` decided by its vendor's table: a chip is unhealthy when lost
    or when any of its faults is in a critical class. Readers whose health is the fault list
    alone (Kunlunxin, MetaX) settle every chip through here, so both of their paths agree."""
    faults: dict[int, VendorFault] = {f.code: f for f in chip.faults}
    for fault in extra:
        faults.setdefault(fault.code, fault)
    healthy = not chip.lost and not any_critical(chip.vendor, faults.values())
    return replace(chip, faults=tuple(faults[c] for c in sorted(faults)), healthy=healthy)


def vendor_code_value(vendor: str, text: str) -> int:
    """A code as an operator writes it (`80E01801`, `0x80E01801`, `48`) read the way the vendor
    prints it: hex where the vendor's table says so, else decimal (0x forces hex)."""
    table = fault_table(vendor)
    cleaned = text.strip().lower()
    hex_code = cleaned.startswith("0x") or (table is not None and table.code_format == "hex")
    try:
        return int(cleaned.removeprefix("0x"), 16 if hex_code else 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a {vendor} error code") from None


def describe_code(vendor: str, code: int) -> tuple[str, str]:
    """(severity, text) for a vendor code: from the vendor's table, or warning where it has none."""
    table = fault_table(vendor)
    if table is None:
        return "warning", f"{vendor} code {code}"
    meaning = table.lookup(code)
    return (
        meaning.fault_class.severity,
        f"{vendor} {table.format_code(code)} {meaning.name} ({meaning.class_name})",
    )
