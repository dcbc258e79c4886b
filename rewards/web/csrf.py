"""One CSRF token per browser session for the server-rendered forms (partner and staff
pages): every state-changing form carries it, and a POST without the session's token
is refused."""

from __future__ import annotations

import hmac
import secrets

from flask import request, session


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
