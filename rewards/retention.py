"""Retention: action details (where, which route) are kept only as long as they are
needed to check and explain awards. Past ACTION_DETAIL_RETENTION_DAYS an action's
attributes, and the copy in its awards' inputs, keep only plain numbers that are not
coordinates (distance_km, minutes); places, stops, routes and coordinates go. Type,
time, status and points stay (the ledger and dashboards need them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from .models import Action, Award

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
