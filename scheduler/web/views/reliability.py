"""Reliability view: ETTR, where the GPU time went, interruptions by component and cause,
MTBF, recovery phase times, over a window chosen with `?window=1d|7d|30d|all`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from scheduler.web.queries.reliability import (
    DEFAULT_WINDOW,
    WINDOWS,
    cached_reliability_page,
    parse_window,
)
from scheduler.web.templating import render

router = APIRouter()


def _render(request: Request, template: str, window: str) -> Response:
    cp = request.app.state.cp
    try:
        name = parse_window(window)
    except ValueError as exc:
        refusal: dict[str, object] = {
            "title": "Reliability",
            "error": str(exc),
            "windows": tuple(WINDOWS),
            "window": DEFAULT_WINDOW,
        }
        return render(request, "reliability_error.html", refusal, status_code=400)
    kept = cached_reliability_page(cp, name)
    context: dict[str, object] = {
        "title": "Reliability",
        "r": kept.page,
        "kept": kept,
        "now": cp.clock(),
    }
    return render(request, template, context)


@router.get("/reliability", include_in_schema=False)
async def page(request: Request, window: str = DEFAULT_WINDOW) -> Response:
    return _render(request, "reliability.html", window)


@router.get("/reliability/live", include_in_schema=False)
async def live(request: Request, window: str = DEFAULT_WINDOW) -> Response:
    return _render(request, "_reliability_live.html", window)
