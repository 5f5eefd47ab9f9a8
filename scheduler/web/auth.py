"""Who may change state through the dashboard: the operator token rule.

Without a token configured the dashboard is read-only for everyone. With one, a request may
act when it carries the token as `Authorization: Bearer <token>` or in the HttpOnly cookie
the token form sets. A cookie rides along on any request the browser makes, so cookie-borne
actions must also come from this site: an htmx request (a custom header, which a cross-site
page cannot send without a CORS preflight this app never grants) or a same-origin Origin.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

COOKIE = "corral_operator_token"


@dataclass(frozen=True)
class OperatorState:
    configured: bool  # the server has an operator token
    presented: bool  # this request carries the right one

    @property
    def read_only(self) -> bool:
        return not (self.configured and self.presented)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def _token(request: Request) -> str | None:
    token = request.app.state.operator_token
    return str(token) if token else None


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def token_matches(expected: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def operator_state(request: Request) -> OperatorState:
    expected = _token(request)
    if expected is None:
        return OperatorState(False, False)
    given = _bearer(request) or request.cookies.get(COOKIE, "")
    return OperatorState(True, token_matches(expected, given))


def same_site(request: Request) -> bool:
    """An htmx request, or an Origin naming this very host."""
    if request.headers.get("hx-request") == "true":
        return True
    origin = request.headers.get("origin")
    if not origin:
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


def check_operator(request: Request) -> Refusal | None:
    """None when the request may act; otherwise why not, for the page to show."""
    expected = _token(request)
    if expected is None:
        return Refusal(
            403,
            "Read-only dashboard: this control plane has no operator token. "
            "Start it with --operator-token-file to allow actions.",
        )
    bearer = _bearer(request)
    if bearer:
        # Browsers never attach a bearer header by themselves: no cross-site risk.
        if token_matches(expected, bearer):
            return None
        return Refusal(403, "Refused: the bearer token is not the operator token.")
    if not token_matches(expected, request.cookies.get(COOKIE, "")):
        return Refusal(
            403, "Refused: read-only. Enter the operator token (top right) to cordon, drain or quarantine."
        )
    if not same_site(request):
        return Refusal(403, "Refused: cross-site request (no HX-Request header and no matching Origin).")
    return None
