"""Importing CSV uploads for sources without an API (see rewards/actions/csv_import.py)."""

from __future__ import annotations

import logging
import uuid

from rewards import jobs
from rewards.actions.csv_import import fail_import, run_import
from rewards.extensions import db

from . import job

log = logging.getLogger("workers.imports")


@job
def import_csv(import_id: str) -> str:
    """Import one upload. Safe to run again: it goes on from the last batch reported.
    After the last retry fails the import is `failed`, with the error to show staff."""
    upload_id = uuid.UUID(import_id)
    try:
        return run_import(db.session, upload_id)
    except Exception as error:
        db.session.rollback()
        log.exception("CSV import %s failed", import_id)
        if jobs.last_attempt():
            fail_import(db.session, upload_id, f"the import stopped: {error}")
        raise
