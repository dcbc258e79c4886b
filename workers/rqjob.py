"""RQ jobs a worker builds from the outbox: a claim's job reaches Redis as its id alone.

The API process only RPUSHes the id of a claim's outbox row onto its queue's list
(rewards.jobs.push_batches): building and saving an RQ job hash there was a fifth of
a claim's cost. RQ looks every job up by id (`Job.fetch`: when a worker pops an id,
and when it lists a queue or cleans its registries), so this job class, given to the
worker (`job_class`), falls back to the outbox row when Redis has no job under an id:
it builds the job as rewards.jobs would have queued it (job, kwargs, queue, timeouts,
the request id as meta), saves it and returns it. Only a row still due is built: for
a row that is done (or unknown, or a database that does not answer) the id stays
unknown, and RQ skips it (`Queue.dequeue_any` passes over ids without a job). Nothing
is lost by skipping: a row not done falls due and the relay sends it again whole."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any

from flask import has_app_context
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import now
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from rewards import jobs
from rewards.extensions import db
from rewards.models import OutboxMessage

from . import _outbox_id, get_app

log = logging.getLogger("workers.rqjob")


class OutboxJob(Job):
    @classmethod
    def fetch(cls, id: str, connection: Redis | None = None, serializer: Any = None) -> Job:
        try:
            return super().fetch(id, connection=connection, serializer=serializer)
        except NoSuchJobError:
            job = _from_outbox(cls, id, connection, serializer)
            if job is None:
                raise
            return job


_COLUMNS = (OutboxMessage.job, OutboxMessage.queue, OutboxMessage.kwargs,
            OutboxMessage.request_id)


def _from_outbox(cls: type[Job], job_id: str, connection: Redis | None,
                 serializer: Any) -> Job | None:
    """The RQ job of outbox row `job_id`, built and saved; None unless the row is due."""
    message_id = _outbox_id(job_id)
    if message_id is None or connection is None:
        return None
    with ExitStack() as stack:
        if not has_app_context():  # a plain `rq worker --job-class ...`
            stack.enter_context(get_app().app_context())
        try:
            # A connection of its own, not the session: this runs between jobs (and in a
            # forking worker's parent), where no transaction may stay open.
            with db.engine.connect() as database:
                row = database.execute(select(*_COLUMNS).where(
                    OutboxMessage.id == message_id, OutboxMessage.due_at.is_not(None))).first()
        except SQLAlchemyError as error:
            log.warning("could not read outbox row %s to build its job (the relay sends it "
                        "again once it is due): %s", job_id, error)
            return None
        if row is None:
            log.info("job %s is done already (or not in the outbox): skipped", job_id)
            return None
        job = cls.create(row.job, kwargs=dict(row.kwargs), connection=connection, id=job_id,
                         origin=jobs.queue_name(row.queue), meta=jobs.rq_meta(row.request_id),
                         status=JobStatus.QUEUED, serializer=serializer,
                         **jobs.rq_options(row.job))
    job.enqueued_at = now()
    job.save()
    return job
