"""What a failure observation means: severity, where the fault lies, and whose fault it is.

The meanings are data (`xid.yaml` beside this module, with a source for every entry) so that
operators can correct an entry without touching code, and so the live control plane and the
simulator read one table. `classify(observation)` is pure; `from_health_event` and
`from_worker_exit` turn what the agents report into observations.
"""

from __future__ import annotations

import functools
import signal as posix
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from corral.v1 import common_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TABLE_PATH = Path(__file__).resolve().parent / "xid.yaml"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Component(StrEnum):
    DEVICE = "device"
    NODE = "node"
    NETWORK = "network"
    JOB = "job"


class Blame(StrEnum):
    HARDWARE = "hardware"
    JOB = "job"
    UNKNOWN = "unknown"


class Kind(StrEnum):
    """Observation kinds the table knows besides XIDs and POSIX signals."""

    XID = "xid"
    SIGNAL = "signal"
    EXIT = "exit"
    DEVICE_LOST = "device_lost"
    ECC_UNCORRECTED = "ecc_uncorrected"
    ECC_CORRECTABLE = "ecc_correctable"
    ECC_CORRECTABLE_RATE = "ecc_correctable_rate"
    ROW_REMAP_PENDING = "row_remap_pending"
    ROW_REMAP_FAILED = "row_remap_failed"
    THERMAL_SLOWDOWN = "thermal_slowdown"
    THERMAL_SHUTDOWN = "thermal_shutdown"
    HANG = "hang"
    HEARTBEAT_LOST = "heartbeat_lost"
    EXIT_NONZERO = "exit_nonzero"
    OOM_KILLED = "oom_killed"
    VENDOR = "vendor"
    TOOL_ERROR = "tool_error"
    RECOVERED = "recovered"


# Kinds that need a code, and kinds the table routes elsewhere rather than lists.
_ROUTED_KINDS = frozenset({Kind.XID, Kind.SIGNAL, Kind.EXIT})
_EXIT_STATUS_SIGNAL_BASE = 128  # a shell reports death by signal n as exit status 128 + n


@dataclass(frozen=True)
class Observation:
    """One thing seen: `code` is the XID, signal number or exit status; `value` a measurement
    (errors per hour, seconds without progress) compared against the entry's threshold."""

    kind: str
    code: int | None = None
    value: float | None = None
    oom: bool = False
    device_index: int | None = None
    message: str = ""
    vendor: str = ""  # for vendor codes: whose table (agents/backends/vendors/faults/) reads them


@dataclass(frozen=True)
class Signal:
    severity: Severity
    component: Component
    blame: Blame
    early_warning: bool
    reason: str
    source: str
    action: str = ""
    # "The same way" for blame.py: XIDs of one group, one exit status, one POSIX signal.
    failure_class: str = ""
    device_index: int | None = None


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: Severity
    component: Component
    blame: Blame
    early_warning: bool
    action: str = Field(min_length=1)
    source: str = Field(min_length=1)
    confidence: Literal["checked", "recalled", "corral"]


class XidEntry(Entry):
    code: int = Field(ge=0)
    group: str = Field(min_length=1)
    name: str = Field(min_length=1)


class ObservationEntry(Entry):
    kind: Kind
    threshold: float | None = None


class PosixSignalEntry(Entry):
    signal: str = Field(pattern=r"^SIG[A-Z0-9]+$")


_M = TypeVar("_M", bound=BaseModel)


