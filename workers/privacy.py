"""Scheduled privacy jobs (see workers/cron.py): coarsening old actions' details."""

from __future__ import annotations

import logging

from flask import current_app

from rewards.extensions import db
from rewards.models import utcnow
from rewards.retention import coarsen_old_actions

from . import job

log = logging.getLogger("rewards.retention")


@job
def apply_retention() -> dict[str, int]:
    days = int(current_app.config["ACTION_DETAIL_RETENTION_DAYS"])
    count = coarsen_old_actions(db.session, utcnow(), days)
    log.info("retention: %d actions older than %d days coarsened", count, days)
    return {"coarsened": count, "days": days}
