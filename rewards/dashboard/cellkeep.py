"""Keeping the span and sum cells up to date as members' rows change.

Every cell is a sum over members (a member's entries in the span cells, their actions
in the sum cells), so a refresh takes off what the changed members made up before and
adds what they make up after, computed by the same statements as a build restricted to
those members: their whole history for the month ranges (their entries chain month to
month), and only the touched months, weeks and days (plus DAY_CAP days around) for the
rest. On PostgreSQL both go through temporary tables and one INSERT ... ON CONFLICT
each; on SQLite through Python."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import column, delete, insert, select, table, text, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from ..models.dashboard import SpanCell, SumCell
from .cells import (
    DAY_CAP,
    MEASURES,
    RANGE_DIMS,
    SPAN_COLUMNS,
    SPAN_KEYS,
    SUM_COLUMNS,
    dim_source,
    periods,
    spans,
    sums,
)
from .filters import month_start

SUM_KEYS = tuple(SUM_COLUMNS[:6])
CHUNK = 5000


def _day_runs(days: list[date]) -> list[tuple[date, date]]:
    runs: list[list[date]] = []
    for day in days:
        if runs and (day - runs[-1][1]).days <= DAY_CAP:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [(a, b) for a, b in runs]


def _statements(session: Session, group: list[uuid.UUID], days: list[date],
                ) -> tuple[list[Select[Any]], list[Select[Any]]]:
    """(span statements, sum statements) of `group`'s part in the cells `days` touch."""
    from .sources import Rollups

    source = Rollups()
    months = sorted({month_start(day) for day in days})
    weeks = sorted({day - timedelta(days=day.weekday()) for day in days})
    by_month = (months[0], months[-1])
    by_week = (weeks[0], weeks[-1] + timedelta(days=6))
    span = [spans(session, dim_source(session, source, dim, group), dim, since=months[0])
            for dim in RANGE_DIMS]
    for first, last in _day_runs(days):
        # A day changes the next_period of the member's entries up to DAY_CAP days before.
        lo = first - timedelta(days=DAY_CAP)
        src = dim_source(session, source, "day", group,
                         between=(lo, last + timedelta(days=DAY_CAP)))
        span.append(spans(session, src, "day", cap=DAY_CAP, window=(lo, last)))
    span.append(periods(dim_source(session, source, "cohort", group, between=by_month),
                        "cohort", months))
    span.append(periods(dim_source(session, source, "week", group, between=by_week),
                        "week", weeks))
    summed = [sums(dim_source(session, source, dim, group, between=by_month), dim, months)
              for dim in ("ward", "age", "hour")]
    summed.append(sums(dim_source(session, source, "week", group, between=by_week), "week",
                       weeks))
    return span, summed


def change_members(session: Session, members: set[uuid.UUID], days: Iterable[date],
                   apply: Callable[[], None]) -> None:
    """Run `apply` (which rewrites `members`' day rows of `days` and their month rows),
    changing the cells by what those members made up before and after it."""
    days = sorted(set(days))
    if not members or not days:
        apply()
        return
    if session.get_bind().dialect.name == "sqlite":
        before = _entries(session, members, days)
        apply()
        _apply_python(session, before, _entries(session, members, days))
        return
    session.execute(text("CREATE TEMP TABLE IF NOT EXISTS dashboard_span_delta "
                         "(LIKE dashboard_span_cells) ON COMMIT DROP"))
    session.execute(text("CREATE TEMP TABLE IF NOT EXISTS dashboard_sum_delta "
                         "(LIKE dashboard_sum_cells) ON COMMIT DROP"))
    session.execute(text("TRUNCATE dashboard_span_delta, dashboard_sum_delta"))
    session.execute(text("SET LOCAL work_mem = '64MB'"))  # the members' rows, sorted once
    _into_deltas(session, members, days, -1)
    apply()
    _into_deltas(session, members, days, 1)
    _apply_sql(session)


