"""Where a figure reads its numbers: the rollups, or the raw tables grouped on the fly.

Both give the same columns, so one figure's code runs on either: the dashboard reads
the rollups; the tests and bench/dashboard.py read the raw tables too and check the
two agree."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Float, Integer, String, case, func, literal, select, type_coerce
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.elements import ColumnElement

from ..extensions import db
from ..models import Account, Action, ActionType, Member, Posting, PostingLine
from ..models.dashboard import (
    ExpiryDay,
    JoinDay,
    LedgerDay,
    MemberDay,
    MemberHourMonth,
    MemberMonth,
    SpanCell,
    SumCell,
    TenureCell,
)
from .filters import scheme_zone

COUNTED = "accepted"  # flagged actions await a reviewer; revoked ones count for nothing


class Rollups:
    """The rollup tables, kept by rewards.dashboard.refresh."""

    name = "rollups"

    def member_days(self) -> FromClause:
        t = MemberDay.__table__
        return select(t.c.day, t.c.member_id, t.c.type_code, t.c.category, t.c.ward,
                      t.c.actions, t.c.points, t.c.km, t.c.duration_h).subquery("md")

    def member_months(self) -> FromClause:
        t = MemberMonth.__table__
        return select(t.c.month, t.c.member_id, t.c.type_code, t.c.category, t.c.ward,
                      t.c.actions, t.c.points, t.c.km, t.c.duration_h).subquery("mm")

    def member_hours(self) -> FromClause:
        t = MemberHourMonth.__table__
        return select(t.c.month, t.c.member_id, t.c.type_code, t.c.weekday, t.c.hour,
                      t.c.category, t.c.ward, t.c.actions).subquery("mh")

    def ledger_days(self) -> FromClause:
        t = LedgerDay.__table__
        return select(t.c.day, t.c.account, t.c.kind, t.c.points).subquery("ld")

    def expiry_days(self) -> FromClause:
        t = ExpiryDay.__table__
        return select(t.c.day, t.c.expires, t.c.points).subquery("ed")

    def span_cells(self, dim: str) -> FromClause:
        """Span cells of `dim` (see rewards.dashboard.cells)."""
        t = SpanCell.__table__
        return select(t.c.type_code, t.c.category, t.c.ward, t.c.value, t.c.first_period,
                      t.c.next_period, t.c.members).where(t.c.dim == dim).subquery("sc")

    def sum_cells(self, dim: str) -> FromClause:
        t = SumCell.__table__
        return select(t.c.period, t.c.type_code, t.c.category, t.c.ward, t.c.value,
                      t.c.actions, t.c.points, t.c.km, t.c.duration_h).where(
            t.c.dim == dim).subquery("su")

    def join_days(self) -> FromClause:
        t = JoinDay.__table__
        return select(t.c.day, t.c.ward, t.c.desk, t.c.members).subquery("jd")

    def tenure_cells(self) -> FromClause:
        t = TenureCell.__table__
        return select(t.c.cohort, t.c.ward, t.c.type_code, t.c.category, t.c.window,
                      t.c.members, t.c.actions).subquery("tc")


# -- the raw tables, grouped in the database ---------------------------------------

def _local(ts: str | datetime | None, part: str, zone: str) -> Any:
    """SQLite has no time zones: this does what PostgreSQL's timezone() does."""
    if ts is None:
        return None
    moment = ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(ZoneInfo(zone))
    if part == "day":
        return local.date().isoformat()
    if part == "month":
        return local.date().replace(day=1).isoformat()
    if part == "hour":
        return local.hour
    return local.isoweekday()


def _prepare_sqlite() -> None:
    connection = db.session.connection().connection.driver_connection
    connection.create_function("dash_local", 3, _local, deterministic=True)


