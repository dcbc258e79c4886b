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
    numeric: bool = False


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
    # The language of the description and notes: the figures give them in English only
    # unless a Welsh description exists, and a Welsh page marks them (WCAG 3.1.2).
    description_lang: str = "en"
    title_lang: str = "en"
    raw_rows: list[dict[str, Any]] = field(default_factory=list)


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
        return f"{currency_symbol()}{value:,.2f}"
    if kind == "percent":
        return f"{float(value):,.2f}%"
    if isinstance(value, int) or (isinstance(value, Decimal) and value == value.to_integral()):
        return f"{int(value):,}"
    return f"{float(value):,.2f}"


# Symbols for the currencies of schemes we know of; any other reads as its code ("CHF 4.50").
CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "ILS": "₪", "SGD": "S$", "USD": "$"}


def currency_symbol() -> str:
    """The scheme's currency (SCHEME_CURRENCY) as it goes before an amount."""
    from flask import current_app, has_app_context

    code = current_app.config.get("SCHEME_CURRENCY", "GBP") if has_app_context() else "GBP"
    return CURRENCY_SYMBOLS.get(code, f"{code} ")


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
            if language == "cy" and kinds[key] == "text" and row.get(f"{key}_cy"):
                text = str(row[f"{key}_cy"])  # a row's own Welsh label ("label_cy")
            cells.append(Cell(key, None if is_suppressed else value, text, is_suppressed,
                              kinds[key] not in ("text", "date")))
        rows.append(cells)
    title = (getattr(spec, "title_cy", None) if language == "cy" else None) or spec.title
    welsh_description = getattr(spec, "description_cy", None) if language == "cy" else None
    description = welsh_description or getattr(spec, "description", "") or ""
    view = FigureView(name=table.name, title=title, description=description,
                      chart=getattr(spec, "chart", "bar") or "bar", columns=columns, rows=rows,
                      notes=[str(note) for note in (table.notes or ())],
                      suppressed_count=suppressed_count, raw_rows=list(table.rows),
                      description_lang="cy" if welsh_description else "en",
                      title_lang="cy" if language == "cy" and getattr(spec, "title_cy", None)
                      else "en")
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


def cell_where(view: FigureView | None, column: str, **match: Any) -> Cell | None:
    """The cell of `column` in the first row whose raw values equal `match` (e.g.
    measure="issued"), or whose first cell is a total row when `match` is empty."""
    if view is None:
        return None
    keys = [c["key"] for c in view.columns]
    if column not in keys:
        return None
    for raw, cells in zip(view.raw_rows, view.rows, strict=True):
        if match and all(raw.get(k) == v for k, v in match.items()):
            return cells[keys.index(column)]
        if not match and is_total(cells[0].value):
            return cells[keys.index(column)]
    return None


@dataclass
class Headline:
    key: str  # the catalogue key of its label
    value: Any  # None when suppressed
    text: str
    suppressed: bool = False
    hidden_parts: int = 0  # cells left out of a sum because they are suppressed


def headlines(views: dict[str, FigureView]) -> list[Headline]:
    """The overview's few numbers, each read from a figure's table as it is shown. A
    sum over a figure's rows counts only the cells shown and says how many it leaves
    out: adding the suppressed ones back would let the total reveal them."""
    found: list[Headline] = []
    for key, figure, column, match in (
            ("active_30d", "active", "active_30d", {}),
            ("active_7d", "active", "active_7d", {}),
            ("points_issued", "money", "points", {"measure": "issued"}),
            ("liability", "money", "points", {"measure": "outstanding"}),
            ("liability_pounds", "money", "pounds", {"measure": "outstanding"})):
        cell = cell_where(views.get(figure), column, **match)
        if cell is not None:
            found.append(Headline(key, cell.value, cell.text, cell.suppressed))
    actions = views.get("actions")
    if actions is not None and "actions" in [c["key"] for c in actions.columns]:
        index = [c["key"] for c in actions.columns].index("actions")
        shown = [row[index] for row in actions.rows if not row[index].suppressed]
        total = sum(int(cell.value or 0) for cell in shown)
        found.insert(2, Headline("actions", total, format_value(total, "int"),
                                 hidden_parts=len(actions.rows) - len(shown)))
    return found
