"""The dashboard's shared Jinja2 environment, the filters every template uses, and `render`.

Autoescape is on for every template: node names, job names and messages come from agents
and users, and must never become markup.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.responses import Response

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
HTMX_FILE = "htmx-2.0.11.min.js"
DASH = "–"

# (path, label) of the eight views, in the order the nav shows them.
NAV: tuple[tuple[str, str], ...] = (
    ("/", "Fleet health"),
    ("/failures", "Failures"),
    ("/reliability", "Reliability"),
    ("/nodes", "Nodes"),
    ("/queues", "Queues"),
    ("/power", "Power"),
    ("/jobs", "Jobs"),
    ("/controlplane", "Control plane"),
)

# Health words the dashboard colours, each with its CSS class. Text is always shown beside
# the colour, so nothing depends on telling colours apart.
_HEALTH_CLASSES = {
    "healthy": "h-healthy",
    "ready": "h-healthy",
    "ok": "h-healthy",
    "succeeded": "h-healthy",
    "recovered": "h-healthy",
    "running": "h-healthy",
    "suspect": "h-suspect",
    "draining": "h-suspect",
    "checkpointing": "h-suspect",
    "recovering": "h-suspect",
    "pending": "h-info",
    "placed": "h-info",
    "unhealthy": "h-unhealthy",
    "failed": "h-unhealthy",
    "quarantined": "h-quarantined",
    "lost": "h-lost",
    "disconnected": "h-lost",
    "cancelled": "h-lost",
    "cordoned": "h-cordoned",
}


def page_number(text: str) -> int:
    """A `page` query parameter: a positive integer, else the first page."""
    return int(text) if text.isdigit() and int(text) > 0 else 1


def page_links(path: str, params: Mapping[str, str], page: int, pages: int) -> dict[str, str]:
    """A paginated list's links, keeping its filters: `query` (this page), `older`, `newer`
    ("" where there is none)."""

    def href(n: int) -> str:
        return f"{path}?{urlencode({**params, 'page': n})}"

    return {
        "query": urlencode({**params, "page": page}),
        "older": href(page + 1) if page < pages else "",
        "newer": href(page - 1) if page > 1 else "",
    }


def health_class(word: object) -> str:
    """The CSS class for a health or state word (any case); "h-unknown" for others."""
    return _HEALTH_CLASSES.get(str(word).strip().lower(), "h-unknown")


def format_duration(seconds: object) -> str:
    """A duration for people: 850 ms, 12.3 s, 4 m 05 s, 3 h 12 m, 2 d 4 h."""
    if seconds is None or seconds == "":
        return DASH
    s = float(seconds)  # type: ignore[arg-type]
    if s < 0:
        return DASH
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} m {int(s % 60):02d} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} m"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def time_ago(at: object, now: float | None = None) -> str:
    """How long ago an epoch time was: "12 s ago"; a dash for none."""
    if at is None or at == "" or not float(at):  # type: ignore[arg-type]
        return DASH
    delta = (time.time() if now is None else now) - float(at)  # type: ignore[arg-type]
    if delta < 0:
        return "just now"
    return f"{format_duration(delta)} ago"


def format_time(at: object) -> str:
    """An epoch time as UTC, to the second: 2026-11-23 14:05:09."""
    if at is None or at == "" or not float(at):  # type: ignore[arg-type]
        return DASH
    return datetime.fromtimestamp(float(at), UTC).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[arg-type]


def format_bytes(n: object) -> str:
    """Bytes in binary units: 80 GiB, 512 MiB."""
    if n is None or n == "":
        return DASH
    value = float(n)  # type: ignore[arg-type]
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_number(n: object) -> str:
    """Thousands separated: 1,000,000."""
    if n is None or n == "":
        return DASH
    value = float(n)  # type: ignore[arg-type]
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def format_gpu_hours(hours: object) -> str:
    """GPU-hours with the precision small losses need: 0.004, 0.35, 12.5, 1,204."""
    if hours is None or hours == "":
        return DASH
    h = float(hours)  # type: ignore[arg-type]
    if h == 0:
        return "0"
    if abs(h) < 1:
        return f"{h:.3f}".rstrip("0")
    return f"{h:,.1f}" if abs(h) < 1000 else f"{h:,.0f}"


def device_cells(node: Any, linked: bool) -> Markup:
    """A grid node's device squares, built here rather than in a template loop. On a small
    fleet (`linked`) every square links to the node with the device's health as hover text;
    on a big one the squares are bare (the node's name beside them links to it, its hover
    text counts the devices that are not healthy), which keeps the landing page small."""
    if not linked:
        return Markup("".join(f'<i class="cell {health_class(word)}"></i>' for word in node.devices))
    name = escape(node.name)
    return Markup(
        "".join(
            f'<a class="cell {health_class(word)}" href="/nodes/{name}" title="{name} device {index}: '
            f'{escape(word)}"></a>'
            for index, word in enumerate(node.devices)
        )
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        ago=time_ago,
        duration=format_duration,
        bytes=format_bytes,
        health=health_class,
        ts=format_time,
        num=format_number,
        gpuh=format_gpu_hours,
    )
    env.globals.update(nav=NAV, htmx_file=HTMX_FILE, dash=DASH, device_cells=device_cells)
    return env


templates = Jinja2Templates(env=_environment())


def render(
    request: Request, name: str, context: Mapping[str, Any] | None = None, status_code: int = 200
) -> Response:
    """Render a page or partial with what every template may use: the refresh period, the
    operator state for the banner, and the current path for the nav."""
    from scheduler.web.auth import operator_state

    state = request.app.state
    full = {
        "refresh_s": state.refresh_s,
        "operator": operator_state(request),
        "path": request.url.path,
        "now": time.time(),
        **(context or {}),
    }
    return templates.TemplateResponse(request, name, full, status_code=status_code)