class Raw:
    """The same columns from actions, members and the ledger, grouped per request."""

    name = "raw"

    def __init__(self) -> None:
        self.zone = scheme_zone().key
        self.sqlite = db.dialect == "sqlite"
        if self.sqlite:
            _prepare_sqlite()

    def _part(self, column: Any, part: str) -> ColumnElement[Any]:
        if self.sqlite:
            result = func.dash_local(column, part, self.zone)
            return type_coerce(result, Date if part in ("day", "month") else Integer)
        local = func.timezone(self.zone, column)
        if part == "day":
            return func.date(local)
        if part == "month":
            return func.date(func.date_trunc("month", local))
        field = "hour" if part == "hour" else "isodow"
        return type_coerce(func.cast(func.extract(field, local), Integer), Integer)

    def _actions(self, *keys: ColumnElement[Any]) -> Any:
        km = type_coerce(Action.attributes["distance_km"].as_float(), Float)
        hours = type_coerce(Action.attributes["hours"].as_float(), Float)
        ward = func.coalesce(Member.ward, "")
        stmt = (
            select(*keys, Action.member_id, Action.type_code,
                   ActionType.category.label("category"), ward.label("ward"),
                   func.count().label("actions"),
                   func.coalesce(func.sum(Action.points), 0).label("points"),
                   func.coalesce(func.sum(km), 0.0).label("km"),
                   func.coalesce(func.sum(hours), 0.0).label("duration_h"))
            .join(ActionType, ActionType.id == Action.action_type_id)
            .join(Member, Member.id == Action.member_id)
            .where(Action.status == COUNTED)
            .group_by(*keys, Action.member_id, Action.type_code, ActionType.category, ward)
        )
        return stmt

    def member_days(self) -> FromClause:
        return self._actions(self._part(Action.occurred_at, "day").label("day")).subquery("md")

    def member_months(self) -> FromClause:
        return self._actions(
            self._part(Action.occurred_at, "month").label("month")).subquery("mm")

    def member_hours(self) -> FromClause:
        ward = func.coalesce(Member.ward, "")
        keys = (self._part(Action.occurred_at, "month").label("month"),
                self._part(Action.occurred_at, "weekday").label("weekday"),
                self._part(Action.occurred_at, "hour").label("hour"))
        return (
            select(*keys, Action.member_id, Action.type_code,
                   ActionType.category.label("category"), ward.label("ward"),
                   func.count().label("actions"))
            .join(ActionType, ActionType.id == Action.action_type_id)
            .join(Member, Member.id == Action.member_id)
            .where(Action.status == COUNTED)
            .group_by(*keys, Action.member_id, Action.type_code, ActionType.category, ward)
            .subquery("mh")
        )

    def ledger_days(self) -> FromClause:
        day = self._part(PostingLine.created_at, "day").label("day")
        return (
            select(day, Account.code.label("account"), Posting.kind.label("kind"),
                   func.sum(PostingLine.points).label("points"))
            .join(Account, Account.id == PostingLine.account_id)
            .join(Posting, Posting.id == PostingLine.posting_id)
            .where(Account.member_id.is_(None))
            .group_by(day, Account.code, Posting.kind)
            .subquery("ld")
        )

    def expiry_days(self) -> FromClause:
        """Earn postings' credits by the day of the line and the day they expire: as
        the figure summed them from the ledger before the rollup."""
        day = self._part(PostingLine.created_at, "day").label("day")
        expires = self._part(Posting.expires_at, "day").label("expires")
        return (
            select(day, expires, func.sum(PostingLine.points).label("points"))
            .join(Posting, Posting.id == PostingLine.posting_id)
            .where(Posting.kind == "earn", Posting.expires_at.is_not(None),
                   PostingLine.points > 0)
            .group_by(day, expires)
            .subquery("ed")
        )


    def sum_cells(self, dim: str) -> FromClause:
        from . import cells

        return cells.sums(cells.dim_source(db.session, self, dim), dim).subquery("su")

    def join_days(self) -> FromClause:
        """Members joined per day, ward and channel, grouped from the members."""
        from .joins import grouped

        return grouped().subquery("jd")

    def tenure_cells(self) -> FromClause:
        """Per cohort month x member's ward x type x window of membership: members
        with counted actions and their actions (see rewards.dashboard.tenure)."""
        joined = self._part(Member.joined_at, "day")
        happened = self._part(Action.occurred_at, "day")
        days = (func.julianday(happened) - func.julianday(joined) if self.sqlite
                else happened - joined)
        window = case((days < 28, "weeks_1_4"), (days < 91, "months_2_3"),
                      (days < 182, "months_4_6"), else_="later")
        each = (
            select(self._part(Member.joined_at, "month").label("cohort"),
                   func.coalesce(Member.ward, "").label("ward"), Action.type_code,
                   ActionType.category.label("category"), window.label("window"),
                   Action.member_id)
            .join(ActionType, ActionType.id == Action.action_type_id)
            .join(Member, Member.id == Action.member_id)
            .where(Action.status == COUNTED, days >= 0)
            .subquery("ea"))
        keys = (each.c.cohort, each.c.ward, each.c.type_code, each.c.category, each.c.window)
        return (select(*keys, func.count(func.distinct(each.c.member_id)).label("members"),
                       func.count().label("actions"))
                .group_by(*keys).subquery("tc"))


def month_of(column: Any) -> ColumnElement[Any]:
    """The 1st of the month of a timestamp column in the scheme's zone, in SQL."""
    return Raw()._part(column, "month")


def day_of(column: Any) -> ColumnElement[Any]:
    """The date of a timestamp column in the scheme's zone, in SQL."""
    return Raw()._part(column, "day")


def as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def text_literal(value: str) -> ColumnElement[str]:
    return literal(value, String)
