"""Reach and engagement: who joined, who is active, what they do and when."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, case, func, literal, select, text

from ..models import Member
from .context import Context, col, ratio, ward_name
from .filters import day_bounds, month_start, scheme_zone
from .settings import wards
from .sources import as_date
from .table import hide, suppress, suppress_columns

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS_CY = ("Dydd Llun", "Dydd Mawrth", "Dydd Mercher", "Dydd Iau", "Dydd Gwener",
               "Dydd Sadwrn", "Dydd Sul")


def _joins(ctx: Context) -> list[tuple[Any, str, bool]]:
    """(joined_at, ward, desk) of members who joined in the period's months."""
    start, end = day_bounds(ctx.first_month, ctx.end_month - timedelta(days=1))
    stmt = select(Member.joined_at, func.coalesce(Member.ward, ""),
                  Member.enrolled_by.is_not(None)).where(
        Member.joined_at >= start, Member.joined_at < end)
    if ctx.filters.ward is not None:
        stmt = stmt.where(Member.ward == ctx.filters.ward)
    return list(ctx.session.execute(stmt))


def reach_wards(ctx: Context) -> tuple[list, list, list]:
    zone = scheme_zone()
    counts: dict[tuple, int] = defaultdict(int)
    for joined_at, ward, _desk in _joins(ctx):
        counts[(month_start(joined_at.astimezone(zone).date()), ward)] += 1
    facts = wards(ctx.session)
    rows = []
    for (month, ward), joined in sorted(counts.items()):
        population = facts[ward].adult_population if ward in facts else None
        rows.append({"month": month, "ward": ward_name(ward), "joined": joined,
                     "adult_population": population,
                     "share_percent": ratio(100 * joined, population, 3)})
    suppress(rows, ctx.threshold, "joined", ["share_percent"], group=lambda r: r["month"])
    columns = [col("month", "Month", "Mis", "date"), col("ward", "Ward", "Ward", "text"),
               col("joined", "Members joined", "Aelodau a ymunodd"),
               col("adult_population", "Adult population", "Poblogaeth oedolion"),
               col("share_percent", "Share of adults joined (%)",
                   "Cyfran yr oedolion a ymunodd (%)", "percent")]
    return columns, rows, [ctx.period_note(), "Category and action type filters do not "
                           "apply: joining is not an action."]


def reach_channel(ctx: Context) -> tuple[list, list, list]:
    zone = scheme_zone()
    counts: dict[Any, dict[str, int]] = defaultdict(lambda: {"app": 0, "desk": 0})
    for joined_at, _ward, desk in _joins(ctx):
        counts[month_start(joined_at.astimezone(zone).date())]["desk" if desk else "app"] += 1
    rows = [{"month": month, "app": c["app"], "desk": c["desk"]}
            for month, c in sorted(counts.items())]
    for row in rows:
        small = [key for key in ("app", "desk") if 0 < row[key] < ctx.threshold]
        if len(small) == 1:  # the month's total (reach_wards) less one gives the other
            small = [key for key in ("app", "desk") if row[key]]
        if small:
            hide(row, small)
    columns = [col("month", "Month", "Mis", "date"),
               col("app", "Joined in the app", "Ymunodd yn yr ap"),
               col("desk", "Enrolled at a desk (card only)", "Cofrestrwyd wrth ddesg (cerdyn)")]
    return columns, rows, [ctx.period_note()]


