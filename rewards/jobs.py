"""Background jobs through a database outbox that records completion.

`enqueue` writes the job into the outbox in the caller's transaction. After commit
`dispatch_pending` runs it in-process (embedded default) or hands it to RQ: from a
request, on a background thread (rewards/handover.py), so a slow or hung Redis never
holds the request. The row stays until the job has finished: each attempt takes a
lease (`due_at`), a failed attempt sets `due_at` to its retry's moment, success (or
the last attempt) clears it. The relay (rewards/relay.py) sends every row whose
`due_at` has passed, so a job lost with Redis, abandoned by a killed worker or
waiting for its retry runs again; every job is safe to run twice. See docs/jobs.md.

Jobs are named by dotted path ("workers.rewards.issue_reward") so this package never
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
from functools import cache
from typing import Any

from flask import current_app, has_request_context
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import bindparam, update

from .extensions import db, redis
from .ids import new_ids
from .logs import current_request_id, request_id_set
from .models import OutboxMessage, utcnow

log = logging.getLogger("rewards.jobs")

QUEUES = ("rewards", "default")
# Seconds before the 2nd, 3rd, ... attempt of a job (JOB_RETRY_INTERVALS).
RETRY_INTERVALS = (5, 30, 120)
# A row not handed over this long after it was written is sent by the relay.
HANDOVER_GRACE = timedelta(seconds=10)
# A job handed over is looked at again after this long; if it is still queued (a
# backlog) the lease is renewed, if Redis lost it, it is sent again.
QUEUED_LEASE = timedelta(seconds=60)
# Beyond an attempt's time limit, before its lease lapses.
LEASE_GRACE = timedelta(seconds=5)
# Jobs that may run longer than JOB_TIMEOUT_SECONDS.
LONG_JOBS = {"workers.imports.import_csv": 1800, "workers.awarding.award_queued": 600,
             # The scheduled runs sent through the outbox (workers/schedule.py).
             "workers.ledger.release_pending": 1800, "workers.ledger.expire_points": 3600,
             "workers.awarding.queue_stray_actions": 1800,
             "workers.rewards.expire_vouchers": 1800,
             "workers.rewards.remind_expiring_vouchers": 1800,
             "workers.rewards.fail_stuck_rewards": 600}

# Attempt number and the most there will be, while an outbox job runs.
_attempt_var: ContextVar[tuple[int, int] | None] = ContextVar("job_attempt", default=None)
_message_var: ContextVar[uuid.UUID | None] = ContextVar("job_message", default=None)


class AttemptOverran(BaseException):
    """An attempt ran past its time limit (JOB_TIMEOUT_SECONDS): raised in the job by the
    worker's timer (workers/runner.py). Not an Exception, so a job's own `except
    Exception` (a notice that could not be sent, logged and passed over) cannot catch
    it and run on past its lease, while the relay sends the job to another worker."""


def enqueue(job: str, queue: str = "default", **kwargs: Any) -> OutboxMessage:
    message = OutboxMessage(id=new_ids(1)[0], job=job, queue=queue, kwargs=kwargs,
                            due_at=utcnow() + HANDOVER_GRACE,
                            request_id=current_request_id())
    db.session.add(message)
    db.session.info.setdefault("outbox", []).append(message.id)
    return message


def outbox_values(job: str, queue: str = "default", **kwargs: Any) -> dict[str, Any]:
    """The row `enqueue` would add, as column values, for a caller that inserts it in a
    statement of its own (a claim); call `written` with them once the insert ran.
    From a request whose jobs the hand-over thread will send, the row is written marked
    handed over already (`dispatched_at`; due for the relay after HANDOVER_GRACE like
    any new row), so the thread has nothing to mark: it only puts the row's id on its
    queue's list, and the worker builds the RQ job from the row (workers/rqjob.py)."""
    now = utcnow()
    handed_over_here = bool(current_app.config.get("REDIS_URL")) and has_request_context()
    return {"id": new_ids(1)[0], "job": job, "queue": queue, "kwargs": kwargs,
            "due_at": now + HANDOVER_GRACE, "attempts": 0, "created_at": now,
            "dispatched_at": now if handed_over_here else None,
            "request_id": current_request_id()}


def written(values: dict[str, Any]) -> None:
    """An outbox row inserted without `enqueue` (from `outbox_values`), to send once
    its transaction commits."""
    if values["dispatched_at"] is None:
        db.session.info.setdefault("outbox", []).append(values["id"])
    else:
        db.session.info.setdefault("outbox_marked", []).append((values["id"], values["queue"]))


