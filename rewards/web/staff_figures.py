"""What the staff pages show of a dashboard figure: its table with each cell ready to
print (suppressed cells said in words), and the chart's series. Deciding only: the
figures themselves are computed by `rewards.dashboard`, the same call the API makes, so
the page, the JSON and the CSV carry the same numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

# The pages and the figures each shows, in the order they are shown.
GROUPS: dict[str, tuple[str, ...]] = {
    "reach": ("reach_wards", "reach_channel"),
    "engagement": ("active", "actions", "actions_by_ward", "actions_by_hour", "rewards"),
    "behaviour": ("baseline", "retention", "campaign"),
    "impact": ("impact",),
    "money": ("money", "forecast", "owed_partners"),
    "fairness": ("fairness_deprivation", "fairness_age"),
}
# The printable monthly report: what a cabinet paper quotes.
REPORT_FIGURES = ("active", "actions", "impact", "money", "fairness_deprivation")




@dataclass
class Cell:
    key: str
    value: Any
    text: str
    suppressed: bool


@dataclass
class FigureView:
    name: str
    title: str
    description: str
    chart: str
    columns: list[dict[str, str]]
    rows: list[list[Cell]]
    notes: list[str]
    suppressed_count: int
    chart_data: dict[str, Any] = field(default_factory=dict)


def format_value(value: Any, kind: str) -> str:
    """A cell as a person reads it: thousands separated, pounds with pence, percentages
    with a % sign (the figures give them as 0-100). The raw value stays in the page's
    data-value attribute, so nothing is lost to rounding. Welsh writes numbers the same."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, (int, float, Decimal)):
        return str(value)
    if kind == "money":
        return f"£{value:,.2f}"
    if kind == "percent":
        return f"{float(value):,.2f}%"
    if isinstance(value, int) or (isinstance(value, Decimal) and value == value.to_integral()):
        return f"{int(value):,}"
    return f"{float(value):,.2f}"


def is_total(label: Any) -> bool:
    """A row that sums the others ("All wards", "Total"): shown in the table, not charted."""
    text = str(label or "").strip().lower()
    return text.startswith(("all ", "total")) or text in ("all", "cyfanswm")


def _label(column: Any, language: str) -> str:
    if language == "cy" and getattr(column, "label_cy", None):
        return column.label_cy
    return column.label


def figure_view(table: Any, spec: Any, language: str, suppressed_text: str) -> FigureView:
    """The table and chart of one computed figure, in `language`."""
    columns = [{"key": c.key, "label": _label(c, language), "kind": c.kind or ""}
               for c in table.columns]
    kinds = {c["key"]: c["kind"] for c in columns}
    rows: list[list[Cell]] = []
    suppressed_count = 0
    for row in table.rows:
        hidden = set(row.get("_suppressed") or ())
        cells = []
        for column in columns:
            key = column["key"]
            value = row.get(key)
            is_suppressed = key in hidden
            suppressed_count += is_suppressed
            text = suppressed_text if is_suppressed else format_value(value, kinds[key])
            cells.append(Cell(key, None if is_suppressed else value, text, is_suppressed))
        rows.append(cells)
    title = (getattr(spec, "title_cy", None) if language == "cy" else None) or spec.title
    description = ((getattr(spec, "description_cy", None) if language == "cy" else None)
                   or getattr(spec, "description", "") or "")
    view = FigureView(name=table.name, title=title, description=description,
                      chart=getattr(spec, "chart", "bar") or "bar", columns=columns, rows=rows,
                      notes=[str(note) for note in (table.notes or ())],
                      suppressed_count=suppressed_count)
    view.chart_data = chart_data(view, spec)
    return view


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        return float(value)
    return None


def chart_data(view: FigureView, spec: Any) -> dict[str, Any]:
    """Labels and one series per y column for Chart.js. A suppressed cell is a gap in
    the line or bar (null), never a zero."""
    x = getattr(spec, "x", None) or (view.columns[0]["key"] if view.columns else "")
    ys = list(getattr(spec, "y", None) or [c["key"] for c in view.columns[1:]])
    labels_by_key = {c["key"]: c["label"] for c in view.columns}
    index = {c["key"]: i for i, c in enumerate(view.columns)}
    labels = []
    series: dict[str, list[Any]] = {key: [] for key in ys if key in index}
    for cells in view.rows:
        if x in index and is_total(cells[index[x]].value):
            continue
        labels.append(cells[index[x]].text if x in index else "")
        for key in series:
            cell = cells[index[key]]
            series[key].append(None if cell.suppressed else _number(cell.value))
    return {
        "type": view.chart,
        "labels": labels,
        "datasets": [{"key": key, "label": labels_by_key[key], "data": data}
                     for key, data in series.items()],
    }


def headline(view: FigureView | None, key: str) -> Cell | None:
    """The figure's whole-scheme value of column `key`: its total row ("All wards",
    "Total"), or its only row. None when it has no such single number."""
    if view is None or not view.rows:
        return None
    keys = [c["key"] for c in view.columns]
    if key not in keys:
        return None
    if len(view.rows) == 1:
        return view.rows[0][keys.index(key)]
    for cells in view.rows:
        if is_total(cells[0].value):
            return cells[keys.index(key)]
    return None
