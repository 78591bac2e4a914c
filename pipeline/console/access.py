"""Who is asking, and may they: session logins or a trusted proxy's header, CSRF tokens, roles.

    every page and action needs a reviewer: the session's (after a password login), or, when
        TRUSTREEL_CONSOLE_IDENTITY_HEADER is set, the reviewer the authenticating proxy names in that header;
        either way the account must exist, be enabled, and is re-read on each request (a disabled account
        or a lowered role takes effect at once)
    every form post carries the session's CSRF token (a random value compared in constant time), the
        login form included; a post without it is refused before anything is read from the form's fields
    actions name the role they need (accounts.Role); a reviewer below it is refused with 403
"""

from __future__ import annotations

import hmac
import secrets

from starlette.exceptions import HTTPException
from starlette.requests import Request

from pipeline.console.accounts import Reviewer, Role, active_reviewer

CSRF_FIELD = "csrf_token"


def csrf_token(request: Request) -> str:
    """The session's token, made on first use (the login page makes it before anyone logs in)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form, after its CSRF token matched the session's; 403 otherwise."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD, ""))
    expected = request.session.get("csrf", "")
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "This form is stale or did not come from the console (CSRF check failed). "
                                 "Reload the page and try again.")
    return {key: str(value) for key, value in form.items() if key != CSRF_FIELD}


def current_reviewer(request: Request) -> Reviewer | None:
    sessions = request.app.state.sessions
    header = request.app.state.settings.console_identity_header
    if header:
        named = request.headers.get(header)
        if named:
            return active_reviewer(sessions, named)
    username = request.session.get("user")
    return active_reviewer(sessions, username) if username else None


def require(request: Request, role: Role = Role.REVIEWER) -> Reviewer:
    """The reviewer, if they hold `role`; 401 (to the login page) or 403 otherwise."""
    reviewer = current_reviewer(request)
    if reviewer is None:
        raise HTTPException(401, "Log in first.")
    if not reviewer.role.allows(role):
        raise HTTPException(403, f"This needs the {role.value} role; {reviewer.username} is a {reviewer.role.value}.")
    return reviewer
