"""Deferred awarding (AWARDING = "deferred", see rewards/awarding/deferred.py): the job a
recorded batch queues, and the sweep the scheduler runs every minute."""

from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy import select, true

from rewards.awarding import MOST_BATCHES, queue_strays
from rewards.awarding import award_queued as award_batches
from rewards.extensions import db
from rewards.models import AwardQueue

from . import job

log = logging.getLogger("rewards.awarding")

# A job queued by one batch also takes the batches queued meanwhile, a run (up to
# MOST_BATCHES of them) per transaction, starting runs for this many seconds at most:
# well inside the job's timeout; the next job or the sweep takes the rest.
RUN_SECONDS = 10.0


@job
def award_queued() -> dict[str, int]:
    """Award what is queued, a run (many batches) per transaction, until none is left
    or RUN_SECONDS have passed. A run that fails is rolled back and its batches are
    taken one at a time: a batch that fails alone is logged and left queued (for a
    fix; it is tried again by the next job), and the batches behind it go on."""
    done = {"batches": 0, "actions": 0, "points": 0, "failed": 0}
    deadline = time.monotonic() + RUN_SECONDS
    failing: set[uuid.UUID] = set()
    one_at_a_time = False
    while time.monotonic() < deadline:
        try:
            run = award_batches(db.session, most=1 if one_at_a_time else MOST_BATCHES,
                                skip=failing)
            db.session.commit()
        except Exception:
            db.session.rollback()
            if one_at_a_time:
                batch = _oldest(failing)
                if batch is None:
                    raise
                failing.add(batch)
                log.exception("award batch %s failed; left queued", batch)
            one_at_a_time = True
            continue
        if not run.batches:
            break
        for key, value in run.as_dict().items():
            if key in done:
                done[key] += value
    done["failed"] = len(failing)
    return done


def _oldest(leaving_out: set[uuid.UUID]) -> uuid.UUID | None:
    """The batch a one-batch run takes first (what failed), or None."""
    return db.session.scalar(
        select(AwardQueue.id).where(AwardQueue.id.not_in(list(leaving_out)) if leaving_out
                                    else true())
        .order_by(AwardQueue.created_at, AwardQueue.id).limit(1))


@job
def queue_stray_actions() -> dict[str, int]:
    """Nightly: pending actions of the last days that no queued batch names (a bug, if
    any) are queued again; the every-minute award_queued then awards them."""
    return {"strays": queue_strays(db.session)}
