"""Every CSV the scheme writes goes through here, so no cell can run as a formula when a
council officer opens the file in a spreadsheet (CSV or "formula" injection)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

# A spreadsheet treats a cell starting with one of these as a formula (or, for tab and
# carriage return, strips them and then does); some also after leading spaces or line
# breaks, and some read the fullwidth forms (＝＋－＠) as the ASCII ones.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d",
                  "\uff20")


def looks_like_formula(text: str) -> bool:
    return text.startswith(FORMULA_STARTS) or text.lstrip(" \t\r\n").startswith(
        FORMULA_STARTS)


def safe_cell(value: Any) -> Any:
    """Text starting like a formula gets a leading apostrophe (shown as text, not run);
    numbers are written as they are (a negative amount is a number, not a formula)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = str(value)
        return "'" + text if looks_like_formula(text) else text
    return value


def csv_text(header: Iterable[Any], rows: Iterable[Iterable[Any]],
             lineterminator: str = "\r\n") -> str:
    """The whole file as text: a header row then `rows`, every cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=lineterminator)
    writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()
