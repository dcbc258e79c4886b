"""The outbox's scheduled jobs: sending rows that are due, forgetting rows long done."""

from __future__ import annotations

from datetime import timedelta

from rewards import relay as outbox_relay
from rewards.models import utcnow

from . import job


@job
def relay() -> int:
    return outbox_relay.relay()


# Rows of finished jobs are kept this long (for looking into what happened), then go.
KEEP_DONE = timedelta(days=7)


@job
def purge_done() -> int:
    return outbox_relay.purge_done(utcnow() - KEEP_DONE)