def queue_name(name: str) -> str:
    return f"{current_app.config.get('RQ_QUEUE_PREFIX', '')}{name}"


def resolve(job: str) -> Callable[..., Any]:
    module, _, name = job.rpartition(".")
    return getattr(importlib.import_module(module), name)


def job_timeout(job: str) -> int:
    """Seconds one attempt of `job` may run before RQ stops it."""
    return LONG_JOBS.get(job, int(current_app.config.get("JOB_TIMEOUT_SECONDS", 30)))


def retry_delay(attempt: int) -> float:
    """Seconds to wait after attempt number `attempt` (1, 2, ...) failed."""
    intervals = list(current_app.config.get("JOB_RETRY_INTERVALS") or RETRY_INTERVALS)
    return float(intervals[min(attempt, len(intervals)) - 1])


def dispatch_pending(meta: dict[str, Any] | None = None) -> None:
    """Send the jobs this session wrote, now that its transaction has committed; from
    a request, off its critical path. `meta` goes with each job to RQ (read in the
    request: the hand-over thread does not see the request's context)."""
    if not db.session.registry.has():  # no session this request: it wrote nothing
        return
    ids = db.session.info.pop("outbox", [])
    marked = db.session.info.pop("outbox_marked", [])
    if not ids and not marked:
        return
    if meta is None and current_request_id():
        # The request that asked for the jobs; workers.job logs under it.
        meta = {"request_id": current_request_id()}
    if current_app.config.get("REDIS_URL") and has_request_context():
        from .handover import handover

        handover.submit(current_app._get_current_object(),  # type: ignore[attr-defined]
                        current_app.config["REDIS_URL"], ids, meta, marked)
    else:
        dispatch(ids + [message_id for message_id, *_ in marked], meta)


def discard_pending() -> None:
    db.session.info.pop("outbox", None)
    db.session.info.pop("outbox_marked", None)


def dispatch(ids: Iterable[uuid.UUID], meta: dict[str, Any] | None = None) -> None:
    if current_app.config.get("REDIS_URL"):
        push(list(ids), redis.get(), meta)
    else:
        for message_id in ids:
            run_inline(message_id)


# -- attempts ------------------------------------------------------------------------------

def current_attempt() -> tuple[int, int] | None:
    """(attempt, max attempts) of the outbox job running now; None outside one."""
    return _attempt_var.get()


def current_message_id() -> uuid.UUID | None:
    """The outbox row of the job running now (None for a job queued straight to RQ):
    a job that works through a list can take off its own row what it has done, so an
    attempt after a failure does not do it again."""
    return _message_var.get()


def last_attempt() -> bool:
    """Whether the job running now has no retry left (called directly: no retry)."""
    attempt = _attempt_var.get()
    return attempt is None or attempt[0] >= attempt[1]


@contextmanager
def _attempt(number: int, most: int, message_id: uuid.UUID | None = None) -> Iterator[None]:
    token = _attempt_var.set((number, most))
    message = _message_var.set(message_id)
    try:
        yield
    finally:
        _message_var.reset(message)
        _attempt_var.reset(token)


def _begin(message_id: uuid.UUID) -> OutboxMessage | None | bool:
    """Count the attempt and take its lease; False if the job is done already, None
    if the outbox has no such row (a job queued straight to RQ)."""
    session = db.session
    message = session.get(OutboxMessage, message_id, populate_existing=True)
    if message is None or message.due_at is None:
        session.rollback()
        return None if message is None else False
    now = utcnow()
    message.attempts += 1
    message.due_at = now + timedelta(seconds=job_timeout(message.job)) + LEASE_GRACE
    session.commit()
    return message


def _finish(message_id: uuid.UUID, attempt: int, error: BaseException | None) -> bool:
    """Record how an attempt ended; True if another attempt is due."""
    session = db.session
    most = int(current_app.config["JOB_MAX_ATTEMPTS"])
    now = utcnow()
    # Done: an error kept says it gave up (/metrics counts those); success clears it.
    values: dict[str, Any] = {"due_at": None, "done_at": now, "last_error": None}
    again = error is not None and attempt < most
    if error is not None:
        values["last_error"] = repr(error)[:2000]
    if again:
        values = {"due_at": now + timedelta(seconds=retry_delay(attempt)),
                  "last_error": values["last_error"]}
    session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values))
    session.commit()
    return again


