"""Who is looking at the staff pages: the password check staff log in with, and the
session that remembers them.

`check_staff_credentials` is the API's own login check (lockout, second factor); the
cookie holds only the id of a server-side login session and the role, and every request
checks both again, so logging out, a password change, disabling an account or changing
its role ends the page session at once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import current_app, g, redirect, request, session, url_for
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import StaffUser, utcnow
from ..models.login import LoginSession
from ..sessions import live, revoke, start_session
from ..staff import LoginRefused, authenticate, needs_enrolment

# Roles that see the dashboard: aggregates only, nothing about one member.
DASHBOARD_ROLES = ("analyst", "scheme_manager", "admin")
SESSION_KEY = "staff_user_id"


@dataclass(frozen=True)
class LoginResult:
    user: StaffUser | None
    # "credentials" | "role" | "enrol" | "locked" | None when the login is good
    problem: str | None
    retry_after: int | None = None


def check_staff_credentials(session_: Session, email: str, password: str,
                            code: str | None = None) -> StaffUser:
    """The staff account these credentials open, or LoginRefused: the same check as
    POST /v1/auth/login (lockout with back-off, the second factor; rewards/staff.py)."""
    return authenticate(session_, email, password, code)


def log_in(email: str, password: str, code: str | None = None) -> LoginResult:
    try:
        user = check_staff_credentials(db.session, email, password, code or None)
    except LoginRefused as refused:
        if refused.retry_after:
            return LoginResult(None, "locked", refused.retry_after)
        return LoginResult(None, "credentials")
    if user.role not in DASHBOARD_ROLES:
        return LoginResult(None, "role")
    if needs_enrolment(user):
        # The API lets such an account do nothing but enrol its second factor: the pages,
        # which show the same figures, must not open on the password alone either.
        return LoginResult(None, "enrol")
    # Kept server-side: logging out (or a password change, or deactivation) ends it, and
    # so does being left idle (current_staff moves the end on while it is used).
    login = start_session(db.session, "staff_page", _first_lapse(), staff_user_id=user.id)
    db.session.commit()
    language = session.get("lang")
    session.clear()  # a fresh session: nothing from before the login carries over
    if language:
        session["lang"] = language
    session[SESSION_KEY] = str(login.id)
    session["staff_role"] = user.role
    return LoginResult(user, None)


def current_staff() -> StaffUser | None:
    """The logged-in staff account if its login session is live (not logged out, not
    revoked, not expired), the account is active and has the role it logged in with."""
    try:
        login = db.session.get(LoginSession, uuid.UUID(session.get(SESSION_KEY) or ""))
    except ValueError:
        return None
    if not live(login) or login.kind != "staff_page" or login.staff_user_id is None:
        return None
    user = db.session.get(StaffUser, login.staff_user_id)
    if user is None or not user.active or user.role != session.get("staff_role"):
        return None
    if needs_enrolment(user):  # the second factor became required after the login
        return None
    _still_in_use(login)
    return user


# The end of a page session moves on at most this often (a write, not one a request).
IDLE_STEP = timedelta(seconds=60)


def _first_lapse() -> int:
    config = current_app.config
    return min(config["STAFF_TOKEN_TTL"], config["STAFF_PAGE_IDLE_SECONDS"])


def _still_in_use(login: LoginSession) -> None:
    """A request on a live page session: it now ends STAFF_PAGE_IDLE_SECONDS from now,
    never later than STAFF_TOKEN_TTL after the login. Kept server-side, so a copy of the
    cookie left unused lapses with the session, and using it keeps only its own row."""
    config = current_app.config
    now = utcnow()
    until = min(now + timedelta(seconds=config["STAFF_PAGE_IDLE_SECONDS"]),
                login.created_at + timedelta(seconds=config["STAFF_TOKEN_TTL"]))
    if until - login.expires_at >= IDLE_STEP:
        login.expires_at = until
        db.session.commit()


def log_out() -> None:
    try:
        revoke(db.session, uuid.UUID(session.get(SESSION_KEY) or ""), "logout")
        db.session.commit()
    except ValueError:
        pass  # no session to end
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language


def dashboard_login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = current_staff()
        if user is None:
            session.pop(SESSION_KEY, None)
            return redirect(url_for("staff_pages.login", next=request.full_path.rstrip("?")))
        if user.role not in DASHBOARD_ROLES:
            return redirect(url_for("staff_pages.login"))
        g.staff_user = user
        return view(*args, **kwargs)

    return wrapper


def safe_next(target: str | None) -> str | None:
    """Only a path on the staff pages themselves: never another site, and nothing a
    Location header cannot carry (a line break there is a server error, after the login
    has been made) or a browser would drop from a URL (tabs, other control characters)."""
    if target and target.startswith("/staff/") and not target.startswith("//") \
            and "\\" not in target and target.isprintable() and not _leaves(target):
        return target
    return None


def _leaves(target: str) -> bool:
    """Whether the path has a "." or ".." segment (also written with %2e, which browsers
    read the same): "/staff/../v1/..." is a path elsewhere once the browser resolves it."""
    path = target.partition("?")[0].partition("#")[0]
    return any(segment.lower().replace("%2e", ".") in (".", "..")
               for segment in path.split("/"))
