"""View 2, the failure feed: `/failures` (filters as query parameters) and its live part
`/failures/feed`, which the first page polls for new interruptions."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from scheduler.web.queries.failures import BLAMES, FailureFilter, FilterError, failure_page
from scheduler.web.templating import render

router = APIRouter()


def _filter(request: Request) -> FailureFilter:
    q = request.query_params
    return FailureFilter(
        cause=q.get("cause", "").strip(),
        blame=q.get("blame", "").strip(),
        node=q.get("node", "").strip(),
        job=q.get("job", "").strip(),
        since=q.get("since", "").strip(),
    )


def _before(request: Request) -> int | None:
    text = request.query_params.get("before", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise FilterError(f"before: {text!r} must be an event id (a whole number)")
    return int(text)


def _context(request: Request) -> tuple[dict[str, object], int]:
    try:
        flt = _filter(request)
        before = _before(request)
    except FilterError as exc:
        empty = FailureFilter()
        return {"flt": empty, "error": str(exc), "feed": None, "before": None, "blames": BLAMES}, 400
    feed = failure_page(request.app.state.cp, flt, time.time(), before=before)
    params = flt.params()
    older = f"/failures?{urlencode({**params, 'before': feed.older_than})}" if feed.older_than else ""
    newer = f"/failures?{urlencode(params)}" if before is not None else ""
    return {
        "flt": flt,
        "error": "",
        "feed": feed,
        "before": before,
        "blames": BLAMES,
        "query": urlencode(params),
        "older": older,
        "newer": newer,
    }, 200


@router.get("/failures", include_in_schema=False)
async def page(request: Request) -> Response:
    context, status = _context(request)
    return render(request, "failures.html", {"title": "Failure feed", **context}, status_code=status)


@router.get("/failures/feed", include_in_schema=False)
async def feed(request: Request) -> Response:
    context, status = _context(request)
    return render(request, "_failures_feed.html", context, status_code=status)
