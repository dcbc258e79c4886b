"""Scheduled clearing of login records (see workers/cron.py): sessions that ended and
lockout counters left idle, older than LOGIN_RECORDS_RETENTION_DAYS, and login codes
asked for more than a day ago (they live minutes)."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app

from rewards.extensions import db
from rewards.members import purge_login_codes
from rewards.models import utcnow
from rewards.sessions import purge_sessions
from rewards.throttle import purge_throttles

from . import job


def purge_login_records(now: datetime | None = None,
                        days: int | None = None) -> dict[str, int]:
    """Delete what ended more than `days` (default the setting) before `now`."""
    keep = current_app.config["LOGIN_RECORDS_RETENTION_DAYS"] if days is None else days
    now = now or utcnow()
    before = now - timedelta(days=keep)
    return {"sessions": purge_sessions(db.session, before),
            "throttles": purge_throttles(db.session, before),
            "login_codes": purge_login_codes(db.session, now - timedelta(days=1))}


@job
def purge_logins(now: str | None = None) -> dict[str, int]:
    moment = None if now is None else datetime.fromisoformat(now.replace("Z", "+00:00"))
    return purge_login_records(moment)
