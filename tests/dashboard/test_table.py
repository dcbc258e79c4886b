"""Suppression, filters and CSV, without a database."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from rewards.dashboard import Column, Filters, Table
from rewards.dashboard.table import suppress, suppress_columns


def test_a_small_cell_is_hidden_and_its_smallest_neighbour_too() -> None:
    rows = [{"ward": "A", "members": 4, "actions": 9}, {"ward": "B", "members": 40, "actions": 90},
            {"ward": "C", "members": 25, "actions": 70}, {"ward": "D", "members": 0, "actions": 0}]
    suppress(rows, 10, "members", ["actions"])
    assert rows[0]["members"] is None and rows[0]["actions"] is None
    assert rows[0]["_suppressed"] == ["members", "actions"]
    # With one hidden cell, the total less the others would give it back: C (the
    # smallest other non-empty cell) goes too; the empty ward stays visible.
    assert rows[2]["_suppressed"] == ["members", "actions"]
    assert rows[1]["members"] == 40 and "_suppressed" not in rows[1]
    assert rows[3]["members"] == 0 and "_suppressed" not in rows[3]


def test_two_small_cells_need_no_complement_and_groups_are_separate() -> None:
    rows = [{"m": "Jan", "members": 3}, {"m": "Jan", "members": 5}, {"m": "Jan", "members": 50},
            {"m": "Feb", "members": 50}, {"m": "Feb", "members": 60}]
    suppress(rows, 10, "members", [], group=lambda row: row["m"])
    assert [row["members"] for row in rows] == [None, None, 50, 50, 60]


def test_column_suppression_drops_internal_counts() -> None:
    rows = [{"hour": 1, "mon": 30, "_n_mon": 3}, {"hour": 2, "mon": 80, "_n_mon": 30},
            {"hour": 3, "mon": 90, "_n_mon": 40}]
    suppress_columns(rows, 10, [("_n_mon", ["mon"])])
    assert [row["mon"] for row in rows] == [None, None, 90]
    assert all(not any(key.startswith("_n_") for key in row) for row in rows)


def test_csv_says_suppressed_and_neutralises_formulas() -> None:
    table = Table("t", "T", [Column("name", "Name", "Enw", "text"),
                             Column("n", "Members", "Aelodau")],
                  [{"name": "=HYPERLINK(\"x\")", "n": 12},
                   {"name": "Armley", "n": None, "_suppressed": ["n"]}])
    lines = table.to_csv().splitlines()
    assert lines[0] == "Name,Members"
    assert lines[1] == "\"'=HYPERLINK(\"\"x\"\")\",12"
    assert lines[2] == "Armley,suppressed"
    body = table.to_json()
    assert body["rows"][1] == {"name": "Armley", "n": None, "_suppressed": ["n"]}
    assert body["columns"][1] == {"key": "n", "label": "Members", "label_cy": "Aelodau",
                                  "kind": "int"}


def test_csv_in_welsh_gives_welsh_labels_and_row_words() -> None:
    table = Table("t", "T", [Column("ward", "Ward", "Ward", "text"),
                             Column("phase", "Phase", "Cam", "text"),
                             Column("n", "Members", "Aelodau")],
                  [{"ward": "All wards", "ward_cy": "Pob ward", "phase": "before",
                    "phase_cy": "cyn", "n": 12},
                   {"ward": "Armley", "phase": "=x", "phase_cy": "=y", "n": None,
                    "_suppressed": ["n"]}])
    assert table.to_csv("cy").splitlines() == ["Ward,Cam,Aelodau", "Pob ward,cyn,12",
                                               "Armley,'=y,suppressed"]
    assert table.to_csv().splitlines() == table.to_csv("en").splitlines() == [
        "Ward,Phase,Members", "All wards,before,12", "Armley,'=x,suppressed"]


def test_filters_from_query_arguments() -> None:
    f = Filters.from_args({"from": "2026-01-15", "to": "2026-03-02", "ward": " Armley ",
                           "category": "travel", "action_type": ""})
    assert f == Filters(date(2026, 1, 15), date(2026, 3, 2), "Armley", "travel", None)
    assert f.months == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    default = Filters.from_args({"to": "2026-06-30"})
    assert default.date_to - default.date_from == timedelta(days=89)


@pytest.mark.parametrize("args, message", [
    ({"from": "2026-13-01"}, "from must be a date"),
    ({"to": "yesterday"}, "to must be a date"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "from must not be after to"),
    ({"category": "sport"}, "category must be one of"),
    ({"from": "2000-01-01", "to": "2026-01-01"}, "at most"),
])
def test_bad_filters_are_refused(args: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Filters.from_args(args)
