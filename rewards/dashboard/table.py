"""A figure's answer: columns, rows, suppressed cells, notes; as JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..csvfile import looks_like_formula

KINDS = ("text", "int", "number", "percent", "money", "date")
SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    label_cy: str
    kind: str = "int"

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "label": self.label, "label_cy": self.label_cy,
                "kind": self.kind}


@dataclass
class Table:
    name: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    filters: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "filters": self.filters,
            "columns": [column.to_json() for column in self.columns],
            "rows": [{key: _json_value(value) for key, value in row.items()}
                     for row in self.rows],
            "notes": list(self.notes),
        }

    def to_csv(self, language: str = "en") -> str:
        """One header row of labels, then the rows; a suppressed cell says so. In Welsh
        ("cy": the Welsh staff page's download) the header is the columns' Welsh labels
        and a text cell whose row gives its Welsh form (`<key>_cy`) is written in Welsh;
        the API and the open data are English."""
        welsh = language == "cy"
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([safe_cell(column.label_cy if welsh and column.label_cy
                                   else column.label) for column in self.columns])
        for row in self.rows:
            hidden = set(row.get("_suppressed", ()))
            writer.writerow([
                SUPPRESSED if column.key in hidden else safe_cell(_cell(row, column, welsh))
                for column in self.columns
            ])
        return out.getvalue()


def _cell(row: dict[str, Any], column: Column, welsh: bool) -> Any:
    if welsh and column.kind == "text" and row.get(f"{column.key}_cy"):
        return row[f"{column.key}_cy"]
    return row.get(column.key)


def _json_value(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return value


def safe_cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would run as a formula is quoted with '."""
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return "'" + text if looks_like_formula(text) else text


def hide(row: dict[str, Any], keys: Iterable[str]) -> None:
    """Suppress `keys` in `row`: the value goes, the key is listed in _suppressed."""
    hidden = row.setdefault("_suppressed", [])
    for key in keys:
        row[key] = None
        if key not in hidden:
            hidden.append(key)


def suppress(
    rows: list[dict[str, Any]],
    threshold: int,
    count: str,
    values: Iterable[str],
    group: Callable[[dict[str, Any]], Hashable] | None = None,
    forced: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Primary and complementary suppression, in place.

    Primary: a row whose `count` (distinct members) is under `threshold` loses `count`
    and every column in `values`. Complementary: within a `group` (the cells that add
    up to a total shown elsewhere, e.g. one month's wards), if exactly one row is
    suppressed, the smallest other row is suppressed too, so the total less the others
    cannot give the hidden cell back. Cells counting nobody (0) are not suppressed:
    they reveal no one, and hiding them would hide that a ward is missing. `forced`
    marks rows to hide as if small: a row that adds up cells another figure hides
    (a deprivation decile holding a hidden ward)."""
    keys = [count, *values]
    groups: dict[Hashable, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[group(row) if group else None].append(row)
    for members in groups.values():
        small = [row for row in members if 0 < (row.get(count) or 0) < threshold
                 or (forced is not None and (row.get(count) or 0) > 0 and forced(row))]
        for row in small:
            hide(row, keys)
        if len(small) == 1:
            others = sorted((row for row in members if row is not small[0] and row.get(count)),
                            key=lambda row: row[count])
            if others:
                hide(others[0], keys)


def suppress_columns(
    rows: list[dict[str, Any]],
    threshold: int,
    specs: Iterable[tuple[str, Iterable[str]]],
) -> None:
    """Cell by cell, for tables whose columns each count their own members: for each
    (count key, value keys), a row whose count is under `threshold` loses them; if a
    column then has exactly one hidden row, its smallest other row is hidden too
    (the column's total may be shown elsewhere). Keys starting with "_n_" are
    internal counts and are dropped afterwards."""
    for count, values in specs:
        keys = [count, *values]
        small = [row for row in rows if 0 < (row.get(count) or 0) < threshold]
        for row in small:
            hide(row, [key for key in keys if not key.startswith("_n_")])
            row[count] = None
        if len(small) == 1:
            others = sorted((row for row in rows if row is not small[0] and row.get(count)),
                            key=lambda row: row[count])
            if others:
                hide(others[0], [key for key in keys if not key.startswith("_n_")])
                others[0][count] = None
    for row in rows:
        for key in [key for key in row if key.startswith("_n_")]:
            del row[key]
