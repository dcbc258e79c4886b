"""Scheduled runs that move points or tell residents, sent through the outbox.

`rq cron` puts a job straight into Redis: nothing in the database says it was due. A
run lost with Redis (a restart without persistence empties the queues), or cut short
with its worker (SIGKILL, out of memory), waited for its next time: a day for the
expiry run. And two schedulers running at once (one started by mistake, or the old
and the new during a rolling deploy) each queued every run.

So these runs are outbox jobs. Every minute `write_due` (an ordinary `rq cron` job)
writes, for each run below, the outbox row of its latest time that has passed, with
an id made from the job and that time: a second scheduler, a second pass or a run
queued again writes no second row (ON CONFLICT DO NOTHING). The outbox then does the
rest as for any job (docs/jobs.md): the row is leased while an attempt runs, sent again
if Redis lost it or its worker died, retried after a failure, done once. A time missed
while no scheduler ran (or Redis was down) is caught up on the next pass, once."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter  # rq's own dependency, for its cron strings

from rewards import jobs
from rewards.bulk import is_postgres
from rewards.extensions import db
from rewards.models import OutboxMessage, utcnow

from . import job

log = logging.getLogger("workers.schedule")

# Outbox ids of scheduled runs: uuid5(SCHEDULED, "<job>@<time>").
SCHEDULED = uuid.UUID("6f1d2c1e-8a55-4c0e-9a57-3c1f0e2b7d41")


@dataclass(frozen=True)
class Run:
    job: str
    cron: str  # UTC
    queue: str  # its time limit (and so its lease) is in rewards.jobs.LONG_JOBS


RUNS = (
    # Pending points become spendable within an hour of their hold ending.
    Run("workers.ledger.release_pending", "7 * * * *", "default"),
    # Lots past their expiry go once a day, at a quiet hour.
    Run("workers.ledger.expire_points", "30 2 * * *", "default"),
    # Pending actions in no award batch (there should be none) are queued nightly.
    Run("workers.awarding.queue_stray_actions", "10 3 * * *", "default"),
    # Vouchers past their expiry: hourly, so points that come back do so the same day.
    Run("workers.rewards.expire_vouchers", "15 * * * *", "rewards"),
    # "Your voucher expires in 3 days": once a day at a civil hour, once per voucher.
    Run("workers.rewards.remind_expiring_vouchers", "0 9 * * *", "rewards"),
    # Rewards whose issuing never finished and whose job the outbox gave up on.
    Run("workers.rewards.fail_stuck_rewards", "40 * * * *", "rewards"),
)


def latest_time(run: Run, now: datetime) -> datetime:
    """The latest time `run` was due at or before `now` (UTC)."""
    moment = now.astimezone(UTC).replace(second=0, microsecond=0)
    if croniter.match(run.cron, moment):
        return moment
    return croniter(run.cron, moment).get_prev(datetime).astimezone(UTC)


def outbox_id(run: Run, at: datetime) -> uuid.UUID:
    return uuid.uuid5(SCHEDULED, f"{run.job}@{at.astimezone(UTC):%Y-%m-%dT%H:%MZ}")


def write_runs(now: datetime | None = None) -> list[uuid.UUID]:
    """Write (committed) the outbox row of each run's latest time that has none yet;
    the ids of the rows written now."""
    session = db.session
    now = now or utcnow()
    rows = [{"id": outbox_id(run, latest_time(run, now)), "job": run.job,
             "queue": run.queue, "kwargs": {}, "due_at": now, "attempts": 0,
             "created_at": now, "request_id": f"schedule:{run.job.rpartition('.')[2]}"}
            for run in RUNS]
    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    statement = dialect_insert(OutboxMessage).values(rows).on_conflict_do_nothing(
        index_elements=["id"]).returning(OutboxMessage.id)
    written = list(session.scalars(statement))
    session.commit()
    return written


@job
def write_due() -> int:
    """Every minute (workers/cron.py): the rows of runs that fell due, handed to Redis
    at once (if that fails they stay due, and the relay sends them)."""
    written = write_runs()
    if written:
        log.info("%d scheduled run(s) due: %s", len(written),
                 ", ".join(str(message_id) for message_id in written))
        try:
            jobs.dispatch(written)
        except Exception:
            db.session.rollback()
            log.exception("could not hand the scheduled runs over; the relay will")
    return len(written)
