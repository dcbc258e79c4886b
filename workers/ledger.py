"""Scheduled ledger jobs (see workers/cron.py): expiring lots daily, releasing pending
points hourly. Both are safe to run twice or to overlap; see rewards/ledger/runs.py."""

from __future__ import annotations

from datetime import datetime

from rewards.extensions import db
from rewards.ledger.runs import expire_all, release_all
from rewards.models import utcnow

from . import job


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
