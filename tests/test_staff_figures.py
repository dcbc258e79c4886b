"""How the staff pages present a computed figure: pure functions, no database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from rewards.dashboard.spec import FigureSpec
from rewards.dashboard.table import Column, Table, suppress
from rewards.web.staff_figures import figure_view, format_value, headlines

SAID = "suppressed (fewer than 10 members)"


def _spec(chart: str = "bar") -> FigureSpec:
    return FigureSpec(name="active", title="Active members", title_cy="Aelodau gweithgar",
                      description="Who was active.", chart=chart, x="ward",
                      y=["active_7d", "active_30d"], compute=lambda ctx: None)


def _table() -> Table:
    rows = [{"ward": "All wards", "active_7d": 120, "active_30d": 400},
            {"ward": "Armley", "active_7d": 4, "active_30d": 40},
            {"ward": "Beeston <& Holbeck>", "active_7d": 60, "active_30d": 150},
            {"ward": "Chapel Allerton", "active_7d": 56, "active_30d": 210}]
    suppress(rows[1:], 10, "active_7d", [])
    return Table(name="active", title="Active members", rows=rows, notes=["A note."],
                 columns=[Column("ward", "Ward", "Ward", "text"),
                          Column("active_7d", "Active in 7 days", "Gweithgar 7 diwrnod"),
                          Column("active_30d", "Active in 30 days", "Gweithgar 30 diwrnod")])


def test_numbers_read_as_people_write_them() -> None:
    assert format_value(1234567, "int") == "1,234,567"
    assert format_value(Decimal("12.5"), "money") == "£12.50"
    assert format_value(1234.5, "money") == "£1,234.50"
    assert format_value(12.3456, "percent") == "12.35%"
    assert format_value(2.0 / 3, "number") == "0.67"
    assert format_value(date(2026, 10, 1), "date") == "2026-10-01"
    assert format_value(None, "int") == ""
    assert format_value("Armley", "text") == "Armley"


def test_suppressed_cells_are_said_in_words_and_left_out_of_the_chart() -> None:
    view = figure_view(_table(), _spec(), "en", SAID)
    armley = view.rows[1]
    assert [cell.text for cell in armley] == ["Armley", SAID, "40"]
    assert armley[1].suppressed and armley[1].value is None
    # Complementary suppression hid the next smallest ward too: two cells in all.
    assert view.suppressed_count == 2
    chart = view.chart_data
    assert chart["type"] == "bar"
    assert chart["labels"] == ["Armley", "Beeston <& Holbeck>", "Chapel Allerton"]  # no total
    seven = next(s for s in chart["datasets"] if s["key"] == "active_7d")
    assert seven["data"] == [None, 60, None]  # gaps, never zeros
    assert seven["label"] == "Active in 7 days"


def test_welsh_titles_and_labels() -> None:
    view = figure_view(_table(), _spec(), "cy", "wedi'i atal")
    assert view.title == "Aelodau gweithgar"
    assert [c["label"] for c in view.columns] == ["Ward", "Gweithgar 7 diwrnod",
                                                  "Gweithgar 30 diwrnod"]
    assert view.rows[1][1].text == "wedi'i atal"


def test_headlines_come_from_the_tables_as_shown() -> None:
    money = Table(name="money", title="Money", rows=[
        {"measure": "issued", "label": "Points issued", "label_cy": "Pwyntiau a roddwyd",
         "points": 5000, "pounds": 50.0},
        {"measure": "outstanding", "label": "Outstanding", "label_cy": "Heb eu defnyddio",
         "points": 1200, "pounds": 12.0}],
        columns=[Column("label", "Measure", "Mesur", "text"),
                 Column("points", "Points", "Pwyntiau"),
                 Column("pounds", "Pounds", "Punnoedd", "money")])
    actions = Table(name="actions", title="Actions", rows=[
        {"type_code": "bus", "members": 40, "actions": 300},
        {"type_code": "swim", "members": 12, "actions": 45},
        {"type_code": "litter", "members": 3, "actions": 7}],
        columns=[Column("type_code", "Type", "Math", "text"),
                 Column("members", "Members", "Aelodau"),
                 Column("actions", "Actions", "Gweithredoedd")])
    suppress(actions.rows, 10, "members", ["actions"])
    views = {"active": figure_view(_table(), _spec(), "en", SAID),
             "money": figure_view(money, _spec(), "en", SAID),
             "actions": figure_view(actions, _spec(), "en", SAID)}
    found = {h.key: h for h in headlines(views)}
    assert found["active_30d"].value == 400  # the "All wards" row
    assert found["active_7d"].value == 120
    assert found["points_issued"].value == 5000
    assert (found["liability"].value, found["liability_pounds"].text) == (1200, "£12.00")
    # litter is under the threshold and swim is hidden with it: only bus is added up,
    # and the headline says two cells are left out rather than revealing them.
    assert (found["actions"].value, found["actions"].hidden_parts) == (300, 2)
    welsh = figure_view(money, _spec(), "cy", SAID)
    assert welsh.rows[0][0].text == "Pwyntiau a roddwyd"
    assert welsh.rows[0][0].value == "Points issued"  # the API's value stays the same
