"""Schedules for `rq cron` (see docker-entrypoint.sh): `rq cron workers.cron`."""

import os

from rq import cron

from workers.outbox import relay

# Jobs left in the outbox while Redis was down go out within a minute of its return.
cron.register(relay, queue_name=os.environ.get("RQ_QUEUE_PREFIX", "") + "default", interval=60)
