"""The open-data export: the published figures' suppressed aggregates as CSV files,
with a data dictionary, the form councils publish on their open-data portals."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date

from . import FIGURES, compute
from .engagement import ILLUSTRATIVE
from .filters import Filters, months_between, next_month, today
from .table import SUPPRESSED, Table, safe_cell

# Figures about residents' take-up and behaviour; money owed to named partners and
# forecasts stay internal.
PUBLISHED = ("reach_wards", "reach_channel", "actions", "actions_by_ward", "actions_by_hour",
             "retention", "impact", "fairness_deprivation", "fairness_age")
UNITS = {"text": "text", "int": "count", "number": "number", "percent": "percent",
         "money": "money", "date": "date (YYYY-MM-DD)"}


def unit(kind: str) -> str:
    """A column's unit for the dictionary; money says the scheme's currency (GBP, EUR...)."""
    if kind == "money":
        from flask import current_app, has_app_context

        code = current_app.config.get("SCHEME_CURRENCY", "GBP") if has_app_context() else "GBP"
        return f"money ({code})"
    return UNITS[kind]


def default_filters() -> Filters:
    """The last twelve whole months, ending with the current one."""
    end = today()
    start = months_between(date(end.year - 1, end.month, 1), end)[1]
    return Filters(start, end)


ILLUSTRATIVE_CY = ("Ffigurau enghreifftiol: mae rhai o ffeithiau'r wardiau (poblogaeth "
                   "oedolion, degradd amddifadedd) yn werthoedd enghreifftiol (fel y mae'r "
                   "demo yn eu llwytho), nid ystadegau swyddogol.")


def tables(filters: Filters) -> list[Table]:
    return [compute(name, filters) for name in PUBLISHED]


def illustrative(table: Table) -> str | None:
    """The figure's note that ward facts it used are illustrative, if it has one."""
    return next((note for note in table.notes if note.startswith(ILLUSTRATIVE)), None)


def dictionary(found: list[Table], threshold: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["file", "column", "meaning", "meaning_cy", "unit", "suppression"])
    rule = (f"'{SUPPRESSED}' where the cell counts fewer than {threshold} distinct members; "
            "when only one cell of a group would be, the smallest other one is too.")
    for table in found:
        writer.writerow([f"{table.name}.csv", "", safe_cell(FIGURES[table.name].description),
                         "", "", safe_cell(" ".join(table.notes))])
        note = illustrative(table)
        if note:  # said on a row of its own, in both languages, not only among the notes
            writer.writerow([f"{table.name}.csv", "", safe_cell(note),
                             safe_cell(ILLUSTRATIVE_CY), "", ""])
        for column in table.columns:
            writer.writerow([f"{table.name}.csv", column.key, safe_cell(column.label),
                             safe_cell(column.label_cy), unit(column.kind),
                             rule if column.kind in ("int", "number", "percent") else ""])
    return out.getvalue()


def archive(filters: Filters, threshold: int) -> bytes:
    found = tables(filters)
    flagged = [f"{table.name}.csv" for table in found if illustrative(table)]
    warning = (f"ILLUSTRATIVE FIGURES: {', '.join(flagged)} use ward facts (adult "
               "populations, deprivation deciles) that are illustrative values, as the demo "
               "loads them, not official statistics; dictionary.csv says which. Do not "
               "publish them as real figures.\n") if flagged else ""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for table in found:
            bundle.writestr(f"{table.name}.csv", table.to_csv())
        bundle.writestr("dictionary.csv", dictionary(found, threshold))
        bundle.writestr("README.txt", warning + (
            f"Citizen rewards scheme: published aggregates from {filters.date_from} to "
            f"{filters.date_to} (whole months). Every figure counts members in aggregate; "
            f"cells counting fewer than {threshold} members are shown as '{SUPPRESSED}'. "
            "See dictionary.csv for each column.\n"))
    return buffer.getvalue()


__all__ = ["PUBLISHED", "archive", "default_filters", "dictionary", "next_month", "tables"]
