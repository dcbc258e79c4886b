"""Members joined per day, ward and channel: what reach, retention's cohort sizes and
baseline's member-weeks count, without reading every member."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from ..models import Member
from ..models.dashboard import JoinDay
from .filters import day_bounds


def grouped(first: date | None = None, last: date | None = None) -> Select:
    """(day, ward, desk, members) grouped from the members table."""
    from .sources import day_of

    keys = (day_of(Member.joined_at).label("day"),
            func.coalesce(Member.ward, "").label("ward"),
            Member.enrolled_by.is_not(None).label("desk"))
    stmt = select(*keys, func.count().label("members")).where(Member.joined_at.is_not(None))
    if first is not None and last is not None:
        start, end = day_bounds(first, last)
        stmt = stmt.where(Member.joined_at >= start, Member.joined_at < end)
    return stmt.group_by(*keys)


def build(session: Session) -> None:
    session.execute(delete(JoinDay.__table__))
    session.execute(insert(JoinDay.__table__).from_select(
        ["day", "ward", "desk", "members"], grouped()))


def touched(session: Session, since: datetime) -> set[date]:
    """Join days of members made, erased or moved to another ward since `since`."""
    from .sources import day_of

    return {value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
            for value in session.scalars(
                select(day_of(Member.joined_at)).where(
                    Member.joined_at.is_not(None),
                    or_(Member.created_at >= since, Member.erased_at >= since,
                        Member.ward_changed_at >= since)).distinct())}


def refresh_days(session: Session, days: Iterable[date]) -> None:
    table = JoinDay.__table__
    for day in sorted(set(days)):
        session.execute(delete(table).where(table.c.day == day))
        session.execute(insert(table).from_select(["day", "ward", "desk", "members"],
                                                  grouped(day, day)))
