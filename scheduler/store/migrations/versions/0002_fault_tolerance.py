"""fault tolerance: checkpoints, health records, failures; attempt failure fields

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hardware_restarts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("lost_device_s", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cause", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("blame", sa.String(length=16), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("failed_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("lost_s", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("detect_s", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("restart_s", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("resumed_from_step", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("resume_path", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.create_index("ix_checkpoints_job", ["job_id", "id"], unique=False)
    op.create_table(
        "health",
        sa.Column("node_name", sa.String(length=253), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("node_name", "idx"),
    )
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("blame", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("hardware_healthy", sa.Boolean(), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("failures", schema=None) as batch_op:
        batch_op.create_index("ix_failures_job", ["job_id", "attempt"], unique=False)
        batch_op.create_index("ix_failures_at", ["at"], unique=False)


def downgrade() -> None:
    op.drop_table("failures")
    op.drop_table("health")
    op.drop_table("checkpoints")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        for column in ("resume_path", "resumed_from_step", "restart_s", "detect_s", "lost_s"):
            batch_op.drop_column(column)
        for column in ("failed_at", "blame", "cause"):
            batch_op.drop_column(column)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lost_device_s")
        batch_op.drop_column("hardware_restarts")
