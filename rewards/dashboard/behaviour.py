"""Behaviour change and impact: each member against their own first weeks, campaigns
before, during and after, and what the actions are estimated to have saved."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import Date, cast, func, select, text, type_coerce

from ..extensions import db
from ..models import ActionType, Rule, RuleVersion
from . import welsh
from .context import Context, col, ratio
from .counts import campaign_key, members_over_months, members_per_period, sums
from .filters import scheme_zone, today
from .settings import impact_factors
from .sources import as_date
from .table import suppress, suppress_columns

# Weeks of membership: (key, first day, day after the last, English, Welsh).
TENURE = (
    ("weeks_1_4", 0, 28, "Weeks 1-4 (baseline)", "Wythnosau 1-4 (llinell sylfaen)"),
    ("months_2_3", 28, 91, "Months 2-3", "Misoedd 2-3"),
    ("months_4_6", 91, 182, "Months 4-6", "Misoedd 4-6"),
    ("later", 182, None, "After 6 months", "Ar ôl 6 mis"),
)
CAMPAIGN_WEEKS = 4


def baseline(ctx: Context) -> tuple[list, list, list]:
    jd = ctx.source.join_days()
    stmt = select(jd.c.day, func.sum(jd.c.members)).where(
        jd.c.day >= ctx.first_month, jd.c.day < ctx.end_month)
    if ctx.filters.ward is not None:
        stmt = stmt.where(jd.c.ward == ctx.filters.ward)
    now = today()
    # Member-weeks each cohort member has been a member within each window, so far,
    # from the number who joined on each day.
    exposure = {key: 0.0 for key, *_ in TENURE}
    exposed = {key: 0 for key, *_ in TENURE}
    for day, count in sorted(ctx.session.execute(stmt.group_by(jd.c.day)),
                             key=lambda r: as_date(r[0])):
        tenure = (now - as_date(day)).days + 1
        for key, first, last, *_ in TENURE:
            days = min(tenure, last if last is not None else tenure) - first
            if days > 0:
                exposure[key] += int(count) * days / 7
                exposed[key] += int(count)
    tc = ctx.source.tenure_cells()
    cells = ctx.where(select(tc.c.category, tc.c.type_code, tc.c.window,
                             func.sum(tc.c.members), func.sum(tc.c.actions))
                      .where(tc.c.cohort >= ctx.first_month, tc.c.cohort < ctx.end_month), tc)
    actions: dict[tuple[str, str, str], int] = {}
    members: dict[tuple[str, str, str], int] = {}
    for category, type_code, window, count, total in ctx.session.execute(
            cells.group_by(tc.c.category, tc.c.type_code, tc.c.window)):
        actions[(category, type_code, window)] = int(total or 0)
        members[(category, type_code, window)] = int(count or 0)
    rows = []
    for category, type_code in sorted({(c, t) for c, t, _ in actions}):
        row: dict[str, Any] = {"type_code": type_code, "category": category,
                               "category_cy": welsh.category(category)}
        for key, *_ in TENURE:
            row[key] = ratio(actions.get((category, type_code, key), 0), exposure[key], 3)
            row[f"_n_{key}"] = members.get((category, type_code, key), 0)
        row["change_percent"] = (ratio(100 * (row["months_2_3"] - row["weeks_1_4"]),
                                       row["weeks_1_4"], 1)
                                 if row["weeks_1_4"] and row["months_2_3"] is not None else None)
        row["_n_change"] = min(row["_n_weeks_1_4"], row["_n_months_2_3"])
        rows.append(row)
    suppress_columns(rows, ctx.threshold, [(f"_n_{key}", [key]) for key, *_ in TENURE]
                     + [("_n_change", ["change_percent"])])
    columns = [col("type_code", "Action type", "Math o weithred", "text"),
               col("category", "Category", "Categori", "text")] + [
        col(key, f"{en}: actions per member-week", f"{cy}: gweithredoedd fesul aelod-wythnos",
            "number") for key, _, _, en, cy in TENURE] + [
        col("change_percent", "Months 2-3 against baseline (%)",
            "Misoedd 2-3 o'i gymharu â'r llinell sylfaen (%)", "percent")]
    notes = [f"Members who joined from {ctx.first_month:%B %Y} to "
             f"{ctx.filters.months[-1]:%B %Y}, all their counted actions since; each window's "
             "rate divides its actions by the member-weeks the cohort has spent in it so far "
             f"({', '.join(f'{k}: {exposed[k]} members' for k, *_ in TENURE)})."]
    return columns, rows, notes


def _campaigns(ctx: Context) -> list[tuple[str, list[str], date, date]]:
    """Rules whose current version has a window, overlapping the filter period."""
    zone = scheme_zone()
    stmt = (select(Rule.name, RuleVersion.action_types, RuleVersion.starts_at,
                   RuleVersion.ends_at)
            .join(RuleVersion, (RuleVersion.rule_id == Rule.id)
                  & (RuleVersion.version == Rule.current_version))
            .where(RuleVersion.ends_at.is_not(None)))
    found = []
    for name, types, starts_at, ends_at in ctx.session.execute(stmt):
        first = starts_at.astimezone(zone).date()
        last = (ends_at - timedelta(microseconds=1)).astimezone(zone).date()
        if first <= ctx.filters.date_to and last >= ctx.filters.date_from:
            found.append((name, list(types or []), first, last))
    return sorted(found, key=lambda c: (c[2], c[0]))


def week_of(day: Any) -> Any:
    """The Monday of a date column's ISO week, in the database."""
    if db.dialect == "sqlite":
        return type_coerce(func.date(day, "weekday 0", "-6 days"), Date)
    return cast(func.date_trunc("week", day), Date)


