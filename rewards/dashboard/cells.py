"""Span and sum cells: distinct members over any range of periods, read as one sum.

A distinct count over several months does not add up from monthly counts: a member
active in three months is one member. The span cells keep, per member and key (an
action type, a category or any, `*`), each active period with the member's next active
period. A member active in periods a..b is then exactly one entry, the one with
a <= first_period <= b < next_period (their last active period up to b), so entries
are summed into cells of (key, ward or value, first, next) and the members over any
range are one sum over a few thousand cells. See rewards.models.dashboard.SpanCell.

The same statements build the cells from the rollups (kept in the tables) and from the
raw tables (grouped per request, rewards.dashboard.Raw), so both forms agree."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    String,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import FromClause, Select

from ..models import Member
from ..models.dashboard import SpanCell, SumCell

ANY = "*"
NEVER = date(9999, 12, 1)  # next_period of a member's last active period
DAY_CAP = 30  # the widest window of days a figure counts (`active`: 7 and 30 days)
RANGE_DIMS = ("ward", "age", "hour")  # by month, ranges; kept member by member
SUM_DIMS = ("ward", "age", "hour", "week")
SPAN_KEYS = ("dim", "type_code", "category", "ward", "value", "first_period", "next_period")
MEASURES = ("actions", "points", "km", "duration_h")


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _week_of(session: Session, day: Any) -> Any:
    if _sqlite(session):
        return func.date(day, "weekday 0", "-6 days")
    return cast(func.date_trunc("week", day), Date)


def _plus_days(session: Session, day: Any, days: int) -> Any:
    if _sqlite(session):
        return func.date(day, f"+{days} days")
    return day + days


def _least(session: Session, a: Any, b: Any) -> Any:
    return func.min(a, b) if _sqlite(session) else func.least(a, b)


def dim_source(session: Session, source: Any, dim: str,
               members: list[uuid.UUID] | None = None,
               between: tuple[date, date] | None = None) -> FromClause:
    """Rows (member_id, period, ward, value, type_code, category, measures) of `dim`
    from a source's member rows (rollups or raw)."""
    zero = literal(0, Integer)
    if dim in ("ward", "age", "cohort"):
        t = source.member_months()
        period, measures = t.c.month, (t.c.actions, t.c.points, t.c.km, t.c.duration_h)
    elif dim == "hour":
        t = source.member_hours()
        period, measures = t.c.month, (t.c.actions, zero, zero, zero)
    else:  # week, day
        t = source.member_days()
        period = _week_of(session, t.c.day) if dim == "week" else t.c.day
        measures = (t.c.actions, t.c.points, t.c.km, t.c.duration_h)
    ward, value = t.c.ward, literal("", String)
    stmt = select(t.c.member_id)
    if dim == "age":
        ward = literal(ANY, String)
        value = func.coalesce(cast(Member.birth_year, String), "")
    elif dim == "hour":
        ward, value = literal(ANY, String), cast(t.c.weekday * 100 + t.c.hour, String)
    elif dim == "cohort":
        from .sources import month_of

        ward = func.coalesce(Member.ward, "")
        value = cast(month_of(Member.joined_at), String)
    if dim in ("age", "cohort"):
        stmt = stmt.join(Member, Member.id == t.c.member_id)
    stmt = stmt.add_columns(
        type_coerce_date(period).label("period"), ward.label("ward"), value.label("value"),
        t.c.type_code, t.c.category, *(m.label(n) for m, n in zip(measures, MEASURES,
                                                                   strict=True)))
    if dim == "cohort":
        stmt = stmt.where(Member.joined_at.is_not(None))
    if members is not None:
        stmt = stmt.where(t.c.member_id.in_(members))
    if between is not None:  # on the stored column, so an index can find the rows
        column = t.c.day if dim in ("week", "day") else t.c.month
        stmt = stmt.where(column >= between[0], column <= between[1])
    return stmt.subquery(f"src_{dim}")


def type_coerce_date(column: Any) -> Any:
    from sqlalchemy import type_coerce

    return type_coerce(column, Date)


def _keyed(src: FromClause, lo: Any = None, hi: Any = None) -> FromClause:
    """Each row under its type, its category and `*`, once per member and period."""
    parts = []
    for type_code, category in ((src.c.type_code, src.c.category),
                                (literal(ANY, String), src.c.category),
                                (literal(ANY, String), literal(ANY, String))):
        part = select(src.c.member_id, src.c.period, src.c.ward, src.c.value,
                      type_code.label("type_code"), category.label("category"))
        if lo is not None:
            part = part.where(src.c.period >= lo, src.c.period <= hi)
        parts.append(part)
    keyed = union_all(*parts).subquery("k")
    return select(*keyed.c).distinct().subquery("d")


