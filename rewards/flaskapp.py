"""The Flask class the scheme runs on: Flask with two costs of every request paid once.

A resident's read is a few milliseconds, and Flask spends a fair part of it on work
whose answer never changes between requests: asking of each of the twenty hooks and
wrappers whether it is a coroutine, and building the cookie session's signing
serializer for API calls that carry no cookie at all."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions (the staff and partner pages), without building
    the signing serializer for a request that sends no session cookie (every API call):
    such a request starts with an empty session either way."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


class RewardsFlask(Flask):
    session_interface = CookieSessions()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's answer, remembered for plain functions (hooks, views): they are
        the same objects on every request. Bound methods are made afresh each time
        (a class-based view's instance), so they are asked each time; so is anything
        past the first thousand functions (a function made per request, as
        `after_this_request` takes, must not grow this for ever)."""
        known = self._sync.get(func)
        if known is None:
            known = super().ensure_sync(func)
            if type(func) is types.FunctionType and len(self._sync) < 1000:
                self._sync[func] = known
        return known
