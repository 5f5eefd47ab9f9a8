"""Formatting of `corral events`: the cluster's failures, recoveries and health changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from scheduler.cli.render import BLAME_STYLE, DASH, EVENT_STYLE, add_row, format_time, new_table


def events_table(events: Sequence[Any]) -> Table:
    """One row per event, in the order given (the server sends oldest first: newest last,
    next to the prompt)."""
    table = new_table("TIME", "KIND", "JOB", "NODE", "CAUSE", "BLAME", "MESSAGE")
    for e in events:
        add_row(
            table,
            format_time(e.at),
            Text(e.kind, style=EVENT_STYLE.get(e.kind, "")),
            e.job_id or DASH,
            e.node_name or DASH,
            e.cause or DASH,
            Text(e.blame or DASH, style=BLAME_STYLE.get(e.blame, "")),
            e.message or DASH,
        )
    return table
