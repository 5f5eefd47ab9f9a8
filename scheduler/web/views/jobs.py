"""View 7, jobs: `/jobs` (state filter, pages) and `/jobs/{id}` (placement, attempts,
checkpoints, lost GPU-hours, blame, logs). The detail page polls `/jobs/{id}/live` and
`/jobs/{id}/logs`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from scheduler.web.queries.jobs import JOB_STATES, JobFilterError, job_detail, job_list, log_tails
from scheduler.web.templating import page_links, page_number, render

router = APIRouter()


def _list_context(request: Request) -> tuple[dict[str, object], int]:
    q = request.query_params
    state = q.get("state", "").strip().upper()
    page = page_number(q.get("page", ""))
    error = ""
    try:
        listing = job_list(request.app.state.cp, state, page)
    except JobFilterError as exc:
        error, state = str(exc), ""
        listing = job_list(request.app.state.cp, "", page)
    params = {"state": state} if state else {}
    return {
        "listing": listing,
        "state": state,
        "states": JOB_STATES,
        "error": error,
        **page_links("/jobs", params, listing.page, listing.pages),
    }, 400 if error else 200


@router.get("/jobs", include_in_schema=False)
async def jobs(request: Request) -> Response:
    context, status = _list_context(request)
    return render(request, "jobs.html", {"title": "Jobs", **context}, status_code=status)


@router.get("/jobs-table", include_in_schema=False)
async def jobs_table(request: Request) -> Response:
    context, status = _list_context(request)
    return render(request, "_jobs_table.html", context, status_code=status)


def _not_found(request: Request, job_id: str) -> Response:
    return render(
        request,
        "not_found.html",
        {"title": "No such job", "what": f"no job {job_id!r}", "back": ("/jobs", "all jobs")},
        status_code=404,
    )


@router.get("/jobs/{job_id}", include_in_schema=False)
async def job(request: Request, job_id: str) -> Response:
    cp = request.app.state.cp
    detail = job_detail(cp, job_id)
    if detail is None:
        return _not_found(request, job_id)
    return render(
        request, "job.html", {"title": f"Job {job_id}", "job": detail, "logs": log_tails(cp, job_id)}
    )


@router.get("/jobs/{job_id}/live", include_in_schema=False)
async def job_live(request: Request, job_id: str) -> Response:
    detail = job_detail(request.app.state.cp, job_id)
    if detail is None:
        return _not_found(request, job_id)
    return render(request, "_job_live.html", {"job": detail})


@router.get("/jobs/{job_id}/logs", include_in_schema=False)
async def job_logs(request: Request, job_id: str) -> Response:
    cp = request.app.state.cp
    if job_id not in cp.jobs:
        return _not_found(request, job_id)
    return render(request, "_job_logs.html", {"logs": log_tails(cp, job_id)})