def _campaign_weeks(ctx: Context, types: list[str], categories: dict[str, str],
                    start: date, end: date) -> list[tuple[Any, int, int]]:
    """(Monday, distinct members, actions) of whole weeks from `start` to `end`'s week,
    for actions of `types`: the week cells of the one key that counts those types
    (one type, a whole category or every type); other sets of types read the weeks'
    member-day rows."""
    last = end + timedelta(days=6 - end.weekday())
    key = campaign_key(ctx, types, categories)
    if key is None:
        md = ctx.source.member_days()
        stmt = ctx.where(select(week_of(md.c.day), func.count(func.distinct(md.c.member_id)),
                                func.sum(md.c.actions))
                         .where(md.c.day >= start, md.c.day <= last,
                                md.c.type_code.in_(types)), md).group_by(text("1"))
        return [(week, int(m), int(a or 0)) for week, m, a in ctx.session.execute(stmt)]
    members = members_per_period(ctx, "week", start, last, ["first_period"], key=key)
    totals = sums(ctx, "week", ["period"], start, last, types=types)
    return [(week, count, totals.get((week,), (0,))[0])
            for (week,), count in members.items() if count]


def campaign(ctx: Context) -> tuple[list, list, list]:
    rows = []
    now = today()
    categories = {code: category for code, category in ctx.session.execute(
        select(ActionType.code, ActionType.category))}
    for name, types, first, last in _campaigns(ctx):
        monday = first - timedelta(days=first.weekday())
        start = monday - timedelta(weeks=CAMPAIGN_WEEKS)
        end = min(last + timedelta(weeks=CAMPAIGN_WEEKS), now)
        weeks: dict[date, dict[str, Any]] = {}
        week = start
        while week <= end:
            phase = ("before" if week + timedelta(days=6) < first
                     else "after" if week > last else "during")
            weeks[week] = {"campaign": name, "week": week, "phase": phase,
                           "phase_cy": welsh.phase(phase), "members": 0, "actions": 0}
            week += timedelta(weeks=1)
        for week, members, count in _campaign_weeks(ctx, types, categories, start, end):
            cell = weeks[as_date(week)]
            cell["members"], cell["actions"] = members, int(count or 0)
        campaign_rows = []
        for cell in weeks.values():
            cell["actions_per_member"] = ratio(cell["actions"], cell["members"])
            campaign_rows.append(cell)
        suppress(campaign_rows, ctx.threshold, "members", ["actions", "actions_per_member"])
        rows.extend(campaign_rows)
    columns = [col("campaign", "Campaign (rule)", "Ymgyrch (rheol)", "text"),
               col("week", "Week starting", "Wythnos yn dechrau", "date"),
               col("phase", "Phase", "Cam", "text"),
               col("members", "Active members", "Aelodau gweithgar"),
               col("actions", "Actions", "Gweithredoedd"),
               col("actions_per_member", "Actions per active member",
                   "Gweithredoedd fesul aelod gweithgar", "number")]
    return columns, rows, [
        f"Rules with an end date, {CAMPAIGN_WEEKS} weeks before to {CAMPAIGN_WEEKS} weeks "
        "after their window; actions of the rule's action types, by every member."]


def impact(ctx: Context) -> tuple[list, list, list]:
    factors = impact_factors(ctx.session)
    totals = sums(ctx, "ward", ["type_code", "category"])
    rows = []
    for (type_code, category), members in members_over_months(
            ctx, "ward", ["type_code", "category"], by_type=True).items():
        if not members:
            continue
        count, _points, km, hours = totals.get((type_code, category), (0, 0, 0.0, 0.0))
        f = factors.get(type_code, {})
        count, km, hours = int(count or 0), float(km or 0), float(hours or 0)
        rows.append({
            "type_code": type_code, "category": category,
            "category_cy": welsh.category(category), "members": members,
            "actions": count, "km": round(km, 1),
            "co2_kg": round(count * f.get("co2_kg", 0) + km * f.get("co2_kg_per_km", 0), 1),
            "car_km": round(count * f.get("car_km", 0) + km * f.get("car_km_per_km", 0), 1),
            "volunteering_hours": round(hours, 1) if category == "volunteering" else 0.0,
            "visits": count if category == "health" else 0,
        })
    rows.sort(key=lambda r: (r["category"], r["type_code"]))
    suppress(rows, ctx.threshold, "members",
             ["actions", "km", "co2_kg", "car_km", "volunteering_hours", "visits"])
    columns = [col("type_code", "Action type", "Math o weithred", "text"),
               col("category", "Category", "Categori", "text"),
               col("members", "Members", "Aelodau"), col("actions", "Actions", "Gweithredoedd"),
               col("km", "Distance reported (km)", "Pellter a adroddwyd (km)", "number"),
               col("co2_kg", "CO2 avoided (kg, estimate)", "CO2 a osgowyd (kg, amcangyfrif)",
                   "number"),
               col("car_km", "Car km replaced (estimate)", "Km car a ddisodlwyd (amcangyfrif)",
                   "number"),
               col("volunteering_hours", "Volunteering hours", "Oriau gwirfoddoli", "number"),
               col("visits", "Health and leisure visits", "Ymweliadau iechyd a hamdden")]
    return columns, rows, [ctx.period_note(), "Estimates: each action type's factors (kg CO2 "
                           "and car km per action and per km reported) are set by staff; "
                           "types without factors count zero."]


__all__ = ["baseline", "campaign", "impact", "suppress_columns"]
