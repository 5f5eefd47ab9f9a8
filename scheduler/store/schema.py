"""The store's tables, in SQLAlchemy Core: one schema for SQLite and PostgreSQL.

Times are float seconds since the epoch (portable, and what the control plane's clock
gives). JSON columns hold lists and maps that are only ever read whole. Changes to this
file need a migration in `migrations/versions/`.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("address", String(255), nullable=False, default=""),
    Column("hostname", String(255), nullable=False, default=""),
    Column("backend", String(64), nullable=False, default=""),
    Column("simulated", Boolean, nullable=False, default=False),
    Column("agent_version", String(64), nullable=False, default=""),
    Column("instance_id", String(64), nullable=False, default=""),
    Column("cpu_count", Integer, nullable=False, default=0),
    Column("memory_bytes", BigInteger, nullable=False, default=0),
    Column("labels", JSON, nullable=False, default=dict),
    Column("cordoned", Boolean, nullable=False, default=False),
    Column("cordon_reason", Text, nullable=False, default=""),
    Column("draining", Boolean, nullable=False, default=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("node_name", String(253), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("vendor", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("uuid", String(128), nullable=False, default=""),
    Column("memory_bytes", BigInteger, nullable=False, default=0),
    Column("power_limit_min_w", Float, nullable=False, default=0.0),
    Column("power_limit_max_w", Float, nullable=False, default=0.0),
    Column("power_limit_default_w", Float, nullable=False, default=0.0),
    Column("power_limit_settable", Boolean, nullable=False, default=False),
    Column("bus_id", String(64), nullable=False, default=""),
    Column("peer_indices", JSON, nullable=False, default=list),
    Column("interconnect", String(64), nullable=False, default=""),
    Column("simulated", Boolean, nullable=False, default=False),
    Column("visibility_env", String(64), nullable=False, default=""),
    Column("health", String(16), nullable=False, default="HEALTHY"),
    Column("board_id", String(128), nullable=False, default=""),
    Column("source", String(32), nullable=False, default=""),
    ForeignKeyConstraint(["node_name"], ["nodes.name"], ondelete="CASCADE"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(63), nullable=False),
    Column("owner", String(128), nullable=False, default=""),
    Column("spec", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("queue", String(63), nullable=False, default="default"),
    Column("priority", Integer, nullable=False, default=0),
    Column("restarts", Integer, nullable=False, default=0),
    Column("hardware_restarts", Integer, nullable=False, default=0),
    Column("lost_device_s", Float, nullable=False, default=0.0),
    Column("current_attempt", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_jobs_state", "state"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("outcome", Text, nullable=False, default=""),
    Column("master_addr", String(255), nullable=False, default=""),
    Column("master_port", Integer, nullable=False, default=0),
    Column("cause", Text, nullable=False, default=""),
    Column("blame", String(16), nullable=False, default=""),
    Column("failed_at", Float, nullable=True),
    Column("lost_s", Float, nullable=False, default=0.0),
    Column("detect_s", Float, nullable=False, default=0.0),
    Column("restart_s", Float, nullable=False, default=0.0),
    Column("resumed_from_step", BigInteger, nullable=False, default=0),
    Column("resume_path", Text, nullable=False, default=""),
    ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
)

placements = Table(
    "placements",
    metadata,
    Column("workload_id", String(128), primary_key=True),
    Column("job_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("node_name", String(253), nullable=False),
    Column("device_indices", JSON, nullable=False, default=list),
    Column("phase", String(16), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("signal", Integer, nullable=True),
    Column("message", Text, nullable=False, default=""),
    Column("progress_step", BigInteger, nullable=False, default=0),
    Column("checkpoint_step", BigInteger, nullable=False, default=0),
    Column("checkpoint_path", Text, nullable=False, default=""),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    ForeignKeyConstraint(["job_id", "attempt"], ["attempts.job_id", "attempts.number"], ondelete="CASCADE"),
    Index("ix_placements_job", "job_id", "attempt"),
    Index("ix_placements_node_phase", "node_name", "phase"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("job_id", String(64), nullable=True),
    Column("node_name", String(253), nullable=True),
    Column("state", String(16), nullable=True),
    Column("message", Text, nullable=False, default=""),
    Column("data", JSON, nullable=False, default=dict),
    Index("ix_events_job", "job_id", "id"),
    Index("ix_events_node", "node_name", "id"),
    # The failure feed (newest of some kinds) and error counts (one kind over a window).
    Index("ix_events_kind_at", "kind", "at"),
    Index("ix_events_kind_id", "kind", "id"),
)

# Checkpoints workers reported; only complete ones are resumed from.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
    Column("at", Float, nullable=False),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("duration_s", Float, nullable=False, default=0.0),
    Column("complete", Boolean, nullable=False, default=False),
    Column("trigger", String(32), nullable=False, default=""),
    ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
    Index("ix_checkpoints_job", "job_id", "id"),
)

# Health of each node (idx -1) and device: state plus the whole record (history, flap count).
health = Table(
    "health",
    metadata,
    Column("node_name", String(253), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("record", JSON, nullable=False),
)

# Attempt failures with their signals and blame: the evidence for blame's give-up rule and for
# lemon nodes, kept across control-plane restarts.
failures = Table(
    "failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("blame", String(16), nullable=False),
    Column("cause", Text, nullable=False, default=""),
    Column("hardware", JSON, nullable=False, default=list),
    Column("hardware_healthy", Boolean, nullable=False, default=True),
    Column("nodes", JSON, nullable=False, default=list),
    Column("signals", JSON, nullable=False, default=list),
    Index("ix_failures_job", "job_id", "attempt"),
    Index("ix_failures_at", "at"),
)

# A job's learned power draw per device, by (owner, name): what admission expects of its next run.
power_profiles = Table(
    "power_profiles",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("per_device_w", Float, nullable=False),
    Column("samples", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)
