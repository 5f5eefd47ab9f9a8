"""Control plane view: version, uptime, store, agent heartbeat lag, telemetry ingest lag,
RPC error rates, store latency, agent versions and streams."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from scheduler.web.queries.controlplane import controlplane_page
from scheduler.web.templating import render

router = APIRouter()


def _context(request: Request) -> dict[str, object]:
    # The agent servicer's own stream count, where the server wiring hands it to the app.
    agents = getattr(request.app.state, "agents", None)
    streams = getattr(agents, "open_streams", None)
    data = controlplane_page(request.app.state.cp, agent_streams=streams)
    return {"title": "Control plane", "c": data}


@router.get("/controlplane", include_in_schema=False)
async def page(request: Request) -> Response:
    return render(request, "controlplane.html", _context(request))


@router.get("/controlplane/live", include_in_schema=False)
async def live(request: Request) -> Response:
    return render(request, "_controlplane_live.html", _context(request))
