"""Reads what the controls (controls.py) decide on: members' stored actions near the
ones being checked. One statement per batch whatever its size."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ..models import Action
from .controls import ControlBook, ControlSettings, Sighting, Window, history_windows, position_of

# Each (member, time range) one range scan of ix_actions_member_occurred; the statement's
# text never changes, so it is prepared once. `->` keeps lat/lon as JSON values: a
# source's odd value (a string, an object) cannot fail a cast here.
_HISTORY_SQL = text("""
SELECT a.member_id, a.type_code, a.occurred_at, a.attributes -> 'lat', a.attributes -> 'lon'
FROM unnest(CAST(CAST(:members AS text) AS uuid[]),
            CAST(CAST(:starts AS text) AS timestamptz[]),
            CAST(CAST(:ends AS text) AS timestamptz[])) AS w(member_id, starts, ends)
CROSS JOIN LATERAL (
    SELECT member_id, type_code, occurred_at, attributes FROM actions
    WHERE member_id = w.member_id AND occurred_at >= w.starts AND occurred_at <= w.ends
      AND status NOT IN ('revoked', 'pending')
) AS a
""")


def _array(values: Iterable[Any]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _sighting(type_code: str, occurred_at: datetime, lat: Any, lon: Any) -> Sighting:
    return Sighting(type_code, occurred_at, position_of({"lat": lat, "lon": lon}))


def load_history(session: Session, windows: Mapping[uuid.UUID, list[Window]]
                 ) -> dict[uuid.UUID, list[Sighting]]:
    """Each member's stored actions inside their windows: not revoked, and not pending
    (recorded but not yet awarded: the controls check those when they are awarded)."""
    history: dict[uuid.UUID, list[Sighting]] = {}
    if not windows:
        return history
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        flat = [(member_id, start, end) for member_id, ranges in windows.items()
                for start, end in ranges]
        rows = session.execute(_HISTORY_SQL, {
            "members": _array(row[0] for row in flat),
            "starts": _array(row[1].isoformat() for row in flat),
            "ends": _array(row[2].isoformat() for row in flat),
        })
        for member_id, type_code, occurred_at, lat, lon in rows:
            history.setdefault(member_id, []).append(
                _sighting(type_code, occurred_at, lat, lon))
        return history
    # Elsewhere (SQLite: one writer, small schemes) one select over the batch's span,
    # narrowed to each member's windows here.
    lowest = min(start for ranges in windows.values() for start, _ in ranges)
    highest = max(end for ranges in windows.values() for _, end in ranges)
    members = sorted(windows)
    for start_at in range(0, len(members), 1000):
        rows = session.execute(
            select(Action.member_id, Action.type_code, Action.occurred_at,
                   func.json_extract(Action.attributes, "$.lat"),
                   func.json_extract(Action.attributes, "$.lon"))
            .where(Action.member_id.in_(members[start_at:start_at + 1000]),
                   Action.occurred_at >= lowest, Action.occurred_at <= highest,
                   Action.status.not_in(("revoked", "pending")))
        )
        for member_id, type_code, occurred_at, lat, lon in rows:
            if any(start <= occurred_at <= end for start, end in windows[member_id]):
                history.setdefault(member_id, []).append(
                    _sighting(type_code, occurred_at, lat, lon))
    return history


def control_settings() -> ControlSettings:
    return ControlSettings.from_config(current_app.config)


def control_book(session: Session,
                 actions: Iterable[tuple[uuid.UUID, str, datetime, Mapping[str, Any] | None]],
                 settings: ControlSettings | None = None) -> ControlBook:
    """A ControlBook for (member, type, occurred_at, attributes) of the actions about to
    be checked, loaded with their members' stored actions nearby (one statement, none
    when every control is off or none applies)."""
    settings = settings or control_settings()
    if not settings.enabled:
        return ControlBook(settings)
    windows = history_windows(
        ((member_id, type_code, moment, position_of(attributes) is not None)
         for member_id, type_code, moment, attributes in actions), settings)
    return ControlBook(settings, load_history(session, windows))
