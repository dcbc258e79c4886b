"""The outbox's relay: every row whose lease (`due_at`) has passed is sent again (never
handed over, lost by Redis, abandoned by a killed worker, or waiting for its retry),
unless RQ still holds it; a job whose attempts all died with their workers is given
up on; rows of jobs long done are purged. Workers run it every few seconds and
`rewards cron` each minute (workers/outbox.py). See docs/jobs.md."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import delete, or_, select

from .extensions import db, redis
from .jobs import (
    HANDOVER_GRACE,
    LEASE_GRACE,
    QUEUED_LEASE,
    RETRY_INTERVALS,
    job_timeout,
    queue_key,
    queue_name,
    resolve,
    rq_enqueue,
    rq_meta,
    run_inline,
)
from .models import OutboxMessage, utcnow

log = logging.getLogger("rewards.jobs")

# Attempts lost to killed workers after the last one before the relay stops sending.
ABANDONED_EXTRA = 2
# What to do, with the job's own arguments, when the relay gives up on a job whose
# attempts never finished (each died with its worker): the job itself never got to.
GIVE_UP = {"workers.rewards.issue_reward": "workers.rewards.give_up_issuing"}


# Beyond the longest lease a row can be given, before its `due_at` is taken to be the
# work of a clock that went back (see _horizon).
CLOCK_SLACK = timedelta(seconds=60)


def _horizon(job: str) -> timedelta:
    """The furthest ahead a lease of `job` is ever set: a hand-over's grace, a queued
    lease, an attempt's time limit and grace, the longest retry interval. A `due_at`
    further ahead than this (and CLOCK_SLACK) was written by a clock that has since gone
    back (a correction, a host whose clock ran fast): waiting for it would hold the job
    for as long as the clock moved, so the relay looks at the row now instead."""
    intervals = current_app.config.get("JOB_RETRY_INTERVALS") or RETRY_INTERVALS
    return max(QUEUED_LEASE, HANDOVER_GRACE,
               timedelta(seconds=job_timeout(job)) + LEASE_GRACE,
               timedelta(seconds=max(float(i) for i in intervals))) + CLOCK_SLACK


def _due(now: datetime) -> Any:
    """Rows due now, and rows whose lease ends further ahead than an ordinary job's
    could (_relay_one checks each against its own job's horizon)."""
    return or_(OutboxMessage.due_at <= now, OutboxMessage.due_at > now + _horizon(""))


def _rq_status(connection: Redis, message_id: uuid.UUID, queue: str) -> str | None:
    """RQ's status of this job: "queued", "started", "failed", ...; None if Redis
    does not have it. A job handed over as its id alone (a claim's) has no RQ job until
    a worker takes it: its id in the queue's list is a job queued."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        return str(Job.fetch(str(message_id), connection=connection).get_status().value)
    except NoSuchJobError:
        if connection.lpos(queue_key(queue), str(message_id)) is not None:
            return "queued"
        return None


def _forget_in_rq(connection: Redis, message_id: uuid.UUID, queue: str) -> None:
    """Drop what RQ's registries still say about an attempt that is over (a killed
    worker's entry in the started registry, the failed registry's copy)."""
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    name = queue_name(queue)
    started = StartedJobRegistry(name, connection=connection)
    prefix = f"{message_id}:".encode()
    stale = [entry for entry in connection.zrange(started.key, 0, -1)
             if entry.startswith(prefix) or entry == str(message_id).encode()]
    if stale:
        connection.zrem(started.key, *stale)
    connection.zrem(FailedJobRegistry(name, connection=connection).key, str(message_id))


def relay(limit: int = 500, everything: bool = False) -> int:
    """Send outbox rows whose `due_at` has passed (with `everything`, every row not
    done): never handed over, lost by Redis, abandoned by a killed worker, or waiting
    for a retry. A job RQ still holds is left alone and its lease renewed. Returns
    how many were sent."""
    session = db.session
    now = utcnow()
    query = select(OutboxMessage.id).where(OutboxMessage.due_at.is_not(None))
    if not everything:
        query = query.where(_due(now))
    ids = list(session.scalars(query.order_by(OutboxMessage.due_at).limit(limit)))
    session.commit()
    if not ids:
        return 0
    if not current_app.config.get("REDIS_URL"):
        for message_id in ids:
            run_inline(message_id)
        return len(ids)
    connection = redis.get()
    assert connection is not None
    sent = 0
    for message_id in ids:
        try:
            sent += _relay_one(connection, message_id, now, everything)
        except RedisError as error:
            session.rollback()
            log.warning("queue unavailable, the outbox keeps its jobs: %s", error)
            break
    return sent


def _relay_one(connection: Redis, message_id: uuid.UUID, now: datetime, everything: bool) -> int:
    session = db.session
    query = select(OutboxMessage).where(OutboxMessage.id == message_id,
                                        OutboxMessage.due_at.is_not(None))
    if not everything:
        query = query.where(_due(now))
    # One relay at a time per row; another relay busy with it skips it.
    message = session.scalar(query.with_for_update(skip_locked=True)
                             .execution_options(populate_existing=True))
    if message is None:
        session.rollback()
        return 0
    assert message.due_at is not None
    went_back = message.due_at > now + _horizon(message.job)
    if message.due_at > now and not went_back and not everything:
        session.rollback()  # a long job's lease: not due yet
        return 0
    status = _rq_status(connection, message_id, message.queue)
    if went_back:
        log.warning("job %s (%s) had a lease ending %s, further ahead than any lease: the "
                    "clock went back; looking at it now", message.job, message_id,
                    message.due_at.isoformat())
        if status == "started":  # running: a lease of its own from now, not a second copy
            message.due_at = now + timedelta(seconds=job_timeout(message.job)) + LEASE_GRACE
            session.commit()
            return 0
        message.due_at = now
    if status in ("queued", "scheduled", "deferred"):  # a backlog: look again later
        message.due_at = max(message.due_at, now + QUEUED_LEASE)
        session.commit()
        return 0
    if status is not None and message.due_at > now:
        # Not due yet (`everything`): running within its lease, or waiting for a retry.
        session.rollback()
        return 0
    most = int(current_app.config["JOB_MAX_ATTEMPTS"])
    if message.attempts >= most + ABANDONED_EXTRA:
        log.error("job %s (%s) abandoned after %d attempts; giving up", message.job,
                  message_id, message.attempts)
        message.due_at, message.done_at = None, now
        message.last_error = f"abandoned: {message.attempts} attempts never finished"
        job, kwargs = message.job, dict(message.kwargs)
        session.commit()
        _give_up(job, kwargs)
        return 0
    if message.attempts:
        log.warning("sending job %s (%s) again after %d attempt(s)", message.job, message_id,
                    message.attempts)
    _forget_in_rq(connection, message_id, message.queue)
    rq_enqueue(connection, message_id, message.job, message.queue, dict(message.kwargs),
                rq_meta(message.request_id))
    message.dispatched_at, message.due_at = now, now + QUEUED_LEASE
    session.commit()
    return 1


def _give_up(job: str, kwargs: dict[str, Any]) -> None:
    """Run the job's give-up step (a reward fails and its points come back at once, not
    when the stuck-reward sweep finds it hours later); a failure here is logged and
    left to that sweep."""
    hook = GIVE_UP.get(job)
    if hook is None:
        return
    try:
        resolve(hook)(**kwargs)
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not give up on job %s %r", job, kwargs)


def purge_done(before: datetime, limit: int = 10_000) -> int:
    """Delete rows of jobs done before `before` (the outbox is a record of work in
    flight, not an archive), `limit` rows a transaction until none is left, so a day
    of more jobs than that is not left over to outlive the week. Returns how many
    went."""
    gone = 0
    while True:
        ids = select(OutboxMessage.id).where(OutboxMessage.due_at.is_(None),
                                             OutboxMessage.done_at < before).limit(limit)
        result = db.session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        db.session.commit()
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        gone += count
        if count < limit:
            return gone

