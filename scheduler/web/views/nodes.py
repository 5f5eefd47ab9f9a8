"""View 4, nodes and quarantine: `/nodes` (filtered, paginated table) and `/nodes/{name}`
(devices with live telemetry, failure and health history, lemon evidence, actions). The
detail page polls `/nodes/{name}/status` and `/nodes/{name}/live`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from scheduler.web.queries.nodes import (
    HEALTH_WORDS,
    NODE_STATES,
    NodeFilter,
    node_detail,
    node_list,
    node_status,
)
from scheduler.web.templating import page_links, page_number, render

router = APIRouter()


def _list_context(request: Request) -> tuple[dict[str, object], int]:
    q = request.query_params
    flt = NodeFilter(
        text=q.get("q", "").strip(),
        state=q.get("state", "").strip(),
        health=q.get("health", "").strip(),
        rack=q.get("rack", "").strip(),
    )
    problems = flt.problems()
    if problems:
        flt = NodeFilter()
    listing = node_list(request.app.state.cp, flt, page_number(q.get("page", "")), time.time())
    params = {
        k: v
        for k, v in {"q": flt.text, "state": flt.state, "health": flt.health, "rack": flt.rack}.items()
        if v
    }

    return {
        "flt": flt,
        "listing": listing,
        "error": "; ".join(problems),
        "states": NODE_STATES,
        "healths": HEALTH_WORDS,
        **page_links("/nodes", params, listing.page, listing.pages),
    }, 400 if problems else 200


@router.get("/nodes", include_in_schema=False)
async def nodes(request: Request) -> Response:
    context, status = _list_context(request)
    return render(request, "nodes.html", {"title": "Nodes and quarantine", **context}, status_code=status)


@router.get("/nodes-table", include_in_schema=False)
async def nodes_table(request: Request) -> Response:
    context, status = _list_context(request)
    return render(request, "_nodes_table.html", context, status_code=status)


def _not_found(request: Request, name: str) -> Response:
    return render(
        request,
        "not_found.html",
        {"title": "No such node", "what": f"no node {name!r}", "back": ("/nodes", "all nodes")},
        status_code=404,
    )


@router.get("/nodes/{name}", include_in_schema=False)
async def node(request: Request, name: str) -> Response:
    detail = node_detail(request.app.state.cp, name, time.time())
    if detail is None:
        return _not_found(request, name)
    return render(request, "node.html", {"title": f"Node {name}", "node": detail})


@router.get("/nodes/{name}/status", include_in_schema=False)
async def node_header(request: Request, name: str) -> Response:
    try:
        state, health, cordoned, draining = node_status(request.app.state.cp, name, time.time())
    except KeyError:
        return _not_found(request, name)
    return render(
        request,
        "_node_status.html",
        {"name": name, "state": state, "health": health, "cordoned": cordoned, "draining": draining},
    )


@router.get("/nodes/{name}/live", include_in_schema=False)
async def node_live(request: Request, name: str) -> Response:
    """The parts that change by the second: devices with telemetry, health, failures, events."""
    detail = node_detail(request.app.state.cp, name, time.time())
    if detail is None:
        return _not_found(request, name)
    return render(request, "_node_live.html", {"node": detail})
