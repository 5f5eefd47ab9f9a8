"""power profiles: each job's learned draw per device, by owner and name

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "power_profiles",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("per_device_w", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "name"),
    )


def downgrade() -> None:
    op.drop_table("power_profiles")
