"""A fleet-sized Corral store, written straight into SQLite, for benchmarks/dashboard.py.

What goes in (defaults: 10,000 nodes × 8 devices, 3,000 jobs, 1,000,000 events over 30 days):
nodes in racks and blocks with their devices and health (dashboard_seed_fleet.py); jobs with
their attempts, placements, checkpoints, failures and events (dashboard_seed_jobs.py); then, up
to the event count asked for, the background every fleet logs: device health reports (corrected
ECC, thermal slowdowns, XIDs; a few noisy devices send most of them), health checks passing,
and nodes disconnecting, reconnecting, going silent, cordoned and uncordoned. Ids follow time,
as they do in a live store.

Rows go in with SQLAlchemy Core executemany, in one transaction, into a store `Store.open`
migrated, so the schema is the real one. Times are relative to the moment of seeding.
`ensure_seeded` keeps the result in a directory with a `seed.json` describing it, reuses it when
asked for the same thing, and moves every stored time forward to "now" when it has aged.

    python -m benchmarks.dashboard_seed --data-dir /tmp/corral-dash-seed   # 10,000 nodes, 1M events
    python -m benchmarks.dashboard_seed --data-dir /tmp/small --nodes 64 --events 20000
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, Table, insert, select, text, update

from benchmarks.dashboard_seed_fleet import (
    AGENT_VERSION,
    DAY_S,
    DEVICES_PER_NODE,
    NODES_PER_RACK,
    NVIDIA_REPORTS,
    OTHER_REPORTS,
    HealthReport,
    NodePlan,
    device_rows,
    health_rows,
    node_rows,
    plan_fleet,
)
from benchmarks.dashboard_seed_jobs import QUEUES, Event, JobHistory
from scheduler.reliability.health_state import HealthRecord, HistoryEntry
from scheduler.server.faults.health import describe_health_event
from scheduler.store import Store, schema

SEED_FORMAT = 2  # bump when what is generated changes: caches of an older format are rebuilt
BATCH_ROWS = 20_000
SHIFT_AFTER_S = 600.0  # a cache older than this has its times moved forward to now
NOISY_DEVICE_SHARE = 0.02  # these devices send…
NOISY_REPORT_SHARE = 0.6  # …this share of the background health reports
DB_FILES = ("corral.db", "corral.db-wal", "corral.db-shm", "seed.json")


class SeedError(RuntimeError):
    """The seed cannot be made or reused as asked; the message names the flag and the fix."""


@dataclass(frozen=True)
class SeedSpec:
    nodes: int = 10_000
    events: int = 1_000_000
    jobs: int = 0  # 0: nodes × 0.3
    days: float = 30.0
    seed: int = 9

    @property
    def job_count(self) -> int:
        return self.jobs or max(10, self.nodes * 3 // 10)

    def problems(self) -> list[str]:
        out = []
        if self.nodes < NODES_PER_RACK:
            out.append(f"--nodes: need at least {NODES_PER_RACK}, one rack (got {self.nodes})")
        if self.events < 0:
            out.append(f"--events: must be ≥ 0 (got {self.events})")
        if self.jobs < 0:
            out.append(f"--jobs: must be ≥ 0, 0 meaning nodes × 0.3 (got {self.jobs})")
        if not 1 <= self.days <= 365:
            out.append(f"--days: must be 1..365 (got {self.days:g})")
        return out


@dataclass
class SeedResult:
    data_dir: Path
    spec: SeedSpec
    rows: dict[str, int]
    seeded_at: float  # the "now" the stored times are relative to (after any shift)
    seed_s: float  # generating and writing, 0 when reused
    reused: bool
    shifted_s: float = 0.0  # how far times were moved forward on reuse
    notes: list[str] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "corral.db"

    def describe(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "spec": asdict(self.spec),
            "rows": self.rows,
            "db_bytes": self.db_path.stat().st_size,
            "seeded_at": self.seeded_at,
            "seed_s": round(self.seed_s, 2),
            "reused": self.reused,
            "shifted_s": round(self.shifted_s, 1),
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- background events


class Background:
    """The fleet's everyday events, in time order: health reports and node comings and goings."""

    def __init__(self, nodes: list[NodePlan], rng: random.Random) -> None:
        self.nodes = nodes
        self.rng = rng
        devices = len(nodes) * DEVICES_PER_NODE
        self.noisy = rng.sample(range(devices), max(1, int(devices * NOISY_DEVICE_SHARE)))
        self.reports = {True: _table(NVIDIA_REPORTS), False: _table(OTHER_REPORTS)}

    def events(self, count: int, start: float, end: float) -> Iterator[Event]:
        rng = self.rng
        for at in sorted(rng.uniform(start, end) for _ in range(count)):
            r = rng.random()
            if r < 0.80:
                yield self._report(at)
            elif r < 0.88:
                yield self._check(at)
            else:
                yield self._node(at)

    def _device(self) -> tuple[NodePlan, int]:
        rng = self.rng
        k = (
            rng.choice(self.noisy)
            if rng.random() < NOISY_REPORT_SHARE
            else rng.randrange(len(self.nodes) * 8)
        )
        return self.nodes[k // DEVICES_PER_NODE], k % DEVICES_PER_NODE

    def _report(self, at: float) -> Event:
        node, device = self._device()
        reports, weights, texts = self.reports[node.model.vendor == "nvidia"]
        i = self.rng.choices(range(len(reports)), cum_weights=weights)[0]
        message = f"device {device} on {node.name}: {texts[i]}"
        return (at, "health", None, node.name, None, message, reports[i].data(device))

    def _check(self, at: float) -> Event:
        node, device = self._device()
        if self.rng.random() < 0.5:
            old, new, why = (
                "HEALTHY",
                "SUSPECT",
                self.rng.choice(("ecc_correctable_rate", "thermal_slowdown")),
            )
        else:
            old, new, why = "SUSPECT", "HEALTHY", "health check passed"
        cause = "recovered" if new == "HEALTHY" else why  # what faults/health.py records as the cause
        return (
            at, "health", None, node.name, None, f"device {device} on {node.name}: {old} → {new}: {why}",
            {"device": device, "from": old, "to": new, "reason": why, "cause": cause},
        )  # fmt: skip

    def _node(self, at: float) -> Event:
        rng = self.rng
        node = rng.choice(self.nodes)
        n = node.name
        r = rng.random()
        if r < 0.35:
            return (at, "node", None, n, None, f"node {n} disconnected; its workers keep running", {})
        if r < 0.70:
            message = f"node {n} connected (simulated, {DEVICES_PER_NODE} devices, agent {AGENT_VERSION})"
            return (at, "node", None, n, None, message, {})
        if r < 0.85:
            silent = rng.uniform(10.1, 14)
            return (at, "node", None, n, None, f"node {n} silent for {silent:.0f} s (heartbeat timeout 10 s)",
                    {"silent_s": silent})  # fmt: skip
        if r < 0.93:
            reason = rng.choice(("firmware update", "NVLink cable swap", "rack PDU work"))
            return (at, "node", None, n, None, f"node {n} cordoned: {reason}", {})
        return (at, "node", None, n, None, f"node {n} uncordoned", {})


def _table(reports: tuple[tuple[int, HealthReport], ...]) -> tuple[list[HealthReport], list[int], list[str]]:
    """Reports, their cumulative weights, and each one's message after "device D on NODE: "."""
    out, cumulative, texts, total = [], [], [], 0
    for weight, report in reports:
        total += weight
        out.append(report)
        cumulative.append(total)
        texts.append(describe_health_event("-", report.event).split(": ", 1)[1])
    return out, cumulative, texts


# --------------------------------------------------------------------------- writing


def write_store(data_dir: Path, spec: SeedSpec, now: float) -> dict[str, int]:
    """Generate everything and write it into a freshly migrated store; rows per table."""
    rng = random.Random(spec.seed)
    start = now - spec.days * DAY_S
    nodes = plan_fleet(spec.nodes, spec.days, rng, now)
    history = JobHistory(rng, nodes, now, spec.days)
    for _ in range(spec.job_count):
        history.add()
    out = history.out
    out.events.sort(key=lambda e: e[0])
    background = Background(nodes, rng).events(max(0, spec.events - len(out.events)), start, now)
    events = heapq.merge(out.events, background, key=lambda e: e[0])
    store = Store.open(data_dir)
    rows: dict[str, int] = {}
    try:
        with store.engine.connect() as conn:
            # A benchmark's scratch store: a crash mid-seed is redone from scratch anyway.
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            conn.commit()
            with conn.begin():
                rows["nodes"] = _insert(conn, schema.nodes, node_rows(nodes, rng, now, spec.days))
                rows["devices"] = _insert(conn, schema.devices, device_rows(nodes, rng))
                rows["health"] = _insert(conn, schema.health, health_rows(nodes))
                rows["jobs"] = _insert(conn, schema.jobs, out.jobs)
                rows["attempts"] = _insert(conn, schema.attempts, out.attempts)
                rows["placements"] = _insert(conn, schema.placements, out.placements)
                rows["checkpoints"] = _insert(conn, schema.checkpoints, out.checkpoints)
                rows["failures"] = _insert(conn, schema.failures, out.failures)
                rows["events"] = _insert(conn, schema.events, (_event_row(e) for e in events))
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.commit()
    finally:
        store.close()
    return rows


def _event_row(e: Event) -> dict[str, Any]:
    at, kind, job_id, node_name, state, message, data = e
    return {
        "at": at,
        "kind": kind,
        "job_id": job_id,
        "node_name": node_name,
        "state": state,
        "message": message,
        "data": data,
    }


def _insert(conn: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> int:
    count, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            conn.execute(insert(table), batch)
            count += len(batch)
            batch = []
    if batch:
        conn.execute(insert(table), batch)
        count += len(batch)
    return count


def write_queues(path: Path, nodes: int) -> None:
    """The queues the seeded jobs use, with quotas in proportion to the fleet's devices."""
    devices = {"nvidia": 0, "ascend": 0, "cambricon": 0}
    for plan in plan_fleet(nodes, 1, random.Random(0), 0.0):
        devices[plan.model.vendor] += DEVICES_PER_NODE
    shares = dict(zip(QUEUES, (0.5, 0.3, 0.2), strict=True))
    queues = [
        {
            "name": name,
            "weight": 3 if name == "prod" else 1,
            "cohort": "fleet",
            "quotas": [
                {"vendor": vendor, "nominal": int(count * share)}
                for vendor, count in devices.items()
                if count
            ],
        }
        for name, share in shares.items()
    ]
    path.write_text(yaml.safe_dump({"queues": queues}, sort_keys=False))


# --------------------------------------------------------------------------- the cache


def ensure_seeded(data_dir: Path, spec: SeedSpec, *, now: float | None = None) -> SeedResult:
    """The seeded store in `data_dir`: reused when its seed.json matches `spec` (times moved
    forward if it has aged), written afresh otherwise."""
    now = time.time() if now is None else now
    if problems := spec.problems():
        raise SeedError("; ".join(problems))
    meta_path = data_dir / "seed.json"
    wanted = {"format": SEED_FORMAT, **asdict(spec)}
    notes: list[str] = []
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("spec") == wanted and (data_dir / "corral.db").exists():
            result = SeedResult(data_dir, spec, meta["rows"], meta["seeded_at"], 0.0, reused=True)
            if now - result.seeded_at > SHIFT_AFTER_S:
                result.shifted_s = now - result.seeded_at
                shift_times(data_dir, result.shifted_s)
                result.seeded_at = now
                meta["seeded_at"] = now
                meta_path.write_text(json.dumps(meta, indent=2) + "\n")
            Store.open(data_dir).close()  # a cache from an older schema is migrated
            return result
        notes.append(f"the store cached in {data_dir} was seeded differently; seeded again")
    elif data_dir.exists() and any(data_dir.iterdir()):
        raise SeedError(
            f"--data-dir {data_dir}: not empty and holds no seed.json, so it is not a seeded store; "
            "name a new or empty directory"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in DB_FILES:
        (data_dir / name).unlink(missing_ok=True)
    began = time.monotonic()
    rows = write_store(data_dir, spec, now)
    result = SeedResult(data_dir, spec, rows, now, time.monotonic() - began, reused=False, notes=notes)
    meta_path.write_text(json.dumps({"spec": wanted, "rows": rows, "seeded_at": now}, indent=2) + "\n")
    return result


# Columns holding times, per table; all move together when a cache is brought forward.
_TIME_COLUMNS = {
    "nodes": ("first_seen", "last_seen"),
    "jobs": ("created_at", "updated_at"),
    "attempts": ("started_at", "ended_at", "failed_at"),
    "placements": ("started_at", "ended_at"),
    "events": ("at",),
    "checkpoints": ("at",),
    "failures": ("at",),
}


def shift_times(data_dir: Path, delta_s: float) -> None:
    """Move every stored time `delta_s` later, the health histories' included, so that "the
    last hour" means the same in a reused store as in a fresh one."""
    store = Store(f"sqlite:///{data_dir / 'corral.db'}")
    try:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            conn.commit()
            with conn.begin():
                for table, columns in _TIME_COLUMNS.items():
                    sets = ", ".join(f"{c} = {c} + :d" for c in columns)
                    conn.execute(text(f"UPDATE {table} SET {sets}"), {"d": delta_s})
                conn.execute(
                    text(
                        "UPDATE events SET data = json_set(data, '$.observed_at', "
                        "json_extract(data, '$.observed_at') + :d) WHERE kind = 'failure'"
                    ),
                    {"d": delta_s},
                )
                h = schema.health
                for row in conn.execute(select(h.c.node_name, h.c.idx, h.c.record)).all():
                    record = HealthRecord.from_dict(row.record)
                    moved = HealthRecord(
                        record.state,
                        tuple(
                            HistoryEntry(e.at + delta_s, e.from_state, e.to_state, e.reason)
                            for e in record.history
                        ),
                        tuple(t + delta_s for t in record.recoveries),
                        record.pinned,
                    )
                    conn.execute(
                        update(h)
                        .where(h.c.node_name == row.node_name, h.c.idx == row.idx)
                        .values(record=moved.to_dict())
                    )
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.commit()
    finally:
        store.close()


# --------------------------------------------------------------------------- CLI


def add_spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=SeedSpec.nodes, help="nodes of 8 devices (default 10,000)")
    p.add_argument(
        "--events", type=int, default=SeedSpec.events, help="events in the store (default 1,000,000)"
    )
    p.add_argument("--jobs", type=int, default=0, help="jobs (default: nodes × 0.3)")
    p.add_argument("--days", type=float, default=SeedSpec.days, help="days of history (default 30)")
    p.add_argument("--seed", type=int, default=SeedSpec.seed, help="random seed")


def spec_from(args: argparse.Namespace) -> SeedSpec:
    return SeedSpec(nodes=args.nodes, events=args.events, jobs=args.jobs, days=args.days, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data-dir", required=True, type=Path, help="where the seeded store is kept and reused")
    add_spec_arguments(p)
    args = p.parse_args(argv)
    try:
        result = ensure_seeded(args.data_dir, spec_from(args))
    except SeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.describe(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
