"""Background work: job functions and the worker and cron entry points.

Jobs run inside the app's context. Under `rewards worker` or in-process that
context already exists; under a plain `rq worker` the first job builds the app.

Every job runs through `job`: it ends with a commit (or a rollback, on error) and,
in a worker, with the session removed, so no job leaves a transaction open or a
connection checked out for the next job or a forked work horse. An outbox job is
counted, leased and marked done by rewards.jobs.run_attempt."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import ExitStack
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


def _rq_job_id() -> str | None:
    from rq import get_current_job

    current = get_current_job()
    return current.id if current is not None else None


def _outbox_id(job_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        return None


def job(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rewards import jobs
        from rewards.extensions import db

        job_id = _rq_job_id()
        with ExitStack() as stack:
            stack.enter_context(request_id_set(_queued_request_id()))
            if not has_app_context():
                stack.enter_context(get_app().app_context())
            if job_id is not None:
                # In a worker: whatever happens, the next job starts with no session.
                stack.callback(db.session.remove)
            message_id = _outbox_id(job_id) if job_id is not None else None
            if message_id is not None:
                return jobs.run_attempt(message_id, func, args, kwargs)
            return jobs.run_plain(func, args, kwargs)

    return wrapper  # type: ignore[return-value]
