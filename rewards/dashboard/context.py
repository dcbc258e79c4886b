"""What every figure's code is given: the session, the filters, where to read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session
from sqlalchemy.sql import FromClause

from . import welsh
from .filters import Filters, next_month, today
from .sources import Raw, Rollups
from .table import Column


@dataclass
class Context:
    session: Session
    filters: Filters
    source: Rollups | Raw
    threshold: int

    @property
    def first_month(self) -> date:
        return self.filters.months[0]

    @property
    def end_month(self) -> date:
        """The 1st of the month after the last one covered."""
        return next_month(self.filters.months[-1])

    @property
    def last_day(self) -> date:
        """The last day the period covers that has happened."""
        return min(self.end_month - timedelta(days=1), today())

    def where(self, stmt: Select[Any], table: FromClause, *, ward: bool = True,
              kind: bool = True) -> Select[Any]:
        """Apply the ward, category and action type filters to a rollup-shaped table."""
        f = self.filters
        if ward and f.ward is not None:
            stmt = stmt.where(table.c.ward == f.ward)
        if kind and f.category is not None:
            stmt = stmt.where(table.c.category == f.category)
        if kind and f.action_type is not None:
            stmt = stmt.where(table.c.type_code == f.action_type)
        return stmt

    def period_note(self) -> str:
        return (f"Whole months from {self.first_month:%B %Y} to "
                f"{self.filters.months[-1]:%B %Y} (scheme time zone).")


def col(key: str, label: str, label_cy: str, kind: str = "int") -> Column:
    return Column(key, label, label_cy, kind)


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)


NO_WARD = "(no ward given)"


def ward_name(ward: str) -> str:
    return ward or NO_WARD


def ward_cells(ward: str) -> dict[str, str]:
    """A row's ward, and its Welsh for the Welsh page (a ward's name is a proper name)."""
    return {"ward": ward_name(ward), "ward_cy": ward or welsh.NO_WARD}
