"""The dashboard's state-changing requests: the operator token form and node actions.

Every one answers with a short message fragment that htmx swaps in where the button is; a
refusal is a 403 whose message says why (read-only, wrong token, cross-site). Node actions
use the same operations as `corral cordon/uncordon/drain/clear-health`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from scheduler.server import node_ops
from scheduler.server.controlplane import ControlPlane, FailedPrecondition, NotFound
from scheduler.web.auth import COOKIE, check_operator, same_site, token_matches
from scheduler.web.templating import render

router = APIRouter()

MAX_FORM_BYTES = 16 * 1024
MAX_REASON_CHARS = 200
DEFAULT_REASON = "from the dashboard"
# Lets a polled part of the node page refresh at once after an action (hx-trigger ... from:body).
CHANGED_EVENT = "node-changed"


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (htmx's default), first value of each field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items() if v}


def _message(request: Request, text: str, *, ok: bool, status: int = 200) -> Response:
    return render(
        request, "_message.html", {"message": text, "kind": "ok" if ok else "error"}, status_code=status
    )


# --- the token form ----------------------------------------------------------------------


@router.post("/operator/token", include_in_schema=False)
async def unlock(request: Request) -> Response:
    expected = request.app.state.operator_token
    if not expected:
        return _message(request, "This control plane has no operator token: read-only.", ok=False, status=403)
    if not same_site(request):
        return _message(request, "Refused: cross-site request.", ok=False, status=403)
    given = (await _form(request)).get("token", "").strip()
    if not token_matches(expected, given):
        return _message(request, "Wrong operator token.", ok=False, status=403)
    response = _message(request, "Unlocked.", ok=True)
    response.set_cookie(
        COOKIE, given, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    response.headers["HX-Refresh"] = "true"  # the page reloads with the action buttons live
    return response


@router.post("/operator/logout", include_in_schema=False)
async def lock(request: Request) -> Response:
    response = _message(request, "Locked: read-only.", ok=True)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    response.headers["HX-Refresh"] = "true"
    return response


# --- node actions ------------------------------------------------------------------------


def quarantine(cp: ControlPlane, name: str, reason: str) -> None:
    """Take a node out until an operator clears it: QUARANTINED (cordoned, devices unplaceable)
    and drained, so its gangs checkpoint and move. `clear-health` then `uncordon` bring it back."""
    cp.node(name)  # NotFound names the node
    cp.ft.health.quarantine(name, f"quarantined by operator: {reason}", evidence="", cause="operator")
    node_ops.drain(cp, name, f"quarantined: {reason}")


def _act(action: str, cp: ControlPlane, name: str, reason: str) -> str:
    """Do one action; the sentence that says what was done."""
    steps: dict[str, Callable[[], object]] = {
        "cordon": lambda: node_ops.cordon(cp, name, reason),
        "uncordon": lambda: node_ops.uncordon(cp, name),
        "drain": lambda: node_ops.drain(cp, name, reason),
        "quarantine": lambda: quarantine(cp, name, reason),
        "clear-health": lambda: node_ops.clear_health(cp, name, None, reason),
    }
    steps[action]()
    done = {
        "cordon": f"{name} cordoned: nothing new is placed there.",
        "uncordon": f"{name} uncordoned: open for new work.",
        "drain": f"{name} draining: its gangs checkpoint and move elsewhere.",
        "quarantine": f"{name} quarantined and draining; clear its health to bring it back.",
        "clear-health": f"{name} health cleared to HEALTHY (uncordon to place work there again).",
    }
    return done[action]


ACTIONS = ("cordon", "uncordon", "drain", "quarantine", "clear-health")


@router.post("/nodes/{name}/{action}", include_in_schema=False)
async def node_action(request: Request, name: str, action: str) -> Response:
    if action not in ACTIONS:
        return _message(
            request, f"Unknown action {action!r}; one of {', '.join(ACTIONS)}.", ok=False, status=404
        )
    refusal = check_operator(request)
    if refusal is not None:
        return _message(request, refusal.message, ok=False, status=refusal.status)
    reason = (await _form(request)).get("reason", "").strip()[:MAX_REASON_CHARS] or DEFAULT_REASON
    try:
        text = _act(action, request.app.state.cp, name, reason)
    except NotFound as exc:
        return _message(request, str(exc), ok=False, status=404)
    except FailedPrecondition as exc:
        return _message(request, str(exc), ok=False, status=409)
    response = _message(request, text, ok=True)
    response.headers["HX-Trigger"] = CHANGED_EVENT
    return response
