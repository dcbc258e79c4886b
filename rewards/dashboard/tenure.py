"""Tenure cells: the baseline figure's numbers, pre-aggregated.

Each member's counted actions fall in windows of their membership (weeks 1-4, months
2-3, 4-6, later). `dashboard_member_tenure` keeps one row per member, type and window;
`dashboard_tenure_cells` sums those per cohort month (when the member joined), ward,
type and window, counting each member once per cell, so cells add up exactly over
cohorts and wards. A refresh recomputes the rows of the members whose days changed
from their member-day rows and changes the cells by the difference."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.orm import Session

from ..models import Member
from ..models.dashboard import MemberDay, MemberTenure, TenureCell
from .filters import month_start, scheme_zone

# (key, first day of membership, day after the last): the windows of behaviour.TENURE.
WINDOWS = (("weeks_1_4", 0, 28), ("months_2_3", 28, 91), ("months_4_6", 91, 182),
           ("later", 182, None))
CELL_KEYS = ("cohort", "ward", "type_code", "category", "window")


def window_of(days: int) -> str | None:
    """The window a day `days` after joining falls in; None before joining."""
    for key, first, last in WINDOWS:
        if days >= first and (last is None or days < last):
            return key
    return None


def _chunks(ids: list[uuid.UUID], size: int = 500) -> Iterable[list[uuid.UUID]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def refresh_members(session: Session, members: Iterable[uuid.UUID]) -> int:
    """Recompute the tenure rows of `members` and change the cells to match."""
    zone = scheme_zone()
    deltas: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    rows_table, days = MemberTenure.__table__, MemberDay.__table__
    count = 0
    for group in _chunks(sorted(members)):
        for row in session.execute(select(rows_table).where(
                rows_table.c.member_id.in_(group))).mappings():
            cell = deltas[tuple(row[k] for k in CELL_KEYS)]
            cell[0] -= 1
            cell[1] -= row["actions"]
        session.execute(delete(rows_table).where(rows_table.c.member_id.in_(group)))
        joined: dict[uuid.UUID, tuple[date, str]] = {
            member_id: (at.astimezone(zone).date(), ward or "")
            for member_id, at, ward in session.execute(
                select(Member.id, Member.joined_at, Member.ward).where(Member.id.in_(group)))
            if at is not None}
        new: dict[tuple[uuid.UUID, str, str], dict[str, Any]] = {}
        for member_id, type_code, category, day, actions in session.execute(
                select(days.c.member_id, days.c.type_code, days.c.category, days.c.day,
                       days.c.actions).where(days.c.member_id.in_(group))):
            if member_id not in joined:
                continue
            first_day, ward = joined[member_id]
            window = window_of((day - first_day).days)
            if window is None:
                continue
            key = (member_id, type_code, window)
            row = new.get(key)
            if row is None:
                row = new[key] = {"member_id": member_id, "type_code": type_code,
                                  "window": window, "cohort": month_start(first_day),
                                  "category": category, "ward": ward, "actions": 0}
            row["actions"] += actions
        values = list(new.values())
        for start in range(0, len(values), 5000):
            session.execute(insert(rows_table), values[start:start + 5000])
        for row in values:
            cell = deltas[tuple(row[k] for k in CELL_KEYS)]
            cell[0] += 1
            cell[1] += row["actions"]
        count += len(group)
    _apply(session, deltas)
    return count


def _apply(session: Session, deltas: dict[tuple, list[int]]) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    table = TenureCell.__table__
    changed = [dict(zip(CELL_KEYS, key, strict=True), members=m, actions=a)
               for key, (m, a) in deltas.items() if m or a]
    dialect = session.get_bind().dialect.name
    for start in range(0, len(changed), 2000):
        stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(CELL_KEYS),
            set_={m: table.c[m] + stmt.excluded[m] for m in ("members", "actions")})
        session.execute(stmt, changed[start:start + 2000])
    emptied = [tuple(c[k] for k in CELL_KEYS) for c in changed if c["members"] < 0]
    for start in range(0, len(emptied), 500):
        session.execute(delete(table).where(
            tuple_(*(table.c[k] for k in CELL_KEYS)).in_(emptied[start:start + 500]),
            table.c.members <= 0))