class TableError(ValueError):
    """Every problem found in a table, each naming its entry and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid signal table:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class SignalTable:
    xids: dict[int, XidEntry]
    unknown_xid: Entry
    observations: dict[Kind, ObservationEntry]
    posix_signals: dict[int, PosixSignalEntry]
    unknown_signal: Entry
    origin: str = "xid.yaml"

    @classmethod
    def parse(cls, data: Any, origin: str = "xid.yaml") -> SignalTable:
        if not isinstance(data, dict):
            raise TableError([f"{origin}: must be a mapping with `version: 1`"])
        problems: list[str] = []
        known = {"version", "xids", "unknown_xid", "observations", "posix_signals", "unknown_signal"}
        problems += [f"{origin}: {k}: unknown top-level key" for k in data if k not in known]
        if data.get("version") != 1:
            problems.append(f"{origin}: version: must be 1 (got {data.get('version')!r})")

        xids = _parse_list(data, "xids", XidEntry, origin, problems, lambda e: f"code {e.get('code')}")
        obs = _parse_list(data, "observations", ObservationEntry, origin, problems, lambda e: e.get("kind"))
        sigs = _parse_list(
            data, "posix_signals", PosixSignalEntry, origin, problems, lambda e: e.get("signal")
        )
        unknown_xid = _parse_one(data, "unknown_xid", origin, problems)
        unknown_signal = _parse_one(data, "unknown_signal", origin, problems)

        by_code: dict[int, XidEntry] = {}
        for i, x in xids:
            if x.code in by_code:
                problems.append(f"{origin}: xids[{i}] (code {x.code}).code: listed twice")
            by_code[x.code] = x
        by_kind: dict[Kind, ObservationEntry] = {}
        for i, o in obs:
            if o.kind in _ROUTED_KINDS:
                problems.append(f"{origin}: observations[{i}] ({o.kind}).kind: has its own section")
            elif o.kind in by_kind:
                problems.append(f"{origin}: observations[{i}] ({o.kind}).kind: listed twice")
            by_kind[o.kind] = o
        missing = sorted(set(Kind) - _ROUTED_KINDS - set(by_kind))
        if missing and not problems:
            problems.append(f"{origin}: observations: missing kinds {', '.join(missing)}")
        by_number: dict[int, PosixSignalEntry] = {}
        for i, s in sigs:
            number = getattr(posix.Signals, s.signal, None)
            if number is None:
                problems.append(f"{origin}: posix_signals[{i}] ({s.signal}).signal: not a signal here")
            else:
                by_number[int(number)] = s

        if problems or unknown_xid is None or unknown_signal is None:
            raise TableError(problems)
        return cls(by_code, unknown_xid, by_kind, by_number, unknown_signal, origin)

    @classmethod
    def load(cls, path: Path = TABLE_PATH) -> SignalTable:
        with path.open(encoding="utf-8") as f:
            return cls.parse(yaml.safe_load(f), path.name)


def _parse_list(
    data: dict[str, Any],
    key: str,
    model: type[_M],
    origin: str,
    problems: list[str],
    label: Callable[[dict[str, Any]], object],
) -> list[tuple[int, _M]]:
    raw = data.get(key)
    if not isinstance(raw, list) or not raw:
        problems.append(f"{origin}: {key}: must be a non-empty list")
        return []
    good: list[tuple[int, _M]] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            problems.append(f"{origin}: {key}[{i}]: must be a mapping of fields")
            continue
        where = f"{origin}: {key}[{i}] ({label(entry)})"
        try:
            good.append((i, model.model_validate(entry)))
        except ValidationError as e:
            problems.extend(f"{where}.{_loc(err['loc'])}: {err['msg']}" for err in e.errors())
    return good


def _parse_one(data: dict[str, Any], key: str, origin: str, problems: list[str]) -> Entry | None:
    raw = data.get(key)
    if not isinstance(raw, dict):
        problems.append(f"{origin}: {key}: must be a mapping of fields")
        return None
    try:
        return Entry.model_validate(raw)
    except ValidationError as e:
        problems.extend(f"{origin}: {key}.{_loc(err['loc'])}: {err['msg']}" for err in e.errors())
        return None


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(entry)"


@functools.cache
def packaged_table() -> SignalTable:
    return SignalTable.load()


def classify(observation: Observation, table: SignalTable | None = None) -> Signal:
    """The meaning of one observation. Pure: the same observation always gives the same signal."""
    t = table if table is not None else packaged_table()
    kind = observation.kind
    if kind == Kind.XID:
        return _classify_xid(observation, t)
    if kind == Kind.EXIT:
        return _classify_exit(observation, t)
    if kind == Kind.SIGNAL:
        return _classify_posix(observation, t)
    if kind == Kind.VENDOR and observation.code is not None:
        vendor_signal = _classify_vendor(observation)
        if vendor_signal is not None:
            return vendor_signal
    try:
        entry = t.observations[Kind(kind)]
    except (ValueError, KeyError):
        raise ValueError(f"unknown observation kind {kind!r}") from None
    if entry.threshold is not None and observation.value is not None and observation.value < entry.threshold:
        return _signal(
            entry,
            observation,
            f"{kind} {observation.value:g} below threshold {entry.threshold:g}",
            kind,
            severity=Severity.INFO,
            early_warning=False,
        )
    code = f" {observation.code}" if observation.code is not None else ""
    return _signal(entry, observation, f"{kind}{code}", f"{kind}{code}")


def _classify_xid(o: Observation, t: SignalTable) -> Signal:
    if o.code is None:
        raise ValueError("an xid observation needs its code")
    x = t.xids.get(o.code)
    if x is None:
        return _signal(t.unknown_xid, o, f"XID {o.code} (not in the table)", f"xid:{o.code}")
    return _signal(x, o, f"XID {o.code}: {x.name}", f"xid:{x.group}")


def _classify_vendor(o: Observation) -> Signal | None:
    """A vendor's own code through that vendor's table; None where the vendor has none, which
    leaves the generic `vendor` observation entry to answer."""
    from agents.backends.vendors.faults import fault_table

    table = fault_table(o.vendor) if o.vendor else None
    if table is None or o.code is None:
        return None
    meaning = table.lookup(o.code)
    cls = meaning.fault_class
    detail = f": {o.message}" if o.message else ""
    return Signal(
        severity=Severity(cls.severity),
        component=Component(cls.component),
        blame=Blame(cls.blame),
        early_warning=cls.early_warning,
        reason=f"{o.vendor} {table.format_code(o.code)}: {meaning.name} ({meaning.class_name}){detail}",
        source=meaning.source,
        action=cls.action,
        failure_class=f"{o.vendor}:{meaning.class_name}",
        device_index=o.device_index,
    )


def _classify_exit(o: Observation, t: SignalTable) -> Signal:
    status = o.code if o.code is not None else 0
    if o.oom or _signal_name(status - _EXIT_STATUS_SIGNAL_BASE).startswith("SIG"):
        return _classify_posix(
            Observation(
                Kind.SIGNAL, status - _EXIT_STATUS_SIGNAL_BASE, o.value, o.oom, o.device_index, o.message
            ),
            t,
        )
    entry = t.observations[Kind.EXIT_NONZERO]
    if status == 0:
        return _signal(entry, o, "exited 0", "exit:0", severity=Severity.INFO, blame=Blame.UNKNOWN)
    return _signal(entry, o, f"exited with code {status}", f"exit:{status}")


def _classify_posix(o: Observation, t: SignalTable) -> Signal:
    number = o.code if o.code is not None else 0
    if o.oom:
        return _signal(t.observations[Kind.OOM_KILLED], o, "killed by the OOM killer", "oom")
    name = _signal_name(number)
    entry: Entry = t.posix_signals.get(number, t.unknown_signal)
    return _signal(entry, o, f"killed by {name}", f"signal:{name}")


def _signal_name(number: int) -> str:
    try:
        return posix.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _signal(
    entry: Entry,
    o: Observation,
    reason: str,
    failure_class: str,
    *,
    severity: Severity | None = None,
    blame: Blame | None = None,
    early_warning: bool | None = None,
) -> Signal:
    detail = f": {o.message}" if o.message else ""
    return Signal(
        severity=severity or entry.severity,
        component=entry.component,
        blame=blame or entry.blame,
        early_warning=entry.early_warning if early_warning is None else early_warning,
        reason=reason + detail,
        source=entry.source,
        action=entry.action,
        failure_class=failure_class,
        device_index=o.device_index,
    )


def from_worker_exit(exit_code: int, signal: int = 0, oom: bool = False) -> Observation:
    """How a worker ended, as the agent's WorkloadStatus reports it (exit_code valid when signal is 0)."""
    if oom or signal:
        return Observation(Kind.SIGNAL, signal or posix.SIGKILL, oom=oom)
    return Observation(Kind.EXIT, exit_code)