def active(ctx: Context) -> tuple[list, list, list]:
    md = ctx.source.member_days()
    end = ctx.filters.date_to
    rows_by_ward: dict[str, dict[str, Any]] = {}
    for days, key in ((7, "active_7d"), (30, "active_30d")):
        base = ctx.where(select(md.c.ward, func.count(func.distinct(md.c.member_id)))
                         .where(md.c.day > end - timedelta(days=days), md.c.day <= end), md)
        for ward, count in ctx.session.execute(base.group_by(md.c.ward)):
            row = rows_by_ward.setdefault(ward, {"ward": ward_name(ward), "active_7d": 0,
                                                 "active_30d": 0})
            row[key] = count
        total = ctx.session.scalar(
            ctx.where(select(func.count(func.distinct(md.c.member_id)))
                      .where(md.c.day > end - timedelta(days=days), md.c.day <= end), md))
        rows_by_ward.setdefault("\x00all", {"ward": "All wards", "active_7d": 0,
                                            "active_30d": 0})[key] = total or 0
    total_row = rows_by_ward.pop("\x00all")
    rows = [rows_by_ward[ward] for ward in sorted(rows_by_ward)]
    suppress_columns(rows, ctx.threshold, [("active_7d", []), ("active_30d", [])])
    hide(total_row, [key for key in ("active_7d", "active_30d")
                     if 0 < total_row[key] < ctx.threshold])
    if not total_row["_suppressed"]:
        del total_row["_suppressed"]
    columns = [col("ward", "Ward", "Ward", "text"),
               col("active_7d", "Active in the last 7 days", "Yn weithgar yn y 7 diwrnod olaf"),
               col("active_30d", "Active in the last 30 days",
                   "Yn weithgar yn y 30 diwrnod olaf")]
    return columns, [total_row, *rows], [
        f"Members with at least one counted action in the 7 and 30 days to {end.isoformat()}."]


def _by(ctx: Context, *keys: str) -> list[dict[str, Any]]:
    mm = ctx.source.member_months()
    stmt = ctx.where(
        select(*(mm.c[key] for key in keys), func.count(func.distinct(mm.c.member_id)),
               func.sum(mm.c.actions), func.sum(mm.c.points))
        .where(mm.c.month >= ctx.first_month, mm.c.month < ctx.end_month), mm)
    result = []
    for *values, members, actions, points in ctx.session.execute(
            stmt.group_by(*(mm.c[key] for key in keys))):
        row = dict(zip(keys, values, strict=True))
        row.update(members=members, actions=int(actions or 0), points=int(points or 0))
        result.append(row)
    return result


def actions(ctx: Context) -> tuple[list, list, list]:
    rows = sorted(_by(ctx, "category", "type_code"),
                  key=lambda r: (r["category"], r["type_code"]))
    for row in rows:
        row["actions_per_member"] = ratio(row["actions"], row["members"])
    suppress(rows, ctx.threshold, "members", ["actions", "points", "actions_per_member"])
    columns = [col("type_code", "Action type", "Math o weithred", "text"),
               col("category", "Category", "Categori", "text"),
               col("members", "Members", "Aelodau"), col("actions", "Actions", "Gweithredoedd"),
               col("points", "Points", "Pwyntiau"),
               col("actions_per_member", "Actions per member", "Gweithredoedd fesul aelod",
                   "number")]
    return columns, rows, [ctx.period_note(), "Counted actions: accepted, not flagged or "
                           "revoked."]


def actions_by_ward(ctx: Context) -> tuple[list, list, list]:
    rows = sorted(_by(ctx, "ward"), key=lambda r: r["ward"])
    for row in rows:
        row["ward"] = ward_name(row["ward"])
        row["actions_per_member"] = ratio(row["actions"], row["members"])
    suppress(rows, ctx.threshold, "members", ["actions", "points", "actions_per_member"])
    columns = [col("ward", "Ward", "Ward", "text"), col("members", "Members", "Aelodau"),
               col("actions", "Actions", "Gweithredoedd"), col("points", "Points", "Pwyntiau"),
               col("actions_per_member", "Actions per member", "Gweithredoedd fesul aelod",
                   "number")]
    return columns, rows, [ctx.period_note()]


