"""Formatting of `corral power`: per zone and rack the budget, draw and headroom, then the
caps in force, from a PowerStatus."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from scheduler.cli.render import DASH, add_row, format_duration, new_table

OVER_STYLE = "bold red"  # a domain drawing more than its effective budget
DERATED_STYLE = "yellow"  # a zone whose cooling is derated below its capacity
# Within this share of the budget a domain is shown as close to it.
NEAR_FRACTION = 0.05
NEAR_STYLE = "yellow"


def format_kw(watts: float) -> str:
    """Watts as kW with one decimal under 100 kW: '16.0 kW', '0.7 kW', '-1.2 kW', '250 kW'."""
    kw = watts / 1000.0
    return f"{kw:.0f} kW" if abs(kw) >= 100 else f"{kw:.1f} kW"


def format_w(watts: float) -> str:
    return f"{watts:.0f} W"


def headroom_text(domain: Any) -> Text:
    text = format_kw(domain.headroom_w)
    if domain.headroom_w < 0:
        return Text(text, style=OVER_STYLE)
    if domain.effective_budget_w > 0 and domain.headroom_w < NEAR_FRACTION * domain.effective_budget_w:
        return Text(text, style=NEAR_STYLE)
    return Text(text)


def effective_text(domain: Any) -> Text:
    text = format_kw(domain.effective_budget_w)
    derated = domain.effective_budget_w < domain.budget_w - 0.5
    return Text(text, style=DERATED_STYLE if derated else "")


def domains_table(domains: Any) -> Table:
    """Zones first, then racks; a rack's zone in ZONE. OVER is how long it has been over its
    effective budget without a break."""
    table = new_table(
        "KIND", "NAME", "ZONE", "BUDGET", "EFFECTIVE", "DRAW", "HEADROOM", "CAPPED", "OVER", "ENFORCED BY",
        "INLET", "NODES",
    )  # fmt: skip
    for d in domains:
        add_row(
            table,
            d.kind,
            d.name,
            d.zone or DASH,
            format_kw(d.budget_w),
            effective_text(d),
            format_kw(d.draw_w),
            headroom_text(d),
            str(d.devices_capped),
            Text(format_duration(d.over_budget_s), style=OVER_STYLE) if d.over_budget_s > 0 else DASH,
            d.enforced_by or DASH,
            f"{d.inlet_c:.1f} °C" if d.HasField("inlet_c") else DASH,
            str(len(d.nodes)),
        )
    return table


def caps_table(caps: Any) -> Table:
    table = new_table("NODE", "DEVICE", "CAP/DEFAULT", "DRAW", "JOB", "REASON")
    for c in caps:
        add_row(
            table,
            c.node,
            str(c.index),
            f"{c.cap_w:.0f}/{c.default_w:.0f} W",
            format_w(c.draw_w),
            c.job_id or DASH,
            c.reason or DASH,
        )
    return table


def power_view(reply: Any) -> RenderableType:
    if not reply.enabled:
        return Text(reply.note or "power management is off")
    parts: list[RenderableType] = [domains_table(reply.domains), Text("")]
    if reply.caps:
        parts += [Text(f"caps in force ({len(reply.caps)}):", style="bold"), caps_table(reply.caps), Text("")]
    else:
        parts += [Text("caps in force: none (every device at its default limit)"), Text("")]
    parts.append(Text(f"site draw: {format_kw(reply.site_draw_w)}", style="dim"))
    if reply.note:
        parts.append(Text(reply.note, style="dim"))
    return Group(*parts)
