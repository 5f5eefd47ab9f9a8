"""Power and thermal view: budget against draw per zone and rack, caps in force, headroom,
throttling by reason and temperatures. Without power management (no --power-topology) it
says how to turn it on and still shows what telemetry measures."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from scheduler.web.queries.power import power_page
from scheduler.web.templating import render

router = APIRouter()


def _context(request: Request, rack_page: int) -> dict[str, object]:
    cp = request.app.state.cp
    return {"title": "Power and thermal", "p": power_page(cp, rack_page=rack_page), "now": cp.clock()}


@router.get("/power", include_in_schema=False)
async def page(request: Request, rack_page: int = Query(1, ge=1)) -> Response:
    return render(request, "power.html", _context(request, rack_page))


@router.get("/power/live", include_in_schema=False)
async def live(request: Request, rack_page: int = Query(1, ge=1)) -> Response:
    return render(request, "_power_live.html", _context(request, rack_page))