def actions_by_hour(ctx: Context) -> tuple[list, list, list]:
    mh = ctx.source.member_hours()
    stmt = ctx.where(
        select(mh.c.hour, mh.c.weekday, func.count(func.distinct(mh.c.member_id)),
               func.sum(mh.c.actions))
        .where(mh.c.month >= ctx.first_month, mh.c.month < ctx.end_month), mh)
    rows = [{"hour": hour, **{day: 0 for day in WEEKDAYS}} for hour in range(24)]
    for hour, weekday, members, count in ctx.session.execute(
            stmt.group_by(mh.c.hour, mh.c.weekday)):
        day = WEEKDAYS[int(weekday) - 1]
        rows[int(hour)][day] = int(count or 0)
        rows[int(hour)][f"_n_{day}"] = members
    cells = [{"row": row, "day": day, "n": row.pop(f"_n_{day}", 0)}
             for row in rows for day in WEEKDAYS]
    # Every cell adds up to the period's total: one group for the whole table.
    suppress(cells, ctx.threshold, "n", [])
    for cell in cells:
        if cell["n"] is None:
            cell["row"][cell["day"]] = None
            cell["row"].setdefault("_suppressed", []).append(cell["day"])
    columns = [col("hour", "Hour of day", "Awr o'r dydd")] + [
        col(day, en, cy) for day, en, cy in zip(WEEKDAYS, WEEKDAYS_EN, WEEKDAYS_CY,
                                                strict=True)]
    return columns, rows, [ctx.period_note(), "Actions by the hour they happened (scheme "
                           "time zone); a cell with fewer members than the threshold is "
                           "suppressed."]


def retention(ctx: Context) -> tuple[list, list, list]:
    zone = scheme_zone()
    start, end = day_bounds(ctx.first_month, ctx.end_month - timedelta(days=1))
    stmt = select(Member.id, Member.joined_at).where(Member.joined_at >= start,
                                                     Member.joined_at < end)
    if ctx.filters.ward is not None:
        stmt = stmt.where(Member.ward == ctx.filters.ward)
    cohort_of = {member_id: month_start(joined_at.astimezone(zone).date())
                 for member_id, joined_at in ctx.session.execute(stmt)}
    sizes: dict[Any, int] = defaultdict(int)
    for month in cohort_of.values():
        sizes[month] += 1
    mm = ctx.source.member_months()
    active_stmt = ctx.where(select(mm.c.member_id, mm.c.month).where(
        mm.c.month >= ctx.first_month).distinct(), mm, ward=False)
    counts: dict[tuple[Any, int], int] = defaultdict(int)
    seen: set[tuple] = set()
    for member_id, month in ctx.session.execute(active_stmt):
        cohort = cohort_of.get(member_id)
        if cohort is None:
            continue
        month = as_date(month)
        offset = (month.year - cohort.year) * 12 + month.month - cohort.month
        if 0 <= offset <= 6 and (member_id, offset) not in seen:
            seen.add((member_id, offset))
            counts[(cohort, offset)] += 1
    rows = []
    for cohort in sorted(sizes):
        row: dict[str, Any] = {"cohort": cohort, "members": sizes[cohort]}
        for offset in range(7):
            row[f"_n_m{offset}"] = counts.get((cohort, offset), 0)
            row[f"m{offset}"] = ratio(100 * counts.get((cohort, offset), 0), sizes[cohort], 1)
        rows.append(row)
    suppress(rows, ctx.threshold, "members", [f"m{n}" for n in range(7)])
    suppress_columns(rows, ctx.threshold, [(f"_n_m{n}", [f"m{n}"]) for n in range(7)])
    columns = [col("cohort", "Joined in", "Ymunodd yn", "date"),
               col("members", "Members", "Aelodau")] + [
        col(f"m{n}", f"Active {n} months later (%)" if n else "Active in month joined (%)",
            f"Yn weithgar {n} mis wedyn (%)" if n else "Yn weithgar yn y mis ymuno (%)",
            "percent") for n in range(7)]
    return columns, rows, [
        ctx.period_note(), "Cohorts: members who joined in each month of the period. Active: "
        "at least one counted action (of the chosen category or type) in the calendar "
        "month N months after joining; later months are still filling."]


def _attach(rows: list[dict[str, Any]], key: str, extra: dict[Any, Any]) -> None:
    for row in rows:
        row.update(extra.get(row[key], {}))


def bands(value: int | None, year: int) -> str:
    if value is None:
        return "not given"
    age = year - value
    for top, label in ((17, "under 18"), (24, "18-24"), (34, "25-34"), (44, "35-44"),
                       (54, "45-54"), (64, "55-64"), (74, "65-74")):
        if age <= top:
            return label
    return "75 and over"