def spans(session: Session, src: FromClause, dim: str, *, cap: int | None = None,
          window: tuple[date, date] | None = None, since: date | None = None,
          ) -> Select[Any]:
    """Span cells of `src`: (dim, key, ward, value, first, next, members). With `cap`,
    next is at most `cap` days on; with `window` (first, last), only entries whose
    first period is in it, from rows up to `cap` days after it. With `since`, only the
    entries a change from `since` on can touch: those from `since` on and each
    member's last one before it (whose next may change); earlier entries chain to
    periods before `since` and stay as they are."""
    lo = hi = None
    if window is not None:
        lo, hi = window[0], window[1] + timedelta(days=cap or 0)
    d = _keyed(src, lo, hi)
    partition = (d.c.member_id, d.c.type_code, d.c.category, d.c.ward, d.c.value)
    if since is not None:  # the last period before `since` found by grouping, not sorting
        d = union_all(
            select(*d.c).where(d.c.period >= since),
            select(d.c.member_id, func.max(d.c.period).label("period"), d.c.ward,
                   d.c.value, d.c.type_code, d.c.category)
            .where(d.c.period < since).group_by(*partition)).subquery("n")
        d = select(d.c.member_id, d.c.period, d.c.ward, d.c.value, d.c.type_code,
                   d.c.category).subquery("m")
        partition = (d.c.member_id, d.c.type_code, d.c.category, d.c.ward, d.c.value)
    nxt = func.coalesce(func.lead(d.c.period).over(
        partition_by=partition, order_by=d.c.period), literal(NEVER, Date))
    if cap is not None:
        nxt = _least(session, nxt, _plus_days(session, d.c.period, cap))
    e = select(d.c.type_code, d.c.category, d.c.ward, d.c.value,
               d.c.period.label("first_period"), nxt.label("next_period")).subquery("e")
    keys = (e.c.type_code, e.c.category, e.c.ward, e.c.value, e.c.first_period,
            e.c.next_period)
    stmt = select(literal(dim, String).label("dim"), *keys, func.count().label("members"))
    if window is not None:
        stmt = stmt.where(e.c.first_period >= window[0], e.c.first_period <= window[1])
    return stmt.group_by(*keys)


def periods(src: FromClause, dim: str, only: list[date] | None = None) -> Select[Any]:
    """Members active in each single period (cohort: month, week: week)."""
    d = _keyed(src)
    keys = (d.c.type_code, d.c.category, d.c.ward, d.c.value, d.c.period)
    stmt = select(literal(dim, String).label("dim"), *keys[:4],
                  d.c.period.label("first_period"), literal(NEVER, Date).label("next_period"),
                  func.count(func.distinct(d.c.member_id)).label("members"))
    if only is not None:
        stmt = stmt.where(d.c.period.in_(only))
    return stmt.group_by(*keys)


def sums(src: FromClause, dim: str, only: list[date] | None = None) -> Select[Any]:
    keys = (src.c.period, src.c.type_code, src.c.category, src.c.ward, src.c.value)
    stmt = select(literal(dim, String).label("dim"), *keys,
                  *(func.coalesce(func.sum(src.c[m]), 0).label(m) for m in MEASURES))
    if only is not None:
        stmt = stmt.where(src.c.period.in_(only))
    return stmt.group_by(*keys)


# -- kept in the tables ----------------------------------------------------------------

SPAN_COLUMNS = [*SPAN_KEYS, "members"]
SUM_COLUMNS = ["dim", "period", "type_code", "category", "ward", "value", *MEASURES]


def build(session: Session, step: Callable[[str], None] = lambda name: None) -> None:
    """Every cell again from the member rollups (a build or a rebuild)."""
    from .sources import Rollups

    source = Rollups()
    session.execute(delete(SpanCell.__table__))
    session.execute(delete(SumCell.__table__))
    for dim in RANGE_DIMS:
        _insert_spans(session, spans(session, dim_source(session, source, dim), dim))
        step(f"cells_{dim}")
    _insert_spans(session, spans(session, dim_source(session, source, "day"), "day",
                                 cap=DAY_CAP))
    step("cells_day")
    for dim in ("cohort", "week"):
        _insert_spans(session, periods(dim_source(session, source, dim), dim))
        step(f"cells_{dim}")
    for dim in SUM_DIMS:
        session.execute(insert(SumCell.__table__).from_select(
            SUM_COLUMNS, sums(dim_source(session, source, dim), dim)))
    step("cells_sums")


def _insert_spans(session: Session, stmt: Select[Any]) -> None:
    session.execute(insert(SpanCell.__table__).from_select(SPAN_COLUMNS, stmt))


