"""Durable state for the control plane.

SQLAlchemy Core (not the ORM) keeps the SQL explicit and the same for SQLite and
PostgreSQL; Alembic owns the schema's versions. The control plane keeps its working set in
memory and writes through here, so reads on the hot path never touch the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url

from scheduler.jobstate import JobState
from scheduler.model import (
    AttemptRecord,
    CheckpointRecord,
    DeviceRecord,
    JobRecord,
    NodeRecord,
    WorkerPhase,
    WorkerRecord,
)
from scheduler.store import schema

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _dicts(conn: Connection, query: Executable) -> Iterator[dict[str, Any]]:
    """Rows as plain dicts; zipping the keys is several times cheaper than `Row._mapping` at
    the hundreds of thousands of rows a control plane loads at start."""
    result = conn.execute(query)
    keys = list(result.keys())
    for row in result:
        yield dict(zip(keys, row, strict=True))


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'corral.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the CLI's requests) proceed while the control plane writes;
    # synchronous=NORMAL is durable across process crashes in WAL mode.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        if make_url(url).get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)
        store = cls(sqlite_url(data_dir))
        store.migrate()
        return store

    def migrate(self) -> None:
        """Bring the schema to the newest version; a no-op when it is there already."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def schema_version(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # --- nodes -------------------------------------------------------------------------

    def upsert_node(self, node: NodeRecord, *, devices_changed: bool = True) -> None:
        """`devices_changed=False` skips rewriting the device rows: a reconnecting agent
        usually reports the same inventory, and a restart storm of thousands of them should
        cost one row each."""
        row = {k: v for k, v in asdict(node).items() if k != "devices"}
        with self.tx() as conn:
            exists = conn.execute(select(schema.nodes.c.name).where(schema.nodes.c.name == node.name)).first()
            if exists:
                conn.execute(update(schema.nodes).where(schema.nodes.c.name == node.name).values(**row))
            else:
                conn.execute(insert(schema.nodes).values(**row))
            if not devices_changed and exists:
                return
            conn.execute(delete(schema.devices).where(schema.devices.c.node_name == node.name))
            if node.devices:
                conn.execute(insert(schema.devices), [_device_row(d) for d in node.devices])

    def update_node(self, name: str, **values: Any) -> None:
        with self.tx() as conn:
            conn.execute(update(schema.nodes).where(schema.nodes.c.name == name).values(**values))

    def set_device_health(self, node_name: str, index: int, health: str) -> None:
        with self.tx() as conn:
            conn.execute(
                update(schema.devices)
                .where(schema.devices.c.node_name == node_name, schema.devices.c.idx == index)
                .values(health=health)
            )

    def load_nodes(self) -> list[NodeRecord]:
        with self.engine.connect() as conn:
            devs: dict[str, list[DeviceRecord]] = {}
            by_node = select(schema.devices).order_by(schema.devices.c.node_name, schema.devices.c.idx)
            for m in _dicts(conn, by_node):
                m["index"] = m.pop("idx")
                devs.setdefault(m["node_name"], []).append(DeviceRecord(**m))
            return [
                NodeRecord(**m, devices=devs.get(m["name"], []))
                for m in _dicts(conn, select(schema.nodes).order_by(schema.nodes.c.name))
            ]

    # --- jobs --------------------------------------------------------------------------

    def insert_job(self, job: JobRecord) -> None:
        with self.tx() as conn:
            conn.execute(insert(schema.jobs).values(**_job_row(job)))

    def update_job(self, job: JobRecord) -> None:
        with self.tx() as conn:
            conn.execute(update(schema.jobs).where(schema.jobs.c.id == job.id).values(**_job_row(job)))

    def insert_attempt(self, job: JobRecord, attempt: AttemptRecord) -> None:
        """Persist a new attempt with its placements and the job's new state, atomically."""
        with self.tx() as conn:
            conn.execute(update(schema.jobs).where(schema.jobs.c.id == job.id).values(**_job_row(job)))
            conn.execute(insert(schema.attempts).values(**_attempt_row(attempt)))
            conn.execute(insert(schema.placements), [_worker_row(w) for w in attempt.workers])

    def update_attempt(self, attempt: AttemptRecord) -> None:
        with self.tx() as conn:
            conn.execute(
                update(schema.attempts)
                .where(schema.attempts.c.job_id == attempt.job_id, schema.attempts.c.number == attempt.number)
                .values(**_attempt_row(attempt))
            )

    def update_worker(self, worker: WorkerRecord) -> None:
        with self.tx() as conn:
            conn.execute(
                update(schema.placements)
                .where(schema.placements.c.workload_id == worker.workload_id)
                .values(**_worker_row(worker))
            )

    def load_jobs(self) -> list[JobRecord]:
        with self.engine.connect() as conn:
            workers: dict[tuple[str, int], list[WorkerRecord]] = {}
            for m in _dicts(conn, select(schema.placements).order_by(schema.placements.c.rank)):
                m["phase"] = WorkerPhase(m["phase"])
                workers.setdefault((m["job_id"], m["attempt"]), []).append(WorkerRecord(**m))
            attempts: dict[str, list[AttemptRecord]] = {}
            for m in _dicts(conn, select(schema.attempts).order_by(schema.attempts.c.number)):
                attempts.setdefault(m["job_id"], []).append(
                    AttemptRecord(**m, workers=workers.get((m["job_id"], m["number"]), []))
                )
            jobs = []
            for m in _dicts(conn, select(schema.jobs).order_by(schema.jobs.c.created_at)):
                m.pop("current_attempt")
                m["state"] = JobState(m["state"])
                jobs.append(JobRecord(**m, attempts=attempts.get(m["id"], [])))
            return jobs

    # --- event log ---------------------------------------------------------------------

    def append_event(
        self,
        kind: str,
        message: str,
        *,
        job_id: str | None = None,
        node_name: str | None = None,
        state: str | None = None,
        data: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        row = {
            "at": time.time() if at is None else at,
            "kind": kind,
            "job_id": job_id,
            "node_name": node_name,
            "state": state,
            "message": message,
            "data": data or {},
        }
        with self.tx() as conn:
            result = conn.execute(insert(schema.events).values(**row))
            row["id"] = int(result.inserted_primary_key[0])  # type: ignore[index]
        return row

    def events(
        self,
        *,
        job_id: str | None = None,
        node_name: str | None = None,
        after_id: int = 0,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        q = select(schema.events).where(schema.events.c.id > after_id)
        if job_id:
            q = q.where(schema.events.c.job_id == job_id)
        if node_name:
            q = q.where(schema.events.c.node_name == node_name)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(schema.events.c.id).limit(limit))]

    # --- fault tolerance -----------------------------------------------------------------

    def insert_checkpoint(self, c: CheckpointRecord) -> None:
        with self.tx() as conn:
            conn.execute(insert(schema.checkpoints).values(**asdict(c)))

    def load_checkpoints(self, per_job: int = 50) -> dict[str, list[CheckpointRecord]]:
        """The newest `per_job` checkpoints of every job, oldest first."""
        cp = schema.checkpoints
        # Ranked in SQL (SQLite and PostgreSQL both have window functions): a long-lived store
        # holds far more checkpoints than the control plane keeps.
        newest = func.row_number().over(partition_by=cp.c.job_id, order_by=cp.c.id.desc()).label("newest")
        ranked = select(cp, newest).subquery()
        query = select(*(ranked.c[c.name] for c in cp.columns)).where(ranked.c.newest <= per_job)
        out: dict[str, list[CheckpointRecord]] = {}
        with self.engine.connect() as conn:
            for m in _dicts(conn, query.order_by(ranked.c.id)):
                del m["id"]
                out.setdefault(m["job_id"], []).append(CheckpointRecord(**m))
        return out

    def save_health(self, node_name: str, index: int, state: str, record: dict[str, Any]) -> None:
        """Write one node's (index -1) or device's health record, replacing the old one."""
        key = (schema.health.c.node_name == node_name, schema.health.c.idx == index)
        with self.tx() as conn:
            conn.execute(delete(schema.health).where(*key))
            conn.execute(
                insert(schema.health).values(node_name=node_name, idx=index, state=state, record=record)
            )

    def load_health(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(schema.health))]

    def insert_failure(self, row: dict[str, Any]) -> None:
        with self.tx() as conn:
            conn.execute(insert(schema.failures).values(**row))

    def load_failures(self, since: float = 0.0) -> list[dict[str, Any]]:
        q = select(schema.failures).where(schema.failures.c.at >= since).order_by(schema.failures.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def save_power_profile(self, owner: str, name: str, per_device_w: float, samples: int, at: float) -> None:
        key = (schema.power_profiles.c.owner == owner, schema.power_profiles.c.name == name)
        with self.tx() as conn:
            conn.execute(delete(schema.power_profiles).where(*key))
            conn.execute(
                insert(schema.power_profiles).values(
                    owner=owner, name=name, per_device_w=per_device_w, samples=samples, updated_at=at
                )
            )

    def load_power_profiles(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(schema.power_profiles))]


def _device_row(d: DeviceRecord) -> dict[str, Any]:
    row = asdict(d)
    row["idx"] = row.pop("index")
    return row


def _job_row(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "owner": job.owner,
        "spec": job.spec,
        "state": job.state.value,
        "reason": job.reason,
        "queue": job.queue,
        "priority": job.priority,
        "restarts": job.restarts,
        "hardware_restarts": job.hardware_restarts,
        "lost_device_s": job.lost_device_s,
        "current_attempt": job.attempts[-1].number if job.attempts else 0,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def _attempt_row(a: AttemptRecord) -> dict[str, Any]:
    return {k: v for k, v in asdict(a).items() if k != "workers"}


def _worker_row(w: WorkerRecord) -> dict[str, Any]:
    row = asdict(w)
    del row["checkpoint_at"]  # in memory only: used to pick preemption victims
    row["phase"] = w.phase.value
    return row
