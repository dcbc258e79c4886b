"""One CSRF token per browser session for the server-rendered forms (partner and staff
pages): every state-changing form carries it, and a POST without the session's token
is refused."""

from __future__ import annotations

import hmac
import logging
import secrets

from flask import current_app, request, session

log = logging.getLogger(__name__)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok() -> bool:
    given = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    # Bytes: compare_digest refuses a str with non-ASCII characters, which a form may send.
    return bool(expected) and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                  expected.encode())


def cookie_lost_over_http() -> bool:
    """A form refused because the browser never sent the session cookie back: it is
    marked Secure (SESSION_COOKIE_SECURE, the default outside development) and the page
    was served over plain http. Then the sign-in cannot work however often it is tried;
    the page says so instead of "the form expired"."""
    if not current_app.config.get("SESSION_COOKIE_SECURE") or request.is_secure:
        return False
    if request.cookies.get(current_app.config.get("SESSION_COOKIE_NAME", "session")):
        return False
    log.warning("a sign-in form came over plain http with no session cookie: serve the pages "
                "over HTTPS (or set SESSION_COOKIE_SECURE=0 for a local trial)")
    return True
