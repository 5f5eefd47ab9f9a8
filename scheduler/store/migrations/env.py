"""Alembic environment: migrations run on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from scheduler.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through scheduler.store.Store, which passes its connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds tables
)
with context.begin_transaction():
    context.run_migrations()
