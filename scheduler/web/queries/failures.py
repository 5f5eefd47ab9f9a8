"""The failure feed: every interruption, newest first, with filters and keyset pages.

Rows are the "failure" events (one per failed attempt, written by faults/recovery.py), read
newest first through the (kind, id) index. Job filters go to SQL; cause, blame and node live
in the JSON `data` column (whose query syntax differs between SQLite and PostgreSQL), so they
are matched here while reading, and the read stops after SCAN_LIMIT rows whatever the filter:
a page is never an unbounded scan. The device and the outcome come from the `failures` row of
the same attempt and from the job in memory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from scheduler.jobstate import JobState
from scheduler.store import schema
from scheduler.web.queries.codes import classify_cause

if TYPE_CHECKING:
    from scheduler.model import JobRecord
    from scheduler.server.controlplane import ControlPlane

PAGE_SIZE = 50
NODES_SHOWN = 4  # a big gang's failure names hundreds of nodes
SCAN_LIMIT = 20_000
BLAMES = ("hardware", "job", "unknown")
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class FilterError(ValueError):
    """A filter field the feed cannot use; the message names the field and the fix."""


def parse_since(text: str) -> float | None:
    """ "30m", "6h", "7d" (or plain seconds) as seconds; None for empty."""
    if not text.strip():
        return None
    m = _SINCE.match(text.lower())
    if m is None:
        raise FilterError(f"since: {text!r} is not a duration; use e.g. 30m, 6h or 7d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


@dataclass(frozen=True)
class FailureFilter:
    cause: str = ""  # substring of the cause, or a code such as xid:79 / exit:1 / heartbeat
    blame: str = ""
    node: str = ""
    job: str = ""
    since: str = ""  # a duration back from now

    def __post_init__(self) -> None:
        if self.blame and self.blame not in BLAMES:
            raise FilterError(f"blame: {self.blame!r} is not one of {', '.join(BLAMES)}")
        parse_since(self.since)

    @property
    def active(self) -> bool:
        return any((self.cause, self.blame, self.node, self.job, self.since))

    def params(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


@dataclass(frozen=True)
class FailureRow:
    id: int
    at: float
    job_id: str
    job_name: str
    attempt: int
    nodes: list[str]  # the gang's nodes, the first NODES_SHOWN of them
    more_nodes: int  # how many more
    device: str  # the signalling device's index on the first node ("3"), or ""
    cause: str
    signal: str  # XID 79, ECC, heartbeat, exit code 1, hang ...
    meaning: str
    blame: str
    action: str
    outcome: str
    outcome_word: str  # health word for the outcome's colour
    lost_s: float
    detect_s: float


@dataclass(frozen=True)
class FailurePage:
    rows: list[FailureRow]
    older_than: int | None  # `before` for the next (older) page; None when this is the last
    scanned: int
    scan_capped: bool  # the read stopped at SCAN_LIMIT before filling the page


def failure_page(
    cp: ControlPlane,
    flt: FailureFilter,
    now: float,
    *,
    before: int | None = None,
    page_size: int = PAGE_SIZE,
) -> FailurePage:
    """Up to page_size interruptions matching `flt`, newest first, with id < before (older
    pages)."""
    ev = schema.events
    q = select(ev.c.id, ev.c.at, ev.c.job_id, ev.c.node_name, ev.c.data).where(ev.c.kind == "failure")
    if before is not None:
        q = q.where(ev.c.id < before)
    if flt.job:
        q = q.where(ev.c.job_id == flt.job.strip())
    since_s = parse_since(flt.since)
    horizon = now - since_s if since_s is not None else None
    q = q.order_by(ev.c.id.desc()).limit(SCAN_LIMIT)
    events: list[Mapping[str, Any]] = []
    scanned = 0
    more = False
    last_id: int | None = None
    with cp.store.engine.connect() as conn:
        for row in conn.execute(q):
            scanned += 1
            m: Mapping[str, Any] = dict(row._mapping)
            last_id = int(m["id"])
            if horizon is not None and m["at"] < horizon:
                break  # ids grow with time: everything further is older still
            if not _matches(m, flt):
                continue
            if len(events) == page_size:
                more = True
                break
            events.append(m)
    devices = _devices(cp, events)
    rows = [_row(cp, m, devices) for m in events]
    capped = scanned >= SCAN_LIMIT and not more
    # A capped read goes on from where it stopped: the next page searches further back.
    older = rows[-1].id if more and rows else (last_id if capped else None)
    return FailurePage(rows, older, scanned, capped)


def _data(m: Mapping[str, Any]) -> Mapping[str, Any]:
    data = m["data"]
    return data if isinstance(data, Mapping) else {}


def _matches(m: Mapping[str, Any], flt: FailureFilter) -> bool:
    data = _data(m)
    if flt.blame and data.get("blame") != flt.blame:
        return False
    if flt.node:
        node = flt.node.strip()
        named = {str(n) for n in (data.get("nodes") or [])} | {str(n) for n in (data.get("hardware") or [])}
        if node != m["node_name"] and node not in named:
            return False
    if flt.cause:
        needle = flt.cause.strip().lower()
        cause = str(data.get("cause") or "")
        if needle not in cause.lower() and classify_cause(cause).code != needle:
            return False
    return True


def _devices(cp: ControlPlane, events: list[Mapping[str, Any]]) -> dict[tuple[str, int], str]:
    """(job, attempt) -> the index of the device a signal named, from the failures table
    (one indexed lookup per job on the page)."""
    wanted = {(str(m["job_id"]), int(_data(m).get("attempt") or 0)) for m in events}
    if not wanted:
        return {}
    f = schema.failures
    jobs = sorted({job for job, _ in wanted})
    q = select(f.c.job_id, f.c.attempt, f.c.signals).where(f.c.job_id.in_(jobs))
    out: dict[tuple[str, int], str] = {}
    with cp.store.engine.connect() as conn:
        for r in conn.execute(q.limit(len(wanted) * 4 + 100)):
            key = (r.job_id, r.attempt)
            if key not in wanted:
                continue
            indices = [
                int(s["device_index"])
                for s in (r.signals or [])
                if isinstance(s, dict) and s.get("device_index") is not None
            ]
            if indices:
                out[key] = ", ".join(str(i) for i in sorted(set(indices)))
    return out


def _row(cp: ControlPlane, m: Mapping[str, Any], devices: dict[tuple[str, int], str]) -> FailureRow:
    data = _data(m)
    job_id = str(m["job_id"] or "")
    attempt = int(data.get("attempt") or 0)
    cause = str(data.get("cause") or "")
    code = classify_cause(cause)
    job = cp.jobs.get(job_id)
    restart = data.get("action") == "restart"
    backoff = float(data.get("backoff_s") or 0.0)
    action = f"restart after {backoff:.3g} s backoff" if restart else "job failed: no restart"
    outcome, word = outcome_of(job, attempt, restart)
    hardware = [str(n) for n in (data.get("hardware") or [])]
    gang = [str(n) for n in (data.get("nodes") or [])] or ([str(m["node_name"])] if m["node_name"] else [])
    # The hardware the failure was pinned on first: that is the node an operator looks at.
    nodes = hardware + [n for n in gang if n not in set(hardware)]
    return FailureRow(
        id=int(m["id"]),
        at=float(m["at"]),
        job_id=job_id,
        job_name=job.name if job is not None else "",
        attempt=attempt,
        nodes=nodes[:NODES_SHOWN],
        more_nodes=max(0, len(nodes) - NODES_SHOWN),
        device=devices.get((job_id, attempt), ""),
        cause=cause,
        signal=code.signal,
        meaning=code.meaning,
        blame=str(data.get("blame") or ""),
        action=action,
        outcome=outcome,
        outcome_word=word,
        lost_s=float(data.get("lost_s") or 0.0),
        detect_s=float(data.get("detect_s") or 0.0),
    )


def outcome_of(job: JobRecord | None, attempt: int, restarted: bool) -> tuple[str, str]:
    """What became of the job after this failure, with a health word for its colour."""
    if job is None:
        return "job no longer known", "unknown"
    if not restarted:
        return "FAILED", "failed"
    later = [a for a in job.attempts if a.number > attempt]
    failed = next((a for a in job.attempts if a.number == attempt), None)
    if later and failed is not None and failed.restart_s:
        nxt = later[0]
        tail = " (then succeeded)" if job.state is JobState.SUCCEEDED and nxt is job.attempts[-1] else ""
        return f"recovered on attempt {nxt.number} after {failed.restart_s:.1f} s{tail}", "recovered"
    if job.state.terminal:
        return (
            f"job {job.state.value} before it ran again",
            "failed" if job.state is JobState.FAILED else "lost",
        )
    if later:
        return f"pending: attempt {later[0].number} starting", "pending"
    return f"pending: job {job.state.value}", "pending"
