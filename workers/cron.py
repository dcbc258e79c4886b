"""Schedules for the scheduler: `rewards cron` (or `rq cron workers.cron`)."""

import os

from rq import cron

from workers.awarding import award_queued
from workers.dashboard import rebuild_recent, refresh_rollups
from workers.ledger import verify_ledger
from workers.logins import purge_logins
from workers.outbox import purge_done, relay
from workers.privacy import apply_retention
from workers.schedule import write_due

_default = os.environ.get("RQ_QUEUE_PREFIX", "") + "default"

# Outbox jobs due (never handed over, lost by Redis, abandoned by a killed worker, or
# waiting for a retry) go out within a minute even if no worker relays them.
cron.register(relay, queue_name=_default, interval=60)
# Deferred awarding: queued batches a lost job left are awarded within the minute.
cron.register(award_queued, queue_name=_default, interval=60, job_timeout=600)
# The runs that move points or tell residents (expiry, pending releases, vouchers past
# expiry, reminders, stuck rewards, stray actions; their times are in
# workers/schedule.py RUNS) go through the outbox: written here once per time, however
# many schedulers run, and sent again if Redis loses them or their worker dies.
cron.register(write_due, queue_name=_default, interval=60)
# Outbox rows of jobs done more than a week ago go, daily at a quiet hour (UTC).
cron.register(purge_done, queue_name=_default, cron="50 3 * * *", job_timeout=1800)
# The whole ledger's invariants, checked after expiry, before the day's traffic (UTC).
cron.register(verify_ledger, queue_name=_default, cron="30 4 * * *", job_timeout=3600)
# Dashboard rollups: what changed in the last minute; the last two months whole nightly.
cron.register(refresh_rollups, queue_name=_default, interval=60, job_timeout=600)
cron.register(rebuild_recent, queue_name=_default, cron="50 3 * * *", job_timeout=3600)
# Old actions' places and routes are coarsened (ACTION_DETAIL_RETENTION_DAYS), stored
# idempotent answers deleted (IDEMPOTENCY_RETENTION_DAYS) and decided self-reports'
# photos deleted (SELF_REPORT_PHOTO_RETENTION_DAYS), nightly.
cron.register(apply_retention, queue_name=_default, cron="20 3 * * *", job_timeout=3600)
# Login sessions that ended and idle lockout counters, past LOGIN_RECORDS_RETENTION_DAYS.
cron.register(purge_logins, queue_name=_default, cron="40 3 * * *", job_timeout=1800)
