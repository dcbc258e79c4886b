"""What an incremental refresh changes in the month and month-hour rows: the touched
days' old rows taken off and their new rows put on, summed per row and applied as
increments (INSERT ... ON CONFLICT DO UPDATE), rows left with no action deleted."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import delete, tuple_
from sqlalchemy.orm import Session

from ..models.dashboard import MemberHourMonth, MemberMonth
from .filters import month_start

MEASURES = ("actions", "points", "km", "duration_h", "days")


class Deltas:
    """What a refresh changes in the month and month-hour rows: day rows taken off
    (-1) and put back (+1), summed per row key, then applied as increments."""

    def __init__(self) -> None:
        self.months: dict[tuple[date, uuid.UUID, str], dict[str, Any]] = {}
        self.hours: dict[tuple[date, uuid.UUID, str, int, int], dict[str, Any]] = {}
        # Each day row as it was (-1) and is (+1): the members whose rows differ are
        # the ones whose cells can change.
        self.rows: dict[int, set[tuple]] = {-1: set(), 1: set()}

    def changed_members(self) -> set[uuid.UUID]:
        return {row[1] for row in self.rows[-1] ^ self.rows[1]}

    def add(self, row: Any, sign: int) -> None:
        self.rows[sign].add((
            row["day"], row["member_id"], row["type_code"], row["category"], row["ward"],
            row["actions"], row["points"], round(row["km"], 6), round(row["duration_h"], 6),
            tuple(sorted((str(h), int(n)) for h, n in (row["by_hour"] or {}).items()))))
        month = month_start(row["day"])
        key = (month, row["member_id"], row["type_code"])
        cell = self.months.get(key)
        if cell is None:
            cell = self.months[key] = {
                "month": month, "member_id": key[1], "type_code": key[2],
                "category": row["category"], "ward": row["ward"], "actions": 0, "points": 0,
                "km": 0.0, "duration_h": 0.0, "days": 0}
        if sign > 0:  # a day's current row says the member's current ward and category
            cell["category"], cell["ward"] = row["category"], row["ward"]
        cell["actions"] += sign * row["actions"]
        cell["points"] += sign * row["points"]
        cell["km"] += sign * row["km"]
        cell["duration_h"] += sign * row["duration_h"]
        cell["days"] += sign
        weekday = row["day"].isoweekday()
        for hour, count in (row["by_hour"] or {}).items():
            hkey = (month, key[1], key[2], weekday, int(hour))
            hcell = self.hours.get(hkey)
            if hcell is None:
                hcell = self.hours[hkey] = {
                    "month": month, "member_id": key[1], "type_code": key[2],
                    "weekday": weekday, "hour": int(hour), "category": row["category"],
                    "ward": row["ward"], "actions": 0}
            if sign > 0:
                hcell["category"], hcell["ward"] = row["category"], row["ward"]
            hcell["actions"] += sign * int(count)

    def apply(self, session: Session) -> None:
        dialect = session.get_bind().dialect.name
        for table, found, keys, measures in (
                (MemberMonth.__table__, self.months, ("month", "member_id", "type_code"),
                 MEASURES),
                (MemberHourMonth.__table__, self.hours,
                 ("month", "member_id", "type_code", "weekday", "hour"), ("actions",))):
            # A day recomputed unchanged changes nothing; rows that lost actions may be
            # left with none and go.
            changed = [cell for cell in found.values() if any(cell[m] for m in measures)]
            emptied = [tuple(cell[k] for k in keys) for cell in changed if cell["actions"] < 0]
            for start in range(0, len(changed), 2000):
                stmt = _upsert(dialect, table, keys, measures)
                session.execute(stmt, changed[start:start + 2000])
            for start in range(0, len(emptied), 500):
                session.execute(delete(table).where(
                    tuple_(*(table.c[k] for k in keys)).in_(emptied[start:start + 500]),
                    table.c.actions <= 0))


def _upsert(dialect: str, table: Any, keys: tuple[str, ...], measures: tuple[str, ...]) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding the measures (PostgreSQL and SQLite)."""
    from sqlalchemy.dialects import postgresql, sqlite

    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    updates = {m: table.c[m] + stmt.excluded[m] for m in measures}
    updates.update(category=stmt.excluded.category, ward=stmt.excluded.ward)
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=updates)