def run_attempt(message_id: uuid.UUID, func: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    """One attempt of an outbox job handed to a worker: counted and leased before it
    runs, marked done (or due again) right after. A copy of a job that is done
    already does nothing."""
    session = db.session
    message = _begin(message_id)
    if message is False:
        log.info("job %s is done already", message_id)
        return "done already"
    if message is None:
        return run_plain(func, args, kwargs)
    assert isinstance(message, OutboxMessage)
    attempt, most = message.attempts, int(current_app.config["JOB_MAX_ATTEMPTS"])
    job = message.job
    try:
        with _attempt(attempt, most, message_id):
            result = func(*args, **kwargs)
        session.commit()
    except BaseException as error:  # AttemptOverran (and a worker told to stop) too
        session.rollback()
        try:
            again = _finish(message_id, attempt, error)
            log.warning("job %s failed (attempt %d of %d)%s: %r", job, attempt, most,
                        "; it will be retried" if again else "", error)
        except Exception:  # the lease lapses and the relay sends it again
            session.rollback()
            log.exception("could not record the failure of job %s", message_id)
        raise
    _finish(message_id, attempt, None)
    return result


def run_plain(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        result = func(*args, **kwargs)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return result


def run_inline(message_id: uuid.UUID) -> None:
    """Run an outbox job in this process, retrying a failure at once (after a short
    pause) up to JOB_MAX_ATTEMPTS times; the job can ask `last_attempt()`."""
    session = db.session
    pause = float(current_app.config.get("JOB_INLINE_RETRY_PAUSE", 0.05))
    most = int(current_app.config["JOB_MAX_ATTEMPTS"])
    while True:
        message = _begin(message_id)
        if not isinstance(message, OutboxMessage):
            return
        attempt, job, kwargs = message.attempts, message.job, dict(message.kwargs)
        request_id = message.request_id or current_request_id()
        message.dispatched_at = utcnow()
        session.commit()
        try:
            with _attempt(attempt, most, message_id), request_id_set(request_id):
                resolve(job)(**kwargs)
            session.commit()
        except Exception as error:  # a failed job must not fail the request that queued it
            session.rollback()
            log.exception("job %s failed in-process (attempt %d of %d)", job, attempt, most)
            if not _finish(message_id, attempt, error):
                return
            time.sleep(pause * 2 ** (attempt - 1))
            continue
        _finish(message_id, attempt, None)
        return


# -- hand-over and relay -------------------------------------------------------------------

# Seconds RQ keeps a job's result, and a failed job.
RESULT_TTL, FAILURE_TTL = 3600, 7 * 24 * 3600


def rq_options(job: str) -> dict[str, Any]:
    """RQ's settings for an outbox job, the same wherever its RQ job is built (here, or
    by a worker for an id handed over alone: workers/rqjob.py)."""
    return {"timeout": job_timeout(job), "result_ttl": RESULT_TTL, "failure_ttl": FAILURE_TTL}


def queue_key(queue: str) -> str:
    """The Redis list RQ's queue `queue` keeps its job ids in."""
    from rq import Queue

    return f"{Queue.redis_queue_namespace_prefix}{queue_name(queue)}"


def rq_enqueue(connection: Redis, message_id: uuid.UUID, job: str, queue: str,
                kwargs: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
    from rq import Queue

    options = rq_options(job)
    Queue(queue_name(queue), connection=connection).enqueue(
        job, kwargs=kwargs, job_id=str(message_id), job_timeout=options.pop("timeout"),
        meta=meta or None, **options)


# A job whose outbox row was written marked handed over: (id, queue). Only its id goes
# to Redis; the worker that takes it builds its RQ job from the row (workers/rqjob.py).
Marked = tuple[uuid.UUID, str]


def rq_meta(request_id: str | None) -> dict[str, Any] | None:
    """What goes with a job to RQ: the id of the request that wrote it (workers.job
    logs under it)."""
    return {"request_id": request_id} if request_id else None


def push(ids: list[uuid.UUID], connection: Redis | None,
         meta: dict[str, Any] | None = None) -> int:
    """push_batches for one batch of ids, with one `meta` for all of them."""
    return push_batches([(ids, meta)], connection)


def push_batches(batches: list[tuple[Any, ...]], connection: Redis | None) -> int:
    """Hand these jobs to RQ right after their commit (no status checks: they are new).
    A batch is (ids, meta) or (ids, meta, marked): its jobs go with its `meta`. One
    statement takes the ids: it marks the rows never handed over nor begun as handed
    over (with the lease a queued job has) and returns what each job needs, so no
    attempt can begin before the mark; each goes to RQ as a whole job. `marked` jobs
    were written marked (a claim's: see outbox_values) and need no statement: only
    their ids go onto their queues' lists, the worker that pops one builds its job from
    the row (the API process does the least per claim). Then one Redis transaction
    queues them all; if it fails, none counts as handed over and every one is due again
    at once, for the relay (a job queued twice is run once: see run_attempt)."""
    assert connection is not None
    meta_of: dict[uuid.UUID, dict[str, Any] | None] = {}
    bare: list[Marked] = []
    for ids, meta, *rest in batches:
        meta_of.update((message_id, meta) for message_id in ids)
        if rest:
            bare += rest[0]
    whole: list[tuple[uuid.UUID, str, str, dict[str, Any], dict[str, Any] | None]] = []
    if meta_of:
        session = db.session
        now = utcnow()
        taken = session.connection().execute(_handover_stmt(), {
            "ids": list(meta_of), "now": now, "lease": now + QUEUED_LEASE}).all()
        session.commit()
        order = {message_id: n for n, message_id in enumerate(meta_of)}
        taken.sort(key=lambda row: order[row.id])
        whole = [(message_id, job, queue, dict(kwargs),
                  rq_meta(request_id) or meta_of[message_id])
                 for message_id, job, queue, kwargs, request_id in taken]
    if not whole and not bare:
        return 0
    try:
        _rq_enqueue_many(connection, whole, bare)
    except RedisError as error:
        count = len(whole) + len(bare)
        log.warning("queue unavailable, %d job(s) stay in the outbox: %s", count, error)
        _not_handed_over([message_id for message_id, *_ in whole + bare])
        return 0
    return len(whole) + len(bare)


@cache
def _handover_stmt() -> Any:
    """Built once: every job but a claim's is handed over by it."""
    table = OutboxMessage.__table__
    return (
        update(table)
        .where(table.c.id.in_(bindparam("ids", expanding=True, type_=table.c.id.type)),
               table.c.attempts == 0, table.c.due_at.is_not(None),
               table.c.dispatched_at.is_(None))
        .values(dispatched_at=bindparam("now", type_=table.c.dispatched_at.type),
                due_at=bindparam("lease", type_=table.c.due_at.type))
        .returning(table.c.id, table.c.job, table.c.queue, table.c.kwargs,
                   table.c.request_id))


def _rq_enqueue_many(connection: Redis,
                     whole: list[tuple[uuid.UUID, str, str, dict[str, Any], dict[str, Any] | None]],
                     bare: list[Marked]) -> None:
    """What rq_enqueue does for each of `whole`, and an RPUSH of each of `bare`'s ids
    onto its queue's list, in one Redis transaction (one round trip); ids of one queue
    alone (a claim's) in one RPUSH, which needs no transaction."""
    ids_of: dict[str, list[str]] = {}
    for message_id, queue in bare:
        ids_of.setdefault(queue, []).append(str(message_id))
    if not whole and len(ids_of) == 1:
        [(queue, ids)] = ids_of.items()
        connection.rpush(queue_key(queue), *ids)
        return
    pipeline = connection.pipeline()
    if whole:
        from rq import Queue

        by_queue: dict[str, list[Any]] = {}
        for message_id, job, queue, kwargs, meta in whole:
            by_queue.setdefault(queue, []).append(Queue.prepare_data(
                job, kwargs=kwargs, job_id=str(message_id), meta=meta or None,
                **rq_options(job)))
        for queue, prepared in by_queue.items():
            Queue(queue_name(queue), connection=connection).enqueue_many(
                prepared, pipeline=pipeline)
    for queue, ids in ids_of.items():
        pipeline.rpush(queue_key(queue), *ids)
    pipeline.execute()


def _not_handed_over(ids: list[uuid.UUID]) -> None:
    # Due for the relay now, unless an attempt began meanwhile (it holds its own lease).
    session = db.session
    session.rollback()
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.attempts == 0,
               OutboxMessage.due_at.is_not(None))
        .values(dispatched_at=None, due_at=utcnow()))
    session.commit()
