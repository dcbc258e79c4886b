"""Scheduled ledger jobs (see workers/cron.py): expiring lots daily, releasing pending
points hourly (both safe to run twice or to overlap; see rewards/ledger/runs.py), and
checking the whole ledger's invariants nightly."""

from __future__ import annotations

import logging
from datetime import datetime

from rewards.extensions import db
from rewards.ledger import verify_snapshot
from rewards.ledger.runs import expire_all, release_all
from rewards.models import utcnow

from . import job

log = logging.getLogger("rewards.ledger")
# Problems logged one by one; past this many, a count says how many more.
LOGGED_PROBLEMS = 50


def _moment(now: str | None) -> datetime:
    # RQ passes arguments as JSON-friendly values: an RFC 3339 string, or nothing.
    if now is None:
        return utcnow()
    return datetime.fromisoformat(now.replace("Z", "+00:00"))


@job
def expire_points(now: str | None = None) -> dict[str, object]:
    """Expire what is left of lots past their expiry (as of `now`, default the present)."""
    return expire_all(db.session, _moment(now)).as_dict()


@job
def release_pending(now: str | None = None) -> dict[str, object]:
    """Make pending points whose hold has passed spendable."""
    return release_all(db.session, _moment(now)).as_dict()


@job
def verify_ledger() -> dict[str, object]:
    """`rewards ledger verify` as a scheduled job, on one snapshot while the scheme runs:
    each problem is logged as an error (the first LOGGED_PROBLEMS of them), so a
    council's monitoring sees the ledger break the night it happens."""
    problems = verify_snapshot(db.session)
    for problem in problems[:LOGGED_PROBLEMS]:
        log.error("ledger verify: %s", problem)
    if len(problems) > LOGGED_PROBLEMS:
        log.error("ledger verify: %d more problems", len(problems) - LOGGED_PROBLEMS)
    if not problems:
        log.info("ledger verify: sound")
    return {"problems": len(problems), "first": problems[:LOGGED_PROBLEMS]}
