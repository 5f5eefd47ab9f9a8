"""Cluster-wide event queries for `corral events`: failures, recoveries, health changes.

Kind, job, node and time are filtered in SQL (indexed columns). The cause lives in the JSON
`data` column, whose query syntax differs between SQLite and PostgreSQL, so it is matched
here instead, while reading rows newest first and stopping once `limit` have matched: the
scan ends as soon as the answer is complete, however old the table.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from scheduler.store import schema

if TYPE_CHECKING:
    from scheduler.store.store import Store

DEFAULT_KINDS = ("failure", "recovery", "health", "node")
DEFAULT_LIMIT = 200
MAX_LIMIT = 10_000
# Events that name several nodes in data["nodes"] (a gang's failure, a recovery's spares)
# and so may concern a node other than the one in their node_name column.
_MULTI_NODE_KINDS = ("failure", "recovery")


def query_events(
    store: Store,
    *,
    kinds: Collection[str] = (),
    node_name: str = "",
    job_id: str = "",
    since: float | None = None,
    cause: str = "",
    limit: int = 0,
) -> list[dict[str, Any]]:
    """The newest `limit` events (0: DEFAULT_LIMIT) matching every given filter, oldest first.

    kinds: empty means DEFAULT_KINDS. node_name: the event's node, or one of the nodes a
    failure or recovery names. since: `at >= since`. cause: case-insensitive substring of
    data["cause"]; events without a cause never match a non-empty one.
    """
    ev = schema.events
    wanted = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
    q = select(ev).where(ev.c.kind.in_(list(kinds) or DEFAULT_KINDS))
    if job_id:
        q = q.where(ev.c.job_id == job_id)
    if since is not None:
        q = q.where(ev.c.at >= since)
    if node_name:
        q = q.where(or_(ev.c.node_name == node_name, ev.c.kind.in_(_MULTI_NODE_KINDS)))
    needle = cause.strip().lower()
    exact = not needle and not node_name
    if exact:
        q = q.limit(wanted)
    found: list[dict[str, Any]] = []
    with store.engine.connect() as conn:
        for row in conn.execute(q.order_by(ev.c.id.desc())):
            event = dict(row._mapping)
            if not exact and not _matches(event, node_name, needle):
                continue
            found.append(event)
            if len(found) >= wanted:
                break
    found.reverse()
    return found


def _matches(event: Mapping[str, Any], node_name: str, needle: str) -> bool:
    data = event["data"] if isinstance(event["data"], Mapping) else {}
    if node_name and event["node_name"] != node_name and node_name not in _named_nodes(data):
        return False
    return not needle or needle in str(data.get("cause") or "").lower()


def _named_nodes(data: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for key in ("nodes", "spares"):
        value = data.get(key)
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, list | tuple):
            names.update(str(v) for v in value)
    return names
