"""ETag and Cache-Control on what apps read often and what changes seldom (the
catalogue, charities, action types, wards): a repeat request with If-None-Match gets
304 and no body. The contract (rewards/api/contract.py, CACHED) declares it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import make_response, request
from werkzeug.datastructures import Headers
from werkzeug.http import generate_etag, parse_etags, quote_etag


def vary_on(headers: Headers, *names: str) -> None:
    """Add `names` to the Vary header, keeping what it says and naming each once.
    (getlist: a missing header is an empty list, where get raises and catches.)"""
    given = [part.strip() for value in headers.getlist("Vary") for part in value.split(",")
             if part.strip()]
    known = {part.lower() for part in given}
    headers["Vary"] = ", ".join(given + [name for name in names if name.lower() not in known])


def cached(max_age: int, *, private: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A strong ETag over the body, `max_age` seconds of freshness; `private` for answers
    that depend on who asks (only the caller's own cache may keep them).

    The headers are written as strings and If-None-Match compared here: werkzeug's
    `cache_control`, `vary`, `add_etag` and `make_conditional` parse and rebuild the
    headers several times over (and handle ranges and dates these answers never have),
    about a sixth of a catalogue read."""
    control = f"{'private' if private else 'public'}, max-age={max_age}"
    varies = ("Authorization", "Accept-Language") if private else ("Accept-Language",)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            response = make_response(view(*args, **kwargs))
            if response.status_code != 200:
                return response
            headers = response.headers
            headers["Cache-Control"] = control
            vary_on(headers, *varies)
            tag = generate_etag(response.get_data())
            headers["ETag"] = quote_etag(tag)
            environ = request.environ
            if_match = environ.get("HTTP_IF_MATCH")
            if if_match and not parse_etags(if_match).contains(tag):  # "*" matches any
                from ..extensions import error_response

                return error_response(412, "If-Match names no ETag of the current answer.")
            asked = environ.get("HTTP_IF_NONE_MATCH")
            if (asked and environ["REQUEST_METHOD"] in ("GET", "HEAD")
                    and parse_etags(asked).contains_weak(tag)):
                # Unchanged: werkzeug sends a 304 without the body.
                response.status_code = 304
            return response

        return wrapper

    return decorator
