"""The control plane's store: SQLAlchemy Core over SQLite (embedded) or PostgreSQL."""

from scheduler.store.store import Store

__all__ = ["Store"]
