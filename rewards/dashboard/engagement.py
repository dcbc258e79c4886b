"""Reach and engagement: who joined, who is active, what they do and when."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from ..models import Member
from . import welsh
from .context import Context, col, ratio, ward_cells, ward_name
from .counts import members_in_days, members_over_months, members_per_period, sums
from .filters import month_start, next_month
from .settings import wards
from .sources import as_date
from .table import hide, suppress, suppress_columns

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS_CY = ("Dydd Llun", "Dydd Mawrth", "Dydd Mercher", "Dydd Iau", "Dydd Gwener",
               "Dydd Sadwrn", "Dydd Sul")


def _joins(ctx: Context) -> list[tuple[date, str, bool, int]]:
    """(month, ward, desk, members) of members who joined in the period's months,
    from the members joined per day."""
    jd = ctx.source.join_days()
    stmt = select(jd.c.day, jd.c.ward, jd.c.desk, jd.c.members).where(
        jd.c.day >= ctx.first_month, jd.c.day < ctx.end_month)
    if ctx.filters.ward is not None:
        stmt = stmt.where(jd.c.ward == ctx.filters.ward)
    found: dict[tuple[date, str, bool], int] = defaultdict(int)
    for day, ward, desk, members in ctx.session.execute(stmt):
        found[(month_start(as_date(day)), ward, bool(desk))] += members
    return [(*key, members) for key, members in sorted(found.items())]


def reach_wards(ctx: Context) -> tuple[list, list, list]:
    counts: dict[tuple, int] = defaultdict(int)
    for month, ward, _desk, joined in _joins(ctx):
        counts[(month, ward)] += joined
    facts = wards(ctx.session)
    rows = []
    for (month, ward), joined in sorted(counts.items()):
        population = facts[ward].adult_population if ward in facts else None
        rows.append({"month": month, **ward_cells(ward), "joined": joined,
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
    counts: dict[Any, dict[str, int]] = defaultdict(lambda: {"app": 0, "desk": 0})
    for month, _ward, desk, joined in _joins(ctx):
        counts[month]["desk" if desk else "app"] += joined
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
    end = ctx.filters.date_to
    rows_by_ward: dict[str, dict[str, Any]] = {}
    for days, key in ((7, "active_7d"), (30, "active_30d")):
        # A member lives in one ward: the wards' counts add up to the total.
        by_ward = members_in_days(ctx, end - timedelta(days=days - 1), end, ["ward"])
        for (ward,), count in by_ward.items():
            if not count:
                continue
            row = rows_by_ward.setdefault(ward, {**ward_cells(ward), "active_7d": 0,
                                                 "active_30d": 0})
            row[key] = count
        rows_by_ward.setdefault("\x00all", {"ward": "All wards", "ward_cy": welsh.ALL_WARDS,
                                            "active_7d": 0, "active_30d": 0}
                                )[key] = sum(by_ward.values())
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
    """Members (span cells) and actions and points (sum cells) by ward or by type."""
    members = members_over_months(ctx, "ward", keys, by_type="type_code" in keys)
    totals = sums(ctx, "ward", keys)
    result = []
    for values, count in members.items():
        if not count:
            continue
        row = dict(zip(keys, values, strict=True))
        actions_, points, _km, _hours = totals.get(values, (0, 0, 0.0, 0.0))
        row.update(members=count, actions=actions_, points=points)
        result.append(row)
    return result


def actions(ctx: Context) -> tuple[list, list, list]:
    rows = sorted(_by(ctx, "category", "type_code"),
                  key=lambda r: (r["category"], r["type_code"]))
    for row in rows:
        row["category_cy"] = welsh.category(row["category"])
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
        row.update(ward_cells(row["ward"]))
        row["actions_per_member"] = ratio(row["actions"], row["members"])
    suppress(rows, ctx.threshold, "members", ["actions", "points", "actions_per_member"])
    columns = [col("ward", "Ward", "Ward", "text"), col("members", "Members", "Aelodau"),
               col("actions", "Actions", "Gweithredoedd"), col("points", "Points", "Pwyntiau"),
               col("actions_per_member", "Actions per member", "Gweithredoedd fesul aelod",
                   "number")]
    return columns, rows, [ctx.period_note()]


def actions_by_hour(ctx: Context) -> tuple[list, list, list]:
    rows = [{"hour": hour, **{day: 0 for day in WEEKDAYS}} for hour in range(24)]
    for hour, weekday, members, count in _hour_cells(ctx):
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


def _hour_cells(ctx: Context) -> list[tuple[int, int, int, int]]:
    """(hour, weekday, distinct members, actions) over the period. The hour cells add
    up over wards, not within one: with a ward filter, that ward's member rows (a
    ward's share of them) are read instead."""
    if ctx.filters.ward is not None:
        mh = ctx.source.member_hours()
        stmt = ctx.where(
            select(mh.c.hour, mh.c.weekday, func.count(func.distinct(mh.c.member_id)),
                   func.sum(mh.c.actions))
            .where(mh.c.month >= ctx.first_month, mh.c.month < ctx.end_month), mh)
        return [(int(h), int(w), int(m), int(a or 0)) for h, w, m, a in
                ctx.session.execute(stmt.group_by(mh.c.hour, mh.c.weekday))]
    members = members_over_months(ctx, "hour", ["value"])
    totals = sums(ctx, "hour", ["value"])
    return [(int(value) % 100, int(value) // 100, count, totals.get((value,), (0,))[0])
            for (value,), count in members.items() if count]


def retention(ctx: Context) -> tuple[list, list, list]:
    sizes: dict[Any, int] = defaultdict(int)
    for month, _ward, _desk, joined in _joins(ctx):
        sizes[month] += joined
    # Members of each cohort active in each month (cohort cells: one count per cohort,
    # month, ward and key, members counted once in each).
    last = ctx.end_month
    for _ in range(6):
        last = next_month(last)
    counts: dict[tuple[Any, int], int] = defaultdict(int)
    for (cohort, month), members in members_per_period(
            ctx, "cohort", ctx.first_month, last, ["value", "first_period"]).items():
        cohort, month = as_date(cohort), as_date(month)
        offset = (month.year - cohort.year) * 12 + month.month - cohort.month
        if cohort in sizes and 0 <= offset <= 6:
            counts[(cohort, offset)] += members
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


def _age_cells(ctx: Context) -> list[tuple[int | None, int, int, int]]:
    """(birth year, distinct members, actions, points) over the period; as the hour
    cells, across wards only (a ward filter reads that ward's member rows)."""
    if ctx.filters.ward is not None:
        mm = ctx.source.member_months()
        stmt = ctx.where(
            select(Member.birth_year, func.count(func.distinct(mm.c.member_id)),
                   func.sum(mm.c.actions), func.sum(mm.c.points))
            .join(Member, Member.id == mm.c.member_id)
            .where(mm.c.month >= ctx.first_month, mm.c.month < ctx.end_month), mm)
        return [(y, m, int(a or 0), int(p or 0)) for y, m, a, p in
                ctx.session.execute(stmt.group_by(Member.birth_year))]
    members = members_over_months(ctx, "age", ["value"])
    totals = sums(ctx, "age", ["value"])
    return [(int(value) if value else None, count, *totals.get((value,), (0, 0))[:2])
            for (value,), count in members.items() if count]


def fairness_age(ctx: Context) -> tuple[list, list, list]:
    year = ctx.last_day.year
    totals: dict[str, list[int]] = {band: [0, 0, 0] for band in AGE_BANDS}
    for birth_year, members, count, points in _age_cells(ctx):
        cell = totals[bands(birth_year, year)]
        cell[0] += members
        cell[1] += int(count or 0)
        cell[2] += int(points or 0)
    rows = [{"age_band": band, "age_band_cy": welsh.age_band(band), "members": m,
             "actions_per_member": ratio(a, m), "points_per_member": ratio(p, m)}
            for band, (m, a, p) in totals.items()]
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
    deciles = {name: f.imd_decile for name, f in facts.items() if f.imd_decile}
    # Wards without a decile (or no deciles set at all) fall in 0, "not set". A member
    # lives in one ward, so the wards' members add up to the decile's.
    found: dict[int, tuple[int, int, int]] = {}
    totals = sums(ctx, "ward", ["ward"])
    for (ward,), members in members_over_months(ctx, "ward", ["ward"]).items():
        if not members:
            continue
        value = deciles.get(ward, 0)
        m, a, p = found.get(value, (0, 0, 0))
        count, points, _km, _hours = totals.get((ward,), (0, 0, 0.0, 0.0))
        found[value] = (m + members, a + count, p + points)
    rows = []
    for value in [*range(1, 11), 0]:
        in_decile = [f for f in facts.values() if (f.imd_decile or 0) == value and value]
        population = sum(f.adult_population or 0 for f in in_decile) or None
        members, count, points = found.get(value, (0, 0, 0))
        rows.append({
            "imd_decile": str(value) if value else "not set",
            "imd_decile_cy": str(value) if value else welsh.NOT_SET,
            "wards": len(in_decile) if value else None,
            "adult_population": population,
            "members": members,
            "participation_per_1000": ratio(1000 * members, population, 2),
            "actions_per_member": ratio(count, members),
            "points_per_member": ratio(points, members),
        })
    # A decile holding a ward the figures by ward hide is hidden too (with another, if
    # it is the only one): the decile less its wards shown would give the ward back.
    hidden_wards = {row["ward"] for row in actions_by_ward(ctx)[1]
                    if "members" in row.get("_suppressed", ())}
    hidden_deciles = {str(deciles.get(ward, 0)) if deciles.get(ward) else "not set"
                      for ward in facts if ward_name(ward) in hidden_wards}
    if "(no ward given)" in hidden_wards or hidden_wards - {ward_name(w) for w in facts}:
        hidden_deciles.add("not set")  # members with no ward, or a ward not in the list
    suppress(rows, ctx.threshold, "members",
             ["participation_per_1000", "actions_per_member", "points_per_member"],
             forced=lambda row: row["imd_decile"] in hidden_deciles)
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


# The start of the note a figure built on ward facts carries when a fact it used is
# illustrative (the demo's, rewards.demo); the open-data export looks for it.
ILLUSTRATIVE = "Illustrative figures:"


def illustrative_notes(name: str, ctx: Context, rows: list[dict[str, Any]]) -> list[str]:
    """`reach_wards` (the wards shown, by their adult population) and
    `fairness_deprivation` (every ward with a decile: its decile and population) say
    when any ward fact they used is illustrative, not official statistics."""
    if name not in ("reach_wards", "fairness_deprivation"):
        return []
    facts = wards(ctx.session)
    if name == "reach_wards":
        used = {row["ward"] for row in rows if row.get("adult_population") is not None}
        what, every, also = ("adult populations", "all the wards shown",
                             "so are the shares of adults joined")
    else:
        used = {ward for ward, f in facts.items() if f.imd_decile}
        what, every, also = ("deprivation deciles and adult populations",
                             "all the wards with a decile", "so is every figure by decile")
    flagged = sorted(ward for ward in used if ward in facts and facts[ward].illustrative)
    if not flagged:
        return []
    which = every if len(flagged) == len(used) else ", ".join(flagged)
    return [f"{ILLUSTRATIVE} the {what} of {which} are illustrative values (as the demo "
            f"loads them), not official statistics, and {also}."]