_PROTO_KIND: dict[int, Kind] = {
    common_pb2.HEALTH_EVENT_KIND_XID: Kind.XID,
    common_pb2.HEALTH_EVENT_KIND_ECC_DBE: Kind.ECC_UNCORRECTED,
    common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST: Kind.DEVICE_LOST,
    common_pb2.HEALTH_EVENT_KIND_HANG: Kind.HANG,
    common_pb2.HEALTH_EVENT_KIND_VENDOR: Kind.VENDOR,
    common_pb2.HEALTH_EVENT_KIND_TOOL_ERROR: Kind.TOOL_ERROR,
    common_pb2.HEALTH_EVENT_KIND_RECOVERED: Kind.RECOVERED,
    common_pb2.HEALTH_EVENT_KIND_ROW_REMAP_PENDING: Kind.ROW_REMAP_PENDING,
    common_pb2.HEALTH_EVENT_KIND_ROW_REMAP_FAILED: Kind.ROW_REMAP_FAILED,
}


def from_health_event(event: common_pb2.HealthEvent) -> Observation:
    """An agent's HealthEvent as an observation. The event's own severity only picks between
    two kinds where the proto lumps them (thermal slowdown vs shutdown; a single corrected ECC
    vs a rising rate); otherwise the table, not the agent, decides severity. The agent's
    telemetry watch (agents/health_watch.py) sends the counter- and flag-derived kinds: rising
    uncorrected ECC (code: the increase), a correctable-ECC rate, row remaps pending or failed,
    and thermal slowdown or shutdown."""
    critical = event.severity == common_pb2.SEVERITY_CRITICAL
    warning_or_worse = event.severity in (common_pb2.SEVERITY_WARNING, common_pb2.SEVERITY_CRITICAL)
    kind: Kind
    if event.kind == common_pb2.HEALTH_EVENT_KIND_THERMAL:
        kind = Kind.THERMAL_SHUTDOWN if critical else Kind.THERMAL_SLOWDOWN
    elif event.kind == common_pb2.HEALTH_EVENT_KIND_ECC_SBE:
        kind = Kind.ECC_CORRECTABLE_RATE if warning_or_worse else Kind.ECC_CORRECTABLE
    else:
        found = _PROTO_KIND.get(event.kind)
        if found is None:
            raise ValueError(f"health event kind {event.kind} has no meaning")
        kind = found
    code = int(event.code) if event.code or kind == Kind.XID else None
    return Observation(
        kind, code, device_index=int(event.device_index), message=event.message, vendor=event.vendor
    )
