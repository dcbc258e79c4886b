"""ETag and Cache-Control on what apps read often and what changes seldom (the
catalogue, charities, action types, wards): a repeat request with If-None-Match gets
304 and no body. The contract (rewards/api/contract.py, CACHED) declares it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import make_response, request


def cached(max_age: int, *, private: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A strong ETag over the body, `max_age` seconds of freshness; `private` for answers
    that depend on who asks (only the caller's own cache may keep them)."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            response = make_response(view(*args, **kwargs))
            if response.status_code != 200:
                return response
            response.cache_control.max_age = max_age
            if private:
                response.cache_control.private = True
                response.vary.add("Authorization")
            else:
                response.cache_control.public = True
            response.vary.add("Accept-Language")
            response.add_etag()
            return response.make_conditional(request.environ)

        return wrapper

    return decorator
