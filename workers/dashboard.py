"""Scheduled dashboard jobs (see workers/cron.py): bring the rollups up to date every
minute with what changed, and nightly rebuild the last two months whole, which also
moves members who changed ward."""

from __future__ import annotations

from datetime import timedelta

from rewards.dashboard.filters import today
from rewards.dashboard.refresh import rebuild, refresh
from rewards.extensions import db

from . import job

NIGHTLY_DAYS = 62


@job
def refresh_rollups() -> dict[str, object]:
    report = refresh(db.session)
    return {"days": report.days, "ledger_days": report.ledger_days, "months": report.months,
            "took_ms": report.took_ms, "skipped": report.skipped}


@job
def rebuild_recent(days: int = NIGHTLY_DAYS) -> dict[str, object]:
    last = today()
    report = rebuild(db.session, last - timedelta(days=days - 1), last)
    db.session.commit()
    return {"days": report.days, "took_ms": report.took_ms}
