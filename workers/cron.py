"""Schedules for the scheduler: `rewards cron` (or `rq cron workers.cron`)."""

import os

from rq import cron

from workers.awarding import award_queued, queue_stray_actions
from workers.dashboard import rebuild_recent, refresh_rollups
from workers.ledger import expire_points, release_pending, verify_ledger
from workers.logins import purge_logins
from workers.outbox import purge_done, relay
from workers.privacy import apply_retention
from workers.rewards import expire_vouchers, fail_stuck_rewards, remind_expiring_vouchers

_default = os.environ.get("RQ_QUEUE_PREFIX", "") + "default"
_rewards = os.environ.get("RQ_QUEUE_PREFIX", "") + "rewards"

# Outbox jobs due (never handed over, lost by Redis, abandoned by a killed worker, or
# waiting for a retry) go out within a minute even if no worker relays them.
cron.register(relay, queue_name=_default, interval=60)
# Deferred awarding: queued batches a lost job left are awarded within the minute, and
# pending actions in no queued batch (there should be none) are queued nightly.
cron.register(award_queued, queue_name=_default, interval=60, job_timeout=600)
cron.register(queue_stray_actions, queue_name=_default, cron="10 3 * * *", job_timeout=1800)
# Outbox rows of jobs done more than a week ago go, daily at a quiet hour (UTC).
cron.register(purge_done, queue_name=_default, cron="50 3 * * *", job_timeout=1800)
# Pending points become spendable within an hour of their hold ending.
cron.register(release_pending, queue_name=_default, cron="7 * * * *", job_timeout=1800)
# Lots past their expiry go once a day, at a quiet hour (UTC).
cron.register(expire_points, queue_name=_default, cron="30 2 * * *", job_timeout=3600)
# The whole ledger's invariants, checked after expiry, before the day's traffic (UTC).
cron.register(verify_ledger, queue_name=_default, cron="30 4 * * *", job_timeout=3600)
# Vouchers past their expiry: hourly, so points that come back do so the same day.
cron.register(expire_vouchers, queue_name=_rewards, cron="15 * * * *", job_timeout=1800)
# "Your voucher expires in 3 days": once a day at a civil hour (UTC), once per voucher.
cron.register(remind_expiring_vouchers, queue_name=_rewards, cron="0 9 * * *",
              job_timeout=1800)
# Rewards whose issuing never finished and whose job the outbox gave up on.
cron.register(fail_stuck_rewards, queue_name=_rewards, cron="40 * * * *", job_timeout=600)
# Dashboard rollups: what changed in the last minute; the last two months whole nightly.
cron.register(refresh_rollups, queue_name=_default, interval=60, job_timeout=600)
cron.register(rebuild_recent, queue_name=_default, cron="50 3 * * *", job_timeout=3600)
# Old actions' places and routes are coarsened (ACTION_DETAIL_RETENTION_DAYS), nightly.
cron.register(apply_retention, queue_name=_default, cron="20 3 * * *", job_timeout=3600)
# Login sessions that ended and idle lockout counters, past LOGIN_RECORDS_RETENTION_DAYS.
cron.register(purge_logins, queue_name=_default, cron="40 3 * * *", job_timeout=1800)
