"""Queues and scheduling view: pending gangs by queue and reason, wait times, quota against
usage per queue and pool, preemptions. The live part is polled as one partial."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from scheduler.web.queries.queues import queues_page
from scheduler.web.templating import render

router = APIRouter()


def _context(request: Request, page: int, queue: str) -> dict[str, object]:
    data = queues_page(request.app.state.cp, page=page, queue=queue.strip())
    return {"title": "Queues and scheduling", "q": data, "now": data.now}


@router.get("/queues", include_in_schema=False)
async def page(request: Request, page: int = Query(1, ge=1), queue: str = "") -> Response:
    return render(request, "queues.html", _context(request, page, queue))


@router.get("/queues/live", include_in_schema=False)
async def live(request: Request, page: int = Query(1, ge=1), queue: str = "") -> Response:
    return render(request, "_queues_live.html", _context(request, page, queue))
