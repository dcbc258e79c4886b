"""The council staff dashboard's figures: aggregates only, small cells suppressed.

`FIGURES` names every figure; `compute(name, filters)` answers one as a `Table`, read
from the rollups (rewards.dashboard.refresh keeps them) or, given `source=Raw()`, from
the raw tables: the tests and the benchmark check the two agree."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from ..extensions import db
from . import behaviour, engagement, money
from .context import Context, ward_name
from .filters import Filters
from .sources import Raw, Rollups
from .spec import FigureSpec
from .table import Column, Table, hide

DEFAULT_MIN_CELL = 10


def _spec(name: str, title: str, title_cy: str, description: str, chart: str, x: str,
          y: list[str], compute) -> tuple[str, FigureSpec]:
    return name, FigureSpec(name, title, title_cy, description, chart, x, y, compute)


FIGURES: dict[str, FigureSpec] = dict([
    _spec("reach_wards", "Members joined by ward", "Aelodau a ymunodd fesul ward",
          "Members who joined, by ward and month, and as a share of the ward's adult "
          "population.", "bar", "ward", ["joined"], engagement.reach_wards),
    _spec("reach_channel", "Members joined by channel", "Aelodau a ymunodd fesul sianel",
          "Members who joined in the app and card-only members enrolled at a council desk, "
          "by month.", "stacked", "month", ["app", "desk"], engagement.reach_channel),
    _spec("active", "Active members", "Aelodau gweithgar",
          "Members with a counted action in the last 7 and 30 days, by ward.", "bar", "ward",
          ["active_7d", "active_30d"], engagement.active),
    _spec("actions", "Actions and points by type", "Gweithredoedd a phwyntiau fesul math",
          "Counted actions, points awarded and members taking part, by action type and "
          "category.", "bar", "type_code", ["actions", "points"], engagement.actions),
    _spec("actions_by_ward", "Actions by ward", "Gweithredoedd fesul ward",
          "Counted actions, points and members taking part, by the members' ward.", "bar",
          "ward", ["actions", "points"], engagement.actions_by_ward),
    _spec("actions_by_hour", "Actions by hour and day", "Gweithredoedd fesul awr a diwrnod",
          "When actions happen: hour of day by day of the week.", "stacked", "hour",
          list(engagement.WEEKDAYS), engagement.actions_by_hour),
    _spec("rewards", "Rewards by partner and offer", "Gwobrau fesul partner a chynnig",
          "Rewards claimed, redeemed and expired unused, by partner and offer.", "stacked",
          "offer", ["claimed", "redeemed", "expired"], money.rewards),
    _spec("baseline", "Behaviour against each member's baseline",
          "Ymddygiad o'i gymharu â llinell sylfaen pob aelod",
          "Actions per member-week in members' first four weeks (their baseline) against "
          "later months, per action type.", "bar", "type_code",
          [key for key, *_ in behaviour.TENURE], behaviour.baseline),
    _spec("retention", "Retention by monthly cohort", "Cadw aelodau fesul carfan fisol",
          "Share of each month's new members still active N months after joining.", "line",
          "cohort", [f"m{n}" for n in range(7)], engagement.retention),
    _spec("campaign", "Campaigns: before, during, after", "Ymgyrchoedd: cyn, yn ystod, ar ôl",
          "For rules with a window, actions per active member in the weeks before, during "
          "and after.", "line", "week", ["actions_per_member"], behaviour.campaign),
    _spec("impact", "Estimated impact", "Effaith amcangyfrifedig",
          "CO2 avoided and car kilometres replaced (staff-set factors), volunteering hours "
          "and leisure visits.", "bar", "type_code", ["co2_kg", "car_km"], behaviour.impact),
    _spec("money", "Points and money", "Pwyntiau ac arian",
          "Points issued, spent, donated, expired and outstanding, in points and money; "
          "cost per verified action and per active member.", "bar", "label", ["points"],
          money.money),
    _spec("forecast", "Next 90 days", "Y 90 diwrnod nesaf",
          "Expected redemptions and what they will cost, vouchers and points due to expire.",
          "bar", "window", ["redemptions", "vouchers_expiring"], money.forecast),
    _spec("owed_partners", "Owed to partners", "Yn ddyledus i bartneriaid",
          "Redemptions and what the council owes each partner for them.", "bar", "partner",
          ["owed_pounds"], money.owed_partners),
    _spec("fairness_deprivation", "Participation by deprivation", "Cyfranogiad fesul amddifadedd",
          "Active members per 1,000 adults, actions and points per member, by the ward's "
          "Index of Multiple Deprivation decile.", "bar", "imd_decile",
          ["participation_per_1000", "points_per_member"], engagement.fairness_deprivation),
    _spec("fairness_age", "Participation by age band", "Cyfranogiad fesul band oedran",
          "Active members, actions and points per member, by age band where members gave "
          "a birth year.", "bar", "age_band", ["members", "points_per_member"],
          engagement.fairness_age),
])


def min_cell() -> int:
    if has_app_context():
        return int(current_app.config.get("DASHBOARD_MIN_CELL", DEFAULT_MIN_CELL))
    return DEFAULT_MIN_CELL


# Figures with a row per ward: under a ward filter, that ward's row of the figure for
# every ward, suppressed as it is there (computed for the ward alone, the one row would
# show what the table for every ward hides beside a small ward).
PER_WARD = ("reach_wards", "active", "actions_by_ward")
# Figures that do not take the ward filter: rewards, money and partners.
WARD_BLIND = ("rewards", "money", "forecast", "owed_partners")
# Under a ward filter, what says whether the ward's figures may be shown: members who
# joined (by month) for the figures of joiners, members taking part for the rest.
JOINERS = ("reach_channel", "retention")
VALUE_KINDS = ("int", "number", "percent", "money")


def compute(name: str, filters: Filters, *, source: Rollups | Raw | None = None,
            session: Session | None = None, threshold: int | None = None) -> Table:
    """One figure for `filters`. KeyError for an unknown name."""
    spec = FIGURES[name]
    ctx = Context(session or db.session, filters, source or Rollups(),
                  min_cell() if threshold is None else threshold)
    if filters.ward is None or name in WARD_BLIND:
        columns, rows, notes = spec.compute(ctx)
    elif name in PER_WARD:
        columns, rows, notes = spec.compute(_every_ward(ctx))
        rows = [row for row in rows if row.get("ward") == ward_name(filters.ward)]
    else:
        columns, rows, notes = spec.compute(ctx)
        notes = [*notes, *_gate_ward(ctx, name, columns, rows)]
    notes = [*notes, *engagement.illustrative_notes(name, ctx, rows)]
    notes = [*notes, f"Cells counting fewer than {ctx.threshold} members are suppressed, "
             "with the smallest other cell of their group when only one would be."]
    return Table(name, spec.title, columns, rows, notes, filters.to_json())


def _every_ward(ctx: Context) -> Context:
    return replace(ctx, filters=replace(ctx.filters, ward=None))


def _gate_ward(ctx: Context, name: str, columns: list[Column],
               rows: list[dict[str, Any]]) -> list[str]:
    """A ward hidden in the figures by ward (under the same period, category and type)
    shows none of its figures alone either: its totals, less the wards shown, would give
    back the small ward it was hidden beside. Hides in place; returns the note to add."""
    values = [column.key for column in columns if column.kind in VALUE_KINDS]
    wanted = ward_name(ctx.filters.ward or "")
    if name in JOINERS:  # by month: the months whose joiners the ward's row hides
        hidden = {row["month"] for row in engagement.reach_wards(_every_ward(ctx))[1]
                  if row["ward"] == wanted and "joined" in row.get("_suppressed", ())}
        key = "month" if name == "reach_channel" else "cohort"
        gated = [row for row in rows if row.get(key) in hidden]
    else:
        by_ward = engagement.actions_by_ward(_every_ward(ctx))[1]
        gated = rows if any(row["ward"] == wanted and "members" in row.get("_suppressed", ())
                            for row in by_ward) else []
    for row in gated:
        hide(row, values)
    if not gated:
        return []
    return ["The ward's figures are suppressed where the figures by ward suppress it "
            "(too few members, or hidden beside a ward that has too few)."]


__all__ = ["FIGURES", "Column", "FigureSpec", "Filters", "Raw", "Rollups", "Table", "compute"]
