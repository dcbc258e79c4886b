"""Retention: action details (where, which route) are kept only as long as they are
needed to check and explain awards. Past ACTION_DETAIL_RETENTION_DAYS an action's
attributes, and the copy in its awards' inputs, keep only plain numbers that are not
coordinates (distance_km, minutes); places, stops, routes and coordinates go. Type,
time, status and points stay (the ledger and dashboards need them).

Stored answers to Idempotency-Key retries older than IDEMPOTENCY_RETENTION_DAYS are
deleted (a retry later than that is judged afresh), and a self-report's photo is deleted
SELF_REPORT_PHOTO_RETENTION_DAYS after the reviewer's decision: the report stays, marked
with when and under which period. Undecided reports keep their photo."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from .models import Action, Award, IdempotencyRecord
from .models.review import Review, SelfReport, SelfReportPhoto

COARSENED = "_coarsened"
COORDINATES = frozenset({"lat", "lon", "lng", "latitude", "longitude", "x", "y", "easting",
                         "northing"})
BATCH = 1000


def coarsened(attributes: dict[str, Any] | None) -> dict[str, Any]:
    """What an old action keeps of its attributes."""
    kept: dict[str, Any] = {
        key: value for key, value in (attributes or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
        and key.lower() not in COORDINATES
    }
    kept[COARSENED] = True
    return kept


def coarsen_old_actions(session: Session, now: datetime, days: int) -> int:
    """Coarsen every action that happened more than `days` days before `now` and is not
    coarsened yet, committing every BATCH rows read; how many were coarsened. Safe to
    run twice or to stop half way (a coarsened action is skipped)."""
    cutoff = now - timedelta(days=days)
    done = 0
    after: tuple[datetime, Any] | None = None
    while True:
        stmt = (select(Action.id, Action.occurred_at, Action.attributes)
                .where(Action.occurred_at < cutoff)
                .order_by(Action.occurred_at, Action.id).limit(BATCH))
        if after is not None:
            stmt = stmt.where(or_(Action.occurred_at > after[0],
                                  and_(Action.occurred_at == after[0], Action.id > after[1])))
        rows = session.execute(stmt).all()
        if not rows:
            return done
        after = (rows[-1].occurred_at, rows[-1].id)
        for action_id, _, attributes in rows:
            if (attributes or {}).get(COARSENED):
                continue
            session.execute(update(Action).where(Action.id == action_id)
                            .values(attributes=coarsened(attributes))
                            .execution_options(synchronize_session=False))
            for award_id, inputs in session.execute(
                    select(Award.id, Award.inputs).where(Award.action_id == action_id)).all():
                inputs = dict(inputs or {})
                inputs["attributes"] = coarsened(inputs.get("attributes"))
                session.execute(update(Award).where(Award.id == award_id)
                                .values(inputs=inputs)
                                .execution_options(synchronize_session=False))
            done += 1
        session.commit()


def purge_idempotency_records(session: Session, now: datetime, days: int) -> int:
    """Delete stored idempotent answers made more than `days` days before `now`, BATCH
    rows a transaction; how many were deleted."""
    cutoff = now - timedelta(days=days)
    done = 0
    while True:
        ids = session.scalars(select(IdempotencyRecord.id)
                              .where(IdempotencyRecord.created_at < cutoff)
                              .order_by(IdempotencyRecord.created_at).limit(BATCH)).all()
        if not ids:
            return done
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(ids))
                        .execution_options(synchronize_session=False))
        session.commit()
        done += len(ids)


def photo_removed_text(report: SelfReport) -> str | None:
    """What the review and the export say in place of a photo removed under retention."""
    if report.photo_removed_at is None:
        return None
    return f"photo removed after {report.photo_removed_after_days} days"


def remove_decided_photos(session: Session, now: datetime, days: int) -> int:
    """Delete the photos of self-reports decided more than `days` days before `now`,
    marking their reports, BATCH a transaction; how many were removed. A report still
    waiting for a decision keeps its photo."""
    cutoff = now - timedelta(days=days)
    done = 0
    while True:
        ids = session.scalars(
            select(SelfReport.id)
            .join(SelfReportPhoto, SelfReportPhoto.self_report_id == SelfReport.id)
            .join(Review, Review.action_id == SelfReport.action_id)
            .where(Review.created_at < cutoff)
            .order_by(SelfReport.id).limit(BATCH)).all()
        if not ids:
            return done
        session.execute(delete(SelfReportPhoto).where(SelfReportPhoto.self_report_id.in_(ids))
                        .execution_options(synchronize_session=False))
        session.execute(update(SelfReport).where(SelfReport.id.in_(ids))
                        .values(photo_removed_at=now, photo_removed_after_days=days)
                        .execution_options(synchronize_session=False))
        session.commit()
        done += len(ids)
