"""Schedules for `rq cron` (see docker-entrypoint.sh): `rq cron workers.cron`."""

import os

from rq import cron

from workers.ledger import expire_points, release_pending
from workers.outbox import relay

_default = os.environ.get("RQ_QUEUE_PREFIX", "") + "default"

# Jobs left in the outbox while Redis was down go out within a minute of its return.
cron.register(relay, queue_name=_default, interval=60)
# Pending points become spendable within an hour of their hold ending.
cron.register(release_pending, queue_name=_default, cron="7 * * * *", job_timeout=1800)
# Lots past their expiry go once a day, at a quiet hour (UTC).
cron.register(expire_points, queue_name=_default, cron="30 2 * * *", job_timeout=3600)
