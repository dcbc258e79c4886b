"""The Flask class the scheme runs on: Flask with two costs of every request paid once.

A resident's read is a few milliseconds, and Flask spends a fair part of it on work
whose answer never changes between requests: asking of each of the twenty hooks and
wrappers whether it is a coroutine, and building the cookie session's signing
serializer for API calls that carry no cookie at all.

Its requests also refuse a body sent without Content-Length (chunked, as some HTTP
clients stream a POST) that is larger than MAX_CONTENT_LENGTH with 413, as one with a
Content-Length is refused: werkzeug would read such a body whole only up to the limit
and hand the cut-off part on as if it were all of it (a 400 "Invalid JSON body.", or a
truncated upload)."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream


class _BodyAtMost(LimitedStream):
    """A streamed body read up to the most a request may send: reading it whole stops at
    the limit, so whether anything is left is asked of the connection itself; if so the
    body is too large (werkzeug's own readall would return the first part as the body)."""

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._stream.read(1):
            raise RequestEntityTooLarge()
        return data


class RewardsRequest(Request):
    @cached_property
    def stream(self) -> Any:
        if self.shallow:
            raise RuntimeError("This request was created with 'shallow=True', reading "
                               "from the input stream is disabled.")
        limit = self.max_content_length
        if (limit is not None and self.content_length is None
                and "wsgi.input_terminated" in self.environ):
            # Without a length to check first: read at most `limit`, and a body that
            # goes on past it is 413 (get_input_stream checks a declared length).
            return _BodyAtMost(self.environ["wsgi.input"], limit, is_max=True)
        return get_input_stream(self.environ, max_content_length=limit)


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
    request_class = RewardsRequest

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
