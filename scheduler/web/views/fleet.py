"""View 1, fleet health (the landing page): `/`, and its live body `/fleet/body`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from scheduler.web.queries.fleet import fleet_view
from scheduler.web.templating import render

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page(request: Request) -> Response:
    view = fleet_view(request.app.state.cp, time.time())
    return render(request, "fleet.html", {"title": "Fleet health", "view": view})


@router.get("/fleet/body", include_in_schema=False)
async def body(request: Request) -> Response:
    view = fleet_view(request.app.state.cp, time.time())
    return render(request, "_fleet_body.html", {"view": view})
