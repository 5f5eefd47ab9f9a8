"""`create_app`: the dashboard, /metrics and Prometheus discovery as one FastAPI app."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from scheduler.web.templating import STATIC_DIR, render

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane

log = logging.getLogger("corral.web")

# Every view module exposes `router`; endpoints and actions have no page of their own.
VIEW_MODULES: tuple[tuple[str, str, str], ...] = (
    # (module, path of its page, title) — the path and title only matter if it is missing
    ("scheduler.web.views.endpoints", "", ""),
    ("scheduler.web.views.actions", "", ""),
    ("scheduler.web.views.fleet", "/", "Fleet health"),
    ("scheduler.web.views.failures", "/failures", "Failure feed"),
    ("scheduler.web.views.reliability", "/reliability", "Reliability"),
    ("scheduler.web.views.nodes", "/nodes", "Nodes and quarantine"),
    ("scheduler.web.views.queues", "/queues", "Queues and scheduling"),
    ("scheduler.web.views.power", "/power", "Power and thermal"),
    ("scheduler.web.views.jobs", "/jobs", "Jobs"),
    ("scheduler.web.views.controlplane", "/controlplane", "Control plane"),
)


def _missing_view(path: str, title: str) -> APIRouter:
    """A page saying the view is not in this build, so the nav never leads to a 404."""
    router = APIRouter()

    async def page(request: Request) -> Response:
        return render(request, "missing.html", {"title": title})

    router.add_api_route(path, page, methods=["GET"], include_in_schema=False)
    return router


def create_app(cp: ControlPlane, *, operator_token: str | None, refresh_s: float = 5.0) -> FastAPI:
    if refresh_s <= 0:
        raise ValueError(f"refresh_s: must be > 0 seconds (got {refresh_s:g})")
    app = FastAPI(title="Corral", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.cp = cp
    app.state.operator_token = operator_token or None
    app.state.refresh_s = float(refresh_s)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module, path, title in VIEW_MODULES:
        try:
            router = importlib.import_module(module).router
        except ModuleNotFoundError as exc:
            if exc.name != module or not path:
                raise
            log.warning("dashboard view %s is not in this build", module)
            router = _missing_view(path, title)
        app.include_router(router)
    return app
