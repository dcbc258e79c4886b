"""Building the member rollups on PostgreSQL in the database: INSERT ... SELECT ...
GROUP BY over the days' actions, instead of reading every action into Python.

A first refresh or a rebuild recomputes whole ranges of days; these statements do it
set-based (about a minute for ten million actions instead of half an hour). The
incremental refresh and SQLite keep the Python path in rewards.dashboard.refresh, which
computes the same rows (the rebuild test compares them)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.orm import Session

from .filters import day_bounds, next_month, scheme_zone
from .sources import COUNTED

# A number as Python's float() would read it from the attribute's text (else 0), and
# nothing absurd (as refresh._number).
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


def _number(expression: str) -> str:
    return (f"CASE WHEN ({expression}) ~ '{_NUMBER}' AND abs(({expression})::float8) < 1e9 "
            f"THEN ({expression})::float8 ELSE 0 END")


DAYS = f"""
INSERT INTO dashboard_member_days (day, member_id, type_code, category, ward, actions,
                                   points, km, duration_h, by_hour)
SELECT day, member_id, type_code, min(category), min(ward), sum(n), sum(points), sum(km),
       sum(hours), jsonb_object_agg(hour::text, n)
FROM (
  SELECT timezone(:zone, a.occurred_at)::date AS day,
         extract(hour FROM timezone(:zone, a.occurred_at))::int AS hour,
         a.member_id, a.type_code, t.category, coalesce(m.ward, '') AS ward,
         count(*) AS n, sum(coalesce(a.points, 0)) AS points,
         sum({_number("a.attributes ->> 'distance_km'")}) AS km,
         sum({_number("a.attributes ->> 'hours'")}) AS hours
  FROM actions a
  JOIN action_types t ON t.id = a.action_type_id
  JOIN members m ON m.id = a.member_id
  WHERE a.status = :counted AND a.occurred_at >= :start AND a.occurred_at < :end
  GROUP BY 1, 2, 3, 4, 5, 6
) h
GROUP BY day, member_id, type_code
"""

HOURS = """
INSERT INTO dashboard_member_hours (month, member_id, type_code, weekday, hour, category,
                                   ward, actions)
SELECT :month, d.member_id, d.type_code, extract(isodow FROM d.day)::int, h.key::int,
       min(d.category), min(d.ward), sum(h.value::int)
FROM dashboard_member_days d CROSS JOIN LATERAL jsonb_each_text(d.by_hour) h
WHERE d.day >= :month AND d.day < :end
GROUP BY d.member_id, d.type_code, 4, 5
"""

TENURE = """
INSERT INTO dashboard_member_tenure (member_id, type_code, "window", cohort, category, ward,
                                     actions)
SELECT d.member_id, d.type_code,
       CASE WHEN d.day - m.joined < 28 THEN 'weeks_1_4'
            WHEN d.day - m.joined < 91 THEN 'months_2_3'
            WHEN d.day - m.joined < 182 THEN 'months_4_6' ELSE 'later' END,
       date_trunc('month', m.joined)::date, min(d.category), m.ward, sum(d.actions)
FROM dashboard_member_days d
JOIN (SELECT id, coalesce(ward, '') AS ward, timezone(:zone, joined_at)::date AS joined
      FROM members WHERE joined_at IS NOT NULL) m ON m.id = d.member_id
WHERE d.day >= m.joined
GROUP BY d.member_id, d.type_code, 3, 4, m.ward
"""

TENURE_CELLS = """
INSERT INTO dashboard_tenure_cells (cohort, ward, type_code, category, "window", members,
                                    actions)
SELECT cohort, ward, type_code, category, "window", count(*), sum(actions)
FROM dashboard_member_tenure GROUP BY 1, 2, 3, 4, 5
"""


def prepare(session: Session) -> None:
    """Memory for the build's sorts and hashes, for this transaction only: a build
    groups millions of rows once, and spilling them to disk is most of its time."""
    session.execute(text("SET LOCAL work_mem = '256MB'"))


def days(session: Session, first: date, last: date) -> None:
    """The member-day rows of `first`..`last` again from the actions."""
    start, end = day_bounds(first, last)
    session.execute(text("DELETE FROM dashboard_member_days WHERE day >= :a AND day <= :b"),
                    {"a": first, "b": last})
    session.execute(text(DAYS), {"zone": scheme_zone().key, "counted": COUNTED,
                                 "start": start, "end": end})


def hours(session: Session, month: date) -> None:
    """The month's member-hour rows from its member-day rows (after the month's rows
    were deleted)."""
    session.execute(text(HOURS), {"month": month, "end": next_month(month)})


def tenure(session: Session) -> None:
    """Every member's tenure rows and the tenure cells, from the member-day rows."""
    session.execute(text("DELETE FROM dashboard_tenure_cells"))
    session.execute(text("DELETE FROM dashboard_member_tenure"))
    session.execute(text(TENURE), {"zone": scheme_zone().key})
    session.execute(text(TENURE_CELLS))
