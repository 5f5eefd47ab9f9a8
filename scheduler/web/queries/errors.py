"""Errors by code over the last hour and day, for the fleet health view: device errors (health
observations: XID, ECC, row remap, thermal ...), heartbeat losses, and the failures no device
reported (hangs, exit codes).

The first count for a control plane reads the day's newest events of three kinds through the
(kind, at) index; later ones read only events newer than the last seen id, through the
(kind, id) index, and drop what has aged out of the day. So a page polled every few seconds
reads a handful of rows, not a day of them. Every read is LIMITed: past ERROR_SCAN_LIMIT
events of a kind the counts cover the newest ones only, and the page says so.
"""

from __future__ import annotations

import weakref
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from scheduler.store import schema
from scheduler.web.queries.codes import Code, classify_cause

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane

HOUR_S = 3600.0
DAY_S = 86400.0
ERROR_SCAN_LIMIT = 5_000
KINDS = ("health", "node", "failure")
# Failure causes a device's own health event has already counted.
_DEVICE_CODES = ("xid:", "ecc", "row_remap", "thermal")


@dataclass(frozen=True)
class ErrorCount:
    code: str
    signal: str
    meaning: str
    last_hour: int
    last_day: int
    last_at: float


@dataclass(frozen=True)
class ErrorWindow:
    rows: list[ErrorCount]
    truncated: bool  # some kind had more events in the day than were read


def error_code(kind: str, data: Any, message: str) -> Code | None:
    """The error an event records, or None when it records none."""
    if not isinstance(data, Mapping):
        return None
    if kind == "health":
        # Observations carry a severity; state changes ("from"/"to") and ignored events do not.
        if "severity" not in data or data.get("severity") == "info":
            return None
        cause = str(data.get("cause") or "")
        return None if not cause or cause == "recovered" else classify_cause(cause)
    if kind == "node":
        if "silent_s" not in data:
            return None
        # Liveness: a stream silent past the heartbeat timeout, then (maybe) lost past the grace.
        return classify_cause("node_lost" if " lost: " in message else "heartbeat")
    code = classify_cause(str(data.get("cause") or ""))
    return None if code.code.startswith(_DEVICE_CODES) or code.code == "unknown" else code


@dataclass
class ErrorTally:
    """The day's errors for one control plane: (at, code) in arrival order, and where the
    next read starts."""

    seen: deque[tuple[float, Code]] = field(default_factory=deque)
    last_id: dict[str, int] = field(default_factory=dict)
    truncated_at: float | None = None

    def refresh(self, cp: ControlPlane, now: float) -> None:
        ev = schema.events
        new: list[tuple[float, Code]] = []
        with cp.store.engine.connect() as conn:
            for kind in KINDS:
                q = select(ev.c.id, ev.c.at, ev.c.data, ev.c.message).where(ev.c.kind == kind)
                after = self.last_id.get(kind)
                if after is None:
                    q = q.where(ev.c.at >= now - DAY_S).order_by(ev.c.at.desc())
                else:
                    q = q.where(ev.c.id > after).order_by(ev.c.id.desc())
                rows = conn.execute(q.limit(ERROR_SCAN_LIMIT)).all()
                if len(rows) >= ERROR_SCAN_LIMIT:
                    self.truncated_at = now
                newest = max((r.id for r in rows), default=None)
                if newest is None and after is None:
                    # Nothing in the day: start after the kind's newest event, however old.
                    newest = conn.execute(select(func.max(ev.c.id)).where(ev.c.kind == kind)).scalar()
                self.last_id[kind] = max(after or 0, newest or 0)
                for r in rows:
                    code = error_code(kind, r.data, r.message)
                    if code is not None:
                        new.append((r.at, code))
        new.sort(key=lambda item: item[0])
        self.seen.extend(new)
        while self.seen and self.seen[0][0] < now - DAY_S:
            self.seen.popleft()

    def window(self, now: float) -> ErrorWindow:
        hour: Counter[str] = Counter()
        day: Counter[str] = Counter()
        last: dict[str, float] = {}
        codes: dict[str, Code] = {}
        for at, code in self.seen:
            if at < now - DAY_S:
                continue
            codes[code.code] = code
            day[code.code] += 1
            if at >= now - HOUR_S:
                hour[code.code] += 1
            last[code.code] = max(last.get(code.code, 0.0), at)
        rows = [
            ErrorCount(c, codes[c].signal, codes[c].meaning, hour[c], day[c], last[c])
            for c in sorted(day, key=lambda c: (-hour[c], -day[c], c))
        ]
        truncated = self.truncated_at is not None and now - self.truncated_at < DAY_S
        return ErrorWindow(rows, truncated)


_TALLIES: weakref.WeakKeyDictionary[ControlPlane, ErrorTally] = weakref.WeakKeyDictionary()


def error_counts(cp: ControlPlane, now: float) -> ErrorWindow:
    """Errors per code over the last hour and day, newest-first reads kept per control plane."""
    tally = _TALLIES.get(cp)
    if tally is None:
        tally = _TALLIES[cp] = ErrorTally()
    tally.refresh(cp, now)
    return tally.window(now)