AGE_BANDS = ("under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75 and over",
             "not given")


def fairness_age(ctx: Context) -> tuple[list, list, list]:
    mm = ctx.source.member_months()
    stmt = ctx.where(
        select(Member.birth_year, func.count(func.distinct(mm.c.member_id)),
               func.sum(mm.c.actions), func.sum(mm.c.points))
        .join(Member, Member.id == mm.c.member_id)
        .where(mm.c.month >= ctx.first_month, mm.c.month < ctx.end_month), mm)
    year = ctx.last_day.year
    totals: dict[str, list[int]] = {band: [0, 0, 0] for band in AGE_BANDS}
    for birth_year, members, count, points in ctx.session.execute(
            stmt.group_by(Member.birth_year)):
        cell = totals[bands(birth_year, year)]
        cell[0] += members
        cell[1] += int(count or 0)
        cell[2] += int(points or 0)
    rows = [{"age_band": band, "members": m, "actions_per_member": ratio(a, m),
             "points_per_member": ratio(p, m)} for band, (m, a, p) in totals.items()]
    suppress(rows, ctx.threshold, "members", ["actions_per_member", "points_per_member"])
    columns = [col("age_band", "Age band", "Band oedran", "text"),
               col("members", "Active members", "Aelodau gweithgar"),
               col("actions_per_member", "Actions per member", "Gweithredoedd fesul aelod",
                   "number"),
               col("points_per_member", "Points per member", "Pwyntiau fesul aelod", "number")]
    return columns, rows, [ctx.period_note(), "Age at the end of the period, from the birth "
                           "year members chose to give."]


def fairness_deprivation(ctx: Context) -> tuple[list, list, list]:
    facts = wards(ctx.session)
    mm = ctx.source.member_months()
    deciles = {name: f.imd_decile for name, f in facts.items() if f.imd_decile}
    # Wards without a decile (or no deciles set at all) fall in 0, "not set".
    decile = case(*((mm.c.ward == name, value) for name, value in deciles.items()),
                  else_=0) if deciles else literal(0, Integer)
    stmt = ctx.where(
        select(decile.label("decile"), func.count(func.distinct(mm.c.member_id)),
               func.sum(mm.c.actions), func.sum(mm.c.points))
        .where(mm.c.month >= ctx.first_month, mm.c.month < ctx.end_month), mm)
    found = {int(value or 0): (m, int(a or 0), int(p or 0))
             for value, m, a, p in ctx.session.execute(stmt.group_by(text("1")))}
    rows = []
    for value in [*range(1, 11), 0]:
        in_decile = [f for f in facts.values() if (f.imd_decile or 0) == value and value]
        population = sum(f.adult_population or 0 for f in in_decile) or None
        members, count, points = found.get(value, (0, 0, 0))
        rows.append({
            "imd_decile": str(value) if value else "not set",
            "wards": len(in_decile) if value else None,
            "adult_population": population,
            "members": members,
            "participation_per_1000": ratio(1000 * members, population, 2),
            "actions_per_member": ratio(count, members),
            "points_per_member": ratio(points, members),
        })
    suppress(rows, ctx.threshold, "members",
             ["participation_per_1000", "actions_per_member", "points_per_member"])
    columns = [col("imd_decile", "Deprivation decile (1 most deprived)",
                   "Degradd amddifadedd (1 mwyaf difreintiedig)", "text"),
               col("wards", "Wards", "Wardiau"),
               col("adult_population", "Adult population", "Poblogaeth oedolion"),
               col("members", "Active members", "Aelodau gweithgar"),
               col("participation_per_1000", "Active members per 1,000 adults",
                   "Aelodau gweithgar fesul 1,000 oedolyn", "number"),
               col("actions_per_member", "Actions per member", "Gweithredoedd fesul aelod",
                   "number"),
               col("points_per_member", "Points per member", "Pwyntiau fesul aelod", "number")]
    return columns, rows, [ctx.period_note(), "Deciles are the Index of Multiple Deprivation "
                           "decile staff set for each ward; wards without one are 'not set'."]