def _groups(members: set[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    ids = sorted(members)
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _into_deltas(session: Session, members: set[uuid.UUID], days: list[date],
                 sign: int) -> None:
    span_delta = table("dashboard_span_delta", *(column(k) for k in SPAN_COLUMNS))
    sum_delta = table("dashboard_sum_delta", *(column(k) for k in SUM_COLUMNS))
    for group in _groups(members):
        span, summed = _statements(session, group, days)
        for stmt in span:
            found = stmt.subquery()
            session.execute(insert(span_delta).from_select(SPAN_COLUMNS, select(
                *(found.c[k] for k in SPAN_KEYS), found.c.members * sign)))
        for stmt in summed:
            found = stmt.subquery()
            session.execute(insert(sum_delta).from_select(SUM_COLUMNS, select(
                *(found.c[k] for k in SUM_KEYS), *(found.c[m] * sign for m in MEASURES))))


def _match(keys: tuple[str, ...]) -> str:
    return " AND ".join(f"c.{k} = d.{k}" for k in keys)


def _apply_sql(session: Session) -> None:
    span_keys, sum_keys = ", ".join(SPAN_KEYS), ", ".join(SUM_KEYS)
    session.execute(text(f"""
        INSERT INTO dashboard_span_cells ({span_keys}, members)
        SELECT {span_keys}, sum(members) FROM dashboard_span_delta
        GROUP BY {span_keys} HAVING sum(members) <> 0
        ON CONFLICT ({span_keys})
        DO UPDATE SET members = dashboard_span_cells.members + excluded.members"""))
    session.execute(text(f"""
        DELETE FROM dashboard_span_cells c USING dashboard_span_delta d
        WHERE c.members <= 0 AND {_match(SPAN_KEYS)}"""))
    sums_sql = ", ".join(f"sum({m})" for m in MEASURES)
    session.execute(text(f"""
        INSERT INTO dashboard_sum_cells ({sum_keys}, {", ".join(MEASURES)})
        SELECT {sum_keys}, {sums_sql} FROM dashboard_sum_delta
        GROUP BY {sum_keys} HAVING {" OR ".join(f"sum({m}) <> 0" for m in MEASURES)}
        ON CONFLICT ({sum_keys}) DO UPDATE SET
        {", ".join(f"{m} = dashboard_sum_cells.{m} + excluded.{m}" for m in MEASURES)}"""))
    session.execute(text(f"""
        DELETE FROM dashboard_sum_cells c USING dashboard_sum_delta d
        WHERE c.actions <= 0 AND {_match(SUM_KEYS)}"""))


def _entries(session: Session, members: set[uuid.UUID], days: list[date],
             ) -> tuple[dict[tuple, int], dict[tuple, list[float]]]:
    span_found: dict[tuple, int] = defaultdict(int)
    sum_found: dict[tuple, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for group in _groups(members):
        span, summed = _statements(session, group, days)
        for stmt in span:
            for row in session.execute(stmt):
                span_found[tuple(row[:7])] += row[7]
        for stmt in summed:
            for row in session.execute(stmt):
                cell = sum_found[tuple(row[:6])]
                for n, value in enumerate(row[6:]):
                    cell[n] += value or 0
    return span_found, sum_found


def _apply_python(session: Session, before: tuple[dict, dict], after: tuple[dict, dict],
                  ) -> None:
    from sqlalchemy.dialects import sqlite

    spans_delta = dict(after[0])
    for key, count in before[0].items():
        spans_delta[key] = spans_delta.get(key, 0) - count
    sums_delta = {key: list(value) for key, value in after[1].items()}
    for key, value in before[1].items():
        cell = sums_delta.setdefault(key, [0, 0, 0.0, 0.0])
        for n in range(4):
            cell[n] -= value[n]
    for model, keys, measures, changed, gone in (
            (SpanCell, SPAN_KEYS, ("members",),
             [dict(zip(SPAN_KEYS, k, strict=True), members=n)
              for k, n in spans_delta.items() if n], "members"),
            (SumCell, SUM_KEYS, MEASURES,
             [dict(zip(SUM_KEYS, k, strict=True), **dict(zip(MEASURES, v, strict=True)))
              for k, v in sums_delta.items() if any(v)], "actions")):
        t = model.__table__
        for start in range(0, len(changed), 2000):
            stmt = sqlite.insert(t)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(keys),
                set_={m: t.c[m] + stmt.excluded[m] for m in measures})
            session.execute(stmt, changed[start:start + 2000])
        emptied = [tuple(c[k] for k in keys) for c in changed if c[gone] < 0]
        for start in range(0, len(emptied), 200):
            session.execute(delete(t).where(
                tuple_(*(t.c[k] for k in keys)).in_(emptied[start:start + 200]),
                t.c[gone] <= 0))
