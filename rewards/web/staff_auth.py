"""Who is looking at the staff pages: the password check staff log in with, and the
session that remembers them.

`check_staff_credentials` is the one place a staff email and password (and, once staff
accounts have a second factor, the one-time code) are checked for a page login; the
session holds only the account's id, its role and when it logged in, and every request
checks the account again, so disabling an account or changing its role ends its
sessions at once."""

from __future__ import annotations

import functools
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import current_app, g, redirect, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import StaffUser

# Roles that see the dashboard: aggregates only, nothing about one member.
DASHBOARD_ROLES = ("analyst", "scheme_manager", "admin")
SESSION_KEY = "staff_user_id"


@dataclass(frozen=True)
class LoginResult:
    user: StaffUser | None
    problem: str | None  # "credentials" | "role" | None when the login is good


@functools.cache
def _dummy_password_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def check_staff_credentials(session_: Session, email: str, password: str,
                            code: str | None = None) -> StaffUser | None:
    """The staff account these credentials open, or None. An unknown address costs the
    same password hash as a known one, so timing does not tell them apart. `code` is
    the one-time code of a second factor; accounts without one ignore it."""
    user = session_.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
    password_ok = check_password_hash(
        user.password_hash if user is not None else _dummy_password_hash(), password)
    if user is None or not user.active or not password_ok:
        return None
    return user


def log_in(email: str, password: str, code: str | None = None) -> LoginResult:
    user = check_staff_credentials(db.session, email, password, code or None)
    if user is None:
        return LoginResult(None, "credentials")
    if user.role not in DASHBOARD_ROLES:
        return LoginResult(None, "role")
    language = session.get("lang")
    session.clear()  # a fresh session: nothing from before the login carries over
    if language:
        session["lang"] = language
    session[SESSION_KEY] = str(user.id)
    session["staff_role"] = user.role
    session["staff_since"] = int(time.time())
    return LoginResult(user, None)


def current_staff() -> StaffUser | None:
    """The logged-in staff account if it still exists, is active, has the role it logged
    in with and the session is younger than STAFF_TOKEN_TTL."""
    user_id = session.get(SESSION_KEY)
    if not user_id:
        return None
    since = session.get("staff_since", 0)
    if time.time() - since > current_app.config["STAFF_TOKEN_TTL"]:
        return None
    try:
        user = db.session.get(StaffUser, uuid.UUID(user_id))
    except ValueError:
        return None
    if user is None or not user.active or user.role != session.get("staff_role"):
        return None
    return user


def log_out() -> None:
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


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok() -> bool:
    given = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(given, expected)


def safe_next(target: str | None) -> str | None:
    """Only a path on the staff pages themselves: never another site."""
    if target and target.startswith("/staff/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return None
