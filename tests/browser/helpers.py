"""Reading a figure's numbers off the page, out of the API and out of the CSV, in one
shape so the tests can compare them: a list of rows, each {column key: value}, where a
suppressed cell is the string SUPPRESSED."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Flask

from .conftest import ANALYST_EMAIL, ANALYST_PASSWORD

SUPPRESSED = "SUPPRESSED"

READ_TABLE = r"""(name) => {
  const table = document.getElementById(name + "-table");
  if (!table) return null;
  const keys = [...table.querySelectorAll("thead th")].map(th => th.dataset.key);
  return [...table.querySelectorAll("tbody tr")].map(tr => {
    const row = {};
    [...tr.children].forEach((cell, i) => {
      row[keys[i]] = cell.dataset.suppressed === "true"
        ? {suppressed: cell.textContent.replace(/\s+/g, " ").trim()}
        : (cell.dataset.value === undefined ? null : cell.dataset.value);
    });
    return row;
  });
}"""


def _same(value: Any) -> Any:
    """A number however it was written ("12", 12, 12.0) compares as one float."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def page_rows(tab: Any, name: str, min_cell: int = 10) -> list[dict[str, Any]]:
    rows = tab.evaluate(READ_TABLE, name)
    assert rows is not None, f"no table for {name} on {tab.url}"
    said = f"suppressed (fewer than {min_cell} members)"
    out = []
    for row in rows:
        shaped = {}
        for key, value in row.items():
            if isinstance(value, dict):
                assert value["suppressed"] == said, value  # said in words, never blank
                shaped[key] = SUPPRESSED
            else:
                shaped[key] = _same(value)
        out.append(shaped)
    return out


def api_token(app: Flask) -> str:
    response = app.test_client().post(
        "/v1/auth/login", json={"email": ANALYST_EMAIL, "password": ANALYST_PASSWORD})
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def api_figure(app: Flask, name: str, query: dict[str, str]) -> dict[str, Any]:
    response = app.test_client().get(
        f"/v1/admin/dashboard/{name}", query_string=query,
        headers={"Authorization": f"Bearer {api_token(app)}"})
    assert response.status_code == 200, response.json
    return response.json


def api_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    keys = [column["key"] for column in body["columns"]]
    out = []
    for row in body["rows"]:
        hidden = set(row.get("_suppressed") or ())
        out.append({key: SUPPRESSED if key in hidden else _same(row.get(key)) for key in keys})
    return out


def csv_rows(text: str, keys: list[str]) -> list[dict[str, Any]]:
    lines = list(csv.reader(io.StringIO(text)))
    out = []
    for line in lines[1:]:
        out.append({key: SUPPRESSED if cell == "suppressed" else _same(cell if cell != "" else None)
                    for key, cell in zip(keys, line, strict=True)})
    return out
