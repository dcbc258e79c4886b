"""Background work: job functions and the worker and cron entry points.

Jobs run inside the app's context. Under `rewards worker` or in-process that
context already exists; under a plain `rq worker` the first job builds the app."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, has_app_context

from rewards.logs import current_request_id, request_id_set

F = TypeVar("F", bound=Callable[..., Any])
_app: Flask | None = None


def get_app() -> Flask:
    global _app
    if _app is None:
        from rewards import create_app

        _app = create_app()
    return _app


def _queued_request_id() -> str | None:
    """The id of the request that queued the RQ job running now (in-process: the
    request's own, already set)."""
    from rq import get_current_job

    current = get_current_job()
    if current is None:
        return current_request_id()
    return current.meta.get("request_id") or current_request_id()


def job(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with request_id_set(_queued_request_id()):
            if has_app_context():
                return func(*args, **kwargs)
            with get_app().app_context():
                return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
