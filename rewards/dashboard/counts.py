"""Reading the span and sum cells for a figure: distinct members and sums over the
filter period, with the ward, category and action type filters applied."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.sql import FromClause

from . import cells
from .cells import ANY
from .context import Context
from .sources import Raw


def key_filter(ctx: Context, stmt: Any, t: FromClause, *, by_type: bool = False,
               ward: bool = True) -> Any:
    """Span cells of the filter's key: the action type if given (or every type's own
    cells when `by_type`), else the category's, else any (`*`)."""
    f = ctx.filters
    if ward and f.ward is not None:
        stmt = stmt.where(t.c.ward == f.ward)
    if by_type or f.action_type is not None:
        stmt = stmt.where(t.c.type_code != ANY, t.c.category != ANY)
        if f.action_type is not None:
            stmt = stmt.where(t.c.type_code == f.action_type)
        if f.category is not None:
            stmt = stmt.where(t.c.category == f.category)
    elif f.category is not None:
        stmt = stmt.where(t.c.type_code == ANY, t.c.category == f.category)
    else:
        stmt = stmt.where(t.c.type_code == ANY, t.c.category == ANY)
    return stmt


def members_over_months(ctx: Context, dim: str, keys: Iterable[str], *,
                        by_type: bool = False) -> dict[tuple, int]:
    """Distinct members active in the period's months, by the cells' `keys` columns."""
    if isinstance(ctx.source, Raw):
        return _distinct(ctx, dim, keys, ctx.first_month, ctx.end_month - timedelta(days=1),
                         by_type=by_type)
    sc = ctx.source.span_cells(dim)
    columns = [sc.c[key] for key in keys]
    stmt = key_filter(ctx, select(*columns, func.sum(sc.c.members)).where(
        sc.c.first_period >= ctx.first_month, sc.c.first_period < ctx.end_month,
        sc.c.next_period >= ctx.end_month), sc, by_type=by_type)
    return {tuple(row[:-1]): int(row[-1] or 0)
            for row in ctx.session.execute(stmt.group_by(*columns))}


def members_in_days(ctx: Context, first: date, last: date, keys: Iterable[str]
                    ) -> dict[tuple, int]:
    """Distinct members active from `first` to `last` (at most cells.DAY_CAP days)."""
    if isinstance(ctx.source, Raw):
        return _distinct(ctx, "day", keys, first, last)
    sc = ctx.source.span_cells("day")
    columns = [sc.c[key] for key in keys]
    stmt = key_filter(ctx, select(*columns, func.sum(sc.c.members)).where(
        sc.c.first_period >= first, sc.c.first_period <= last,
        sc.c.next_period > last), sc)
    return {tuple(row[:-1]): int(row[-1] or 0)
            for row in ctx.session.execute(stmt.group_by(*columns))}


def members_per_period(ctx: Context, dim: str, first: date, last: date,
                       keys: Iterable[str], key: tuple[str, str] | None = None,
                       ) -> dict[tuple, int]:
    """Members active in each single period (cohort: month, week) from `first` to
    `last`; `key` (type, category) instead of the filter's key when given."""
    if isinstance(ctx.source, Raw):
        return _distinct(ctx, dim, keys, first, last, key=key)
    sc = ctx.source.span_cells(dim)
    columns = [sc.c[k] for k in keys]
    stmt = select(*columns, func.sum(sc.c.members)).where(
        sc.c.first_period >= first, sc.c.first_period <= last)
    if key is None:
        stmt = key_filter(ctx, stmt, sc)
    else:
        stmt = stmt.where(sc.c.type_code == key[0], sc.c.category == key[1])
        if ctx.filters.ward is not None:
            stmt = stmt.where(sc.c.ward == ctx.filters.ward)
    return {tuple(row[:-1]): int(row[-1] or 0)
            for row in ctx.session.execute(stmt.group_by(*columns))}


def _distinct(ctx: Context, dim: str, keys: Iterable[str], first: date, last: date, *,
              by_type: bool = False, key: tuple[str, str] | None = None,
              ) -> dict[tuple, int]:
    """What the cells answer, counted directly: COUNT(DISTINCT member) over the raw
    tables' member rows of the period (the raw form the tests and the bench compare
    the cells with)."""
    src = cells.dim_source(ctx.session, ctx.source, dim)
    names = {"first_period": "period"}
    columns = [src.c[names.get(k, k)] for k in keys]
    stmt = select(*columns, func.count(func.distinct(src.c.member_id))).where(
        src.c.period >= first, src.c.period <= last)
    f = ctx.filters
    if f.ward is not None:
        stmt = stmt.where(src.c.ward == f.ward)
    type_code, category = f.action_type, f.category
    if key is not None:
        type_code, category = (None if v == ANY else v for v in key)
    if type_code is not None:
        stmt = stmt.where(src.c.type_code == type_code)
    if category is not None:
        stmt = stmt.where(src.c.category == category)
    return {tuple(row[:-1]): int(row[-1]) for row in
            ctx.session.execute(stmt.group_by(*columns))}


def sums(ctx: Context, dim: str, keys: Iterable[str], first: date | None = None,
         last: date | None = None, types: list[str] | None = None,
         ) -> dict[tuple, tuple[int, int, float, float]]:
    """Actions, points, km and hours in the period (or `first`..`last`), by `keys`."""
    su = ctx.source.sum_cells(dim)
    columns = [su.c[key] for key in keys]
    first = ctx.first_month if first is None else first
    stmt = select(*columns, func.sum(su.c.actions), func.sum(su.c.points),
                  func.sum(su.c.km), func.sum(su.c.duration_h)).where(su.c.period >= first)
    stmt = stmt.where(su.c.period < ctx.end_month) if last is None else stmt.where(
        su.c.period <= last)
    if types is not None:
        stmt = stmt.where(su.c.type_code.in_(types))
    stmt = ctx.where(stmt, su)
    found: dict[tuple, tuple[int, int, float, float]] = {}
    for *values, actions, points, km, hours in ctx.session.execute(stmt.group_by(*columns)):
        found[tuple(values)] = (int(actions or 0), int(points or 0), float(km or 0),
                                float(hours or 0))
    return found


def campaign_key(ctx: Context, types: list[str], categories: dict[str, str],
                 ) -> tuple[str, str] | None:
    """The span cells' key counting members with an action of any of `types` under
    the filters, or None if no key does (several types, not a whole category)."""
    f = ctx.filters
    chosen = set(types)
    if f.action_type is not None:
        chosen &= {f.action_type}
    if f.category is not None:
        chosen = {t for t in chosen if categories.get(t) == f.category}
    if len(chosen) == 1:
        only = next(iter(chosen))
        return only, categories.get(only, "")
    if chosen == set(categories):
        return ANY, ANY
    by_category: dict[str, set[str]] = defaultdict(set)
    for code, category in categories.items():
        by_category[category].add(code)
    for category, codes in by_category.items():
        if chosen == codes:
            return ANY, category
    return None


def week_days(first: date, last: date) -> list[date]:
    weeks, week = [], first - timedelta(days=first.weekday())
    while week <= last:
        weeks.append(week)
        week += timedelta(weeks=1)
    return weeks
