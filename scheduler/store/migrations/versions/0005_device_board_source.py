"""devices: board_id and source, for multi-chip boards and vendor backends

A two-chip board (MLU370-X8, BI-V150, Atlas 300I Duo, MI250X) is two schedulable devices that
share a board and its power reading; `source` says whether the agent reads a device through its
vendor library, its vendor tool, NVML or the simulator.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("board_id", sa.String(length=128), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("source", sa.String(length=32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("source")
        batch_op.drop_column("board_id")
