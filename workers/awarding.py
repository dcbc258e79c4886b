"""Deferred awarding (AWARDING = "deferred", see rewards/awarding/deferred.py): the job a
recorded batch queues, and the sweep the scheduler runs every minute."""

from __future__ import annotations

import time

from rewards.awarding import award_queued as award_batches
from rewards.awarding import queue_strays
from rewards.extensions import db

from . import job

# A job queued by one batch also takes the batches queued meanwhile, a run (up to
# MOST_BATCHES of them) per transaction, starting runs for this many seconds at most:
# well inside the job's timeout; the next job or the sweep takes the rest.
RUN_SECONDS = 10.0


@job
def award_queued() -> dict[str, int]:
    """Award what is queued, a run (many batches) per transaction, until none is left
    or RUN_SECONDS have passed."""
    done = {"batches": 0, "actions": 0, "points": 0}
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        run = award_batches(db.session)
        db.session.commit()
        if not run.batches:
            break
        for key, value in run.as_dict().items():
            done[key] += value
    return done


@job
def queue_stray_actions() -> dict[str, int]:
    """Nightly: pending actions of the last days that no queued batch names (a bug, if
    any) are queued again; the every-minute award_queued then awards them."""
    return {"strays": queue_strays(db.session)}
