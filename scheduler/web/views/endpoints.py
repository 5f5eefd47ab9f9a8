"""Machine endpoints: liveness, Prometheus metrics and Prometheus HTTP service discovery."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from scheduler.metrics.controlplane import render_metrics
from scheduler.metrics.discovery import scrape_targets

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> Response:
    return PlainTextResponse("ok\n")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    body, content_type = render_metrics(request.app.state.cp)
    return Response(body, media_type=content_type)


@router.get("/prometheus/targets", include_in_schema=False)
async def prometheus_targets(request: Request) -> Response:
    """The answer to Prometheus' `http_sd_configs`: the agents' /metrics endpoints."""
    return JSONResponse(scrape_targets(request.app.state.cp))
