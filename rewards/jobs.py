"""Background jobs through a database outbox.

`enqueue` writes the job into the outbox in the caller's transaction; after commit
`dispatch_pending` either runs it in-process (embedded default) or hands it to RQ.
If Redis is down the row stays undispatched and `relay` sends it later. Jobs are
named by dotted path ("workers.rewards.issue_reward") so this package never
imports the workers."""

from __future__ import annotations

import importlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import select

from .extensions import db, redis
from .logs import current_request_id
from .models import OutboxMessage, utcnow

log = logging.getLogger("rewards.jobs")

QUEUES = ("rewards", "default")
# Seconds before the 2nd, 3rd, ... attempt of a job on RQ (JOB_RETRY_INTERVALS).
RETRY_INTERVALS = (5, 30, 120)
# Attempt number and the most there will be, while a job runs in-process.
_inline_attempt: ContextVar[tuple[int, int] | None] = ContextVar("inline_attempt", default=None)


def enqueue(job: str, queue: str = "default", **kwargs: Any) -> OutboxMessage:
    message = OutboxMessage(id=uuid.uuid4(), job=job, queue=queue, kwargs=kwargs)
    db.session.add(message)
    db.session.info.setdefault("outbox", []).append(message.id)
    return message


def queue_name(name: str) -> str:
    return f"{current_app.config.get('RQ_QUEUE_PREFIX', '')}{name}"


def resolve(job: str) -> Callable[..., Any]:
    module, _, name = job.rpartition(".")
    return getattr(importlib.import_module(module), name)


def dispatch_pending() -> None:
    """Send the jobs this session wrote, now that its transaction has committed."""
    ids = db.session.info.pop("outbox", [])
    if ids:
        dispatch(ids)


def discard_pending() -> None:
    db.session.info.pop("outbox", None)


def dispatch(ids: Iterable[uuid.UUID]) -> None:
    if current_app.config.get("REDIS_URL"):
        _push_to_rq(list(ids))
    else:
        for message_id in ids:
            run_inline(message_id)


def inline_attempt() -> tuple[int, int] | None:
    """(attempt, max attempts) of the in-process job running now; None outside one."""
    return _inline_attempt.get()


@contextmanager
def _attempt(number: int, most: int) -> Iterator[None]:
    token = _inline_attempt.set((number, most))
    try:
        yield
    finally:
        _inline_attempt.reset(token)


def run_inline(message_id: uuid.UUID) -> None:
    """Run an outbox job in this process, retrying a failure at once (after a short
    pause) up to JOB_MAX_ATTEMPTS times, as RQ would with its retries; the job can
    ask `inline_attempt()` whether this is its last chance."""
    session = db.session
    most = int(current_app.config["JOB_MAX_ATTEMPTS"])
    pause = float(current_app.config.get("JOB_INLINE_RETRY_PAUSE", 0.05))
    while True:
        message = session.get(OutboxMessage, message_id)
        if message is None or message.dispatched_at is not None:
            return
        message.dispatched_at = utcnow()
        message.attempts += 1
        attempt, job, kwargs = message.attempts, message.job, dict(message.kwargs)
        session.commit()
        try:
            with _attempt(attempt, most):
                resolve(job)(**kwargs)
            return
        except Exception as error:  # a failed job must not fail the request that queued it
            session.rollback()
            log.exception("job %s failed in-process (attempt %d of %d)", job, attempt, most)
            message = session.get(OutboxMessage, message_id)
            if message is None:
                return
            message.last_error = repr(error)[:2000]
            again = attempt < most
            if again:
                message.dispatched_at = None
            session.commit()
            if not again:
                return
            time.sleep(pause * 2 ** (attempt - 1))


def _push_to_rq(ids: list[uuid.UUID]) -> int:
    from rq import Queue, Retry

    connection = redis.get()
    session = db.session
    pushed = 0
    for message_id in ids:
        message = session.get(OutboxMessage, message_id)
        if message is None or message.dispatched_at is not None:
            continue
        try:
            Queue(queue_name(message.queue), connection=connection).enqueue(
                message.job,
                kwargs=message.kwargs,
                job_id=str(message.id),
                retry=Retry(max=current_app.config["JOB_MAX_ATTEMPTS"] - 1,
                            interval=list(current_app.config.get("JOB_RETRY_INTERVALS",
                                                                 RETRY_INTERVALS))),
                result_ttl=3600,
                failure_ttl=7 * 24 * 3600,
                # The request that asked for the job; workers.job logs under it.
                meta={"request_id": current_request_id()} if current_request_id() else None,
            )
        except RedisError as error:
            session.rollback()
            log.warning("queue unavailable, %s stays in the outbox: %s", message.job, error)
            return pushed
        message.dispatched_at = utcnow()
        message.attempts += 1
        session.commit()
        pushed += 1
    return pushed


def relay(older_than_seconds: int = 10, limit: int = 500) -> int:
    """Dispatch outbox rows that were not sent after their commit (Redis was down,
    or the process died in between). Returns how many were sent."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    ids = list(
        db.session.scalars(
            select(OutboxMessage.id)
            .where(OutboxMessage.dispatched_at.is_(None), OutboxMessage.created_at <= cutoff)
            .order_by(OutboxMessage.created_at)
            .limit(limit)
        )
    )
    db.session.commit()
    if not ids:
        return 0
    if current_app.config.get("REDIS_URL"):
        return _push_to_rq(ids)
    for message_id in ids:
        run_inline(message_id)
    return len(ids)
