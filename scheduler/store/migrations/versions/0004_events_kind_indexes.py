"""events: indexes by kind, for the dashboard's failure feed and error counts

The failure feed reads the newest events of a few kinds (`kind IN (...) ORDER BY id DESC
LIMIT n`) and the fleet view counts one kind over the last hour and day (`kind = ? AND at >= ?`).
Without these, both walk the whole event log, which grows by millions of rows a month on a
large fleet.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_kind_at", ["kind", "at"], unique=False)
        batch_op.create_index("ix_events_kind_id", ["kind", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_kind_id")
        batch_op.drop_index("ix_events_kind_at")
