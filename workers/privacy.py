"""Scheduled privacy jobs (see workers/cron.py): coarsening old actions' details,
deleting old idempotent answers and decided self-reports' photos."""

from __future__ import annotations

import logging

from flask import current_app

from rewards.extensions import db
from rewards.models import utcnow
from rewards.retention import (
    coarsen_old_actions,
    purge_idempotency_records,
    remove_decided_photos,
)

from . import job

log = logging.getLogger("rewards.retention")


@job
def apply_retention() -> dict[str, int]:
    config, now = current_app.config, utcnow()
    days = int(config["ACTION_DETAIL_RETENTION_DAYS"])
    count = coarsen_old_actions(db.session, now, days)
    log.info("retention: %d actions older than %d days coarsened", count, days)
    answer_days = int(config["IDEMPOTENCY_RETENTION_DAYS"])
    answers = purge_idempotency_records(db.session, now, answer_days)
    log.info("retention: %d idempotent answers older than %d days deleted", answers,
             answer_days)
    photo_days = int(config["SELF_REPORT_PHOTO_RETENTION_DAYS"])
    photos = remove_decided_photos(db.session, now, photo_days)
    log.info("retention: %d self-report photos decided over %d days ago deleted", photos,
             photo_days)
    return {"coarsened": count, "days": days,
            "idempotency_records": answers, "idempotency_days": answer_days,
            "photos_removed": photos, "photo_days": photo_days}
