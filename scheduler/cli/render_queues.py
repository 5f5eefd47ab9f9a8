"""Formatting of `corral queues`: one row per queue and pool, from a ListQueuesResponse."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from scheduler.cli.render import DASH, add_row, new_table

BORROWING_STYLE = "yellow"  # a queue using more than its nominal quota of a pool


def format_devices(n: float) -> str:
    """Devices, shares of a device included: 8, 0.25, 1.5 (at most 3 decimals)."""
    value = round(float(n), 3)
    if value.is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def pool_label(pool: Any) -> str:
    """'nvidia H100-SXM5-80GB', or 'nvidia (all models)' for a quota on a whole vendor."""
    vendor = pool.vendor or "any vendor"
    return f"{vendor} {pool.model}" if pool.model else f"{vendor} (all models)"


def quota_text(pool: Any, cohort: str) -> Text:
    """'12/64', '70/64 (borrow ≤ 32)', '3/16 (borrow any)' in a cohort with no limit,
    '5/unlimited' where no quota entry covers the pool."""
    used = format_devices(pool.in_use)
    if not pool.has_quota:
        return Text(f"{used}/unlimited")
    text = f"{used}/{format_devices(pool.nominal)}"
    if pool.has_borrowing_limit:
        if pool.borrowing_limit > 0:
            text += f" (borrow ≤ {format_devices(pool.borrowing_limit)})"
    elif cohort:
        text += " (borrow any)"
    return Text(text, style=BORROWING_STYLE if pool.in_use > pool.nominal else "")


def pending_text(jobs: int, devices: float) -> str:
    if not jobs:
        return "0"
    noun = "device" if devices == 1 else "devices"
    return f"{jobs} ({format_devices(devices)} {noun})"


def queues_table(queues: Any) -> Table:
    """QUEUE is on every row (grep for a queue); WEIGHT, COHORT and RUNNING are the queue's
    own, so they are shown on its first row only."""
    table = new_table("QUEUE", "WEIGHT", "COHORT", "POOL", "IN USE/QUOTA", "PENDING", "RUNNING")
    for queue in queues:
        own = [format_devices(queue.weight), queue.cohort or DASH]
        running = str(queue.running_jobs)
        if not queue.pools:  # nothing configured and nothing in use: the queue is unlimited
            add_row(
                table,
                queue.name,
                *own,
                "(any pool)",
                f"{format_devices(queue.in_use)}/unlimited",
                pending_text(queue.pending_jobs, queue.pending_devices),
                running,
            )
            continue
        for i, pool in enumerate(queue.pools):
            add_row(
                table,
                queue.name,
                *(own if i == 0 else ["", ""]),
                pool_label(pool),
                quota_text(pool, queue.cohort),
                pending_text(pool.pending_jobs, pool.pending_devices),
                running if i == 0 else "",
            )
    return table


def queues_view(reply: Any) -> RenderableType:
    """The table and a footer naming the placement policy."""
    policy = Text(f"placement policy: {reply.policy or DASH}", style="dim")
    if not reply.queues:
        return Group(Text("no queues"), policy)
    return Group(queues_table(reply.queues), Text(""), policy)
