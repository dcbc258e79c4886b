"""Rewards and money: what was claimed and redeemed, points issued and spent, what the
outstanding points would cost, what is owed to partners and what is coming."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select

from ..models import Offer, Partner, Redemption, Reward, utcnow
from . import welsh
from .context import Context, col, ratio
from .counts import members_over_months
from .counts import sums as counted_sums
from .filters import Filters, day_bounds, today
from .settings import pence_per_point
from .table import suppress, suppress_columns

FORECAST_DAYS = (30, 60, 90)


def _period(ctx: Context) -> tuple[Any, Any]:
    return day_bounds(ctx.first_month, ctx.end_month - timedelta(days=1))


def rewards(ctx: Context) -> tuple[list, list, list]:
    start, end = _period(ctx)
    events = (
        ("claimed", Reward.created_at, None),
        ("redeemed", Reward.redeemed_at, Reward.status == "redeemed"),
        ("expired", Reward.expires_at, Reward.status == "expired"),
    )
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for key, when, condition in events:
        stmt = (select(Partner.name, Offer.title, func.count(),
                       func.count(func.distinct(Reward.member_id)))
                .join(Offer, Offer.id == Reward.offer_id)
                .join(Partner, Partner.id == Offer.partner_id)
                .where(when >= start, when < end))
        if condition is not None:
            stmt = stmt.where(condition)
        for partner, title, count, members in ctx.session.execute(
                stmt.group_by(Partner.name, Offer.title)):
            row = cells.setdefault((partner, title), {
                "partner": partner, "offer": title, "claimed": 0, "redeemed": 0,
                "expired": 0, "_n_claimed": 0, "_n_redeemed": 0, "_n_expired": 0})
            row[key] = count
            row[f"_n_{key}"] = members
    rows = [cells[key] for key in sorted(cells)]
    suppress_columns(rows, ctx.threshold,
                     [(f"_n_{key}", [key]) for key in ("claimed", "redeemed", "expired")])
    columns = [col("partner", "Partner", "Partner", "text"),
               col("offer", "Offer", "Cynnig", "text"),
               col("claimed", "Claimed", "Hawliwyd"),
               col("redeemed", "Redeemed", "Defnyddiwyd"),
               col("expired", "Expired unused", "Daeth i ben heb ei ddefnyddio")]
    return columns, rows, [ctx.period_note(), "Each count by when it happened: claims by "
                           "claim date, redemptions by redemption date, expiries by the "
                           "voucher's expiry date. Counts of fewer members than the "
                           "threshold are suppressed."]


# (row key, English, Welsh, scheme account, posting kinds or None for all, sign)
MEASURES = (
    ("issued", "Points issued", "Pwyntiau a roddwyd", "scheme:issuance", ("earn",), -1),
    ("taken_back", "Taken back (revoked actions)", "Wedi'u cymryd yn ôl",
     "scheme:issuance", ("reversal",), -1),
    ("adjusted", "Staff adjustments", "Addasiadau staff", "scheme:adjustments", None, -1),
    ("spent", "Spent on rewards", "Wedi'u gwario ar wobrau", "scheme:rewards_spent", None, 1),
    ("donated", "Donated to charities", "Wedi'u rhoi i elusennau", "scheme:donated", None, 1),
    ("expired", "Expired", "Wedi dod i ben", "scheme:expired", None, 1),
    ("written_off", "Written off (spent, then revoked)", "Wedi'u dileu",
     "scheme:written_off", None, -1),
)


def money(ctx: Context) -> tuple[list, list, list]:
    ld = ctx.source.ledger_days()
    pence = pence_per_point(ctx.session)
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for account, kind, points in ctx.session.execute(
            select(ld.c.account, ld.c.kind, func.sum(ld.c.points))
            .where(ld.c.day >= ctx.first_month, ld.c.day < ctx.end_month)
            .group_by(ld.c.account, ld.c.kind)):
        sums[(account, kind)] += int(points or 0)
    rows = []
    for key, en, cy, account, kinds, sign in MEASURES:
        points = sign * sum(v for (a, k), v in sums.items()
                            if a == account and (kinds is None or k in kinds))
        rows.append({"measure": key, "label": en, "label_cy": cy, "points": points,
                     "pounds": round(points * pence / 100, 2)})
    # Members hold what the scheme accounts gave out and did not take back.
    outstanding = -int(ctx.session.scalar(
        select(func.coalesce(func.sum(ld.c.points), 0)).where(ld.c.day <= ctx.last_day)) or 0)
    rows.append({"measure": "outstanding", "label": f"Outstanding at {ctx.last_day}",
                 "label_cy": f"Heb eu defnyddio ar {ctx.last_day}", "points": outstanding,
                 "pounds": round(outstanding * pence / 100, 2)})
    # Every counted action and active member of the period: no filter applies.
    whole = replace(ctx, filters=Filters(ctx.filters.date_from, ctx.filters.date_to))
    members = sum(members_over_months(whole, "ward", []).values())
    actions = sum(found[0] for found in counted_sums(whole, "ward", []).values())
    cost = (rows[0]["points"] - rows[1]["points"] + rows[2]["points"]) * pence / 100
    rows.append({"measure": "cost_per_action", "label": "Cost per verified action",
                 "label_cy": "Cost fesul gweithred wedi'i dilysu", "points": None,
                 "pounds": ratio(cost, int(actions or 0), 4)})
    rows.append({"measure": "cost_per_member", "label": "Cost per active member",
                 "label_cy": "Cost fesul aelod gweithgar", "points": None,
                 "pounds": ratio(cost, members, 2) if members >= ctx.threshold else None})
    if 0 < members < ctx.threshold:
        rows[-1]["_suppressed"] = ["pounds"]
    columns = [col("label", "Measure", "Mesur", "text"), col("points", "Points", "Pwyntiau"),
               col("pounds", "Money", "Arian", "money")]
    return columns, rows, [
        ctx.period_note(), f"A point is valued at {pence:g}p (a staff setting). Cost: the "
        "value of points issued less those taken back, plus staff adjustments. Outstanding: "
        "points in members' accounts (available or pending), not counting points held for "
        "claims being issued. Ward, category and type filters do not apply."]


def forecast(ctx: Context) -> tuple[list, list, list]:
    now = utcnow()
    recent = ctx.session.execute(
        select(func.count(), func.coalesce(func.sum(Redemption.value_pence), 0))
        .where(Redemption.created_at >= now - timedelta(days=90),
               Redemption.undone_at.is_(None))).one()
    per_day = (recent[0] / 90, int(recent[1]) / 90)
    # Points by whole days of the scheme's zone, today first: the expiry-day rollup
    # keeps them by the day they expire, so the windows are read from a few hundred
    # rows, not from every earn line of the ledger.
    first = today()
    ed = ctx.source.expiry_days()
    due = ctx.session.execute(
        select(*(func.coalesce(func.sum(case(
            (ed.c.expires < first + timedelta(days=days), ed.c.points), else_=0)), 0)
            for days in FORECAST_DAYS))
        .where(ed.c.expires >= first,
               ed.c.expires < first + timedelta(days=max(FORECAST_DAYS)))).one()
    # Issued vouchers by expiry: one range of ix_rewards_status_expires for every window
    # (a window's member where the voucher falls in it, else null, which counts nothing).
    members = [case((Reward.expires_at < now + timedelta(days=days), Reward.member_id))
               for days in FORECAST_DAYS]
    vouchers = ctx.session.execute(
        select(*(func.count(member) for member in members),
               *(func.count(func.distinct(member)) for member in members))
        .where(Reward.status == "issued", Reward.expires_at >= now,
               Reward.expires_at < now + timedelta(days=max(FORECAST_DAYS)))).one()
    rows = []
    for n, (days, points) in enumerate(zip(FORECAST_DAYS, due, strict=True)):
        rows.append({
            "window": f"next {days} days", "window_cy": welsh.next_days(days),
            "redemptions": round(per_day[0] * days),
            "redemption_pounds": round(per_day[1] * days / 100, 2),
            "vouchers_expiring": vouchers[n], "_n_vouchers": vouchers[len(members) + n],
            "points_expiring_at_most": int(points or 0),
        })
    suppress_columns(rows, ctx.threshold, [("_n_vouchers", ["vouchers_expiring"])])
    columns = [col("window", "Window", "Cyfnod", "text"),
               col("redemptions", "Redemptions expected", "Defnyddiau disgwyliedig"),
               col("redemption_pounds", "Owed to partners for them", "Sy'n ddyledus i "
                   "bartneriaid", "money"),
               col("vouchers_expiring", "Vouchers due to expire unused",
                   "Talebau i ddod i ben"),
               col("points_expiring_at_most", "Points due to expire (at most)",
                   "Pwyntiau i ddod i ben (uchafswm)")]
    return columns, rows, [
        "From today, whatever the filters. Redemptions: the last 90 days' daily rate carried "
        "forward. Vouchers: issued vouchers whose expiry falls in the window from now. "
        "Points: earned points whose expiry falls on a day (scheme time zone) from today "
        "to the window's last (today and the next 29, 59 or 89 days), before members "
        "spend any and with none taken back for revoked actions, so an upper bound."]


def owed_partners(ctx: Context) -> tuple[list, list, list]:
    start, end = _period(ctx)
    stmt = (select(Partner.name, func.count(), func.coalesce(func.sum(Redemption.value_pence), 0))
            .join(Partner, Partner.id == Redemption.partner_id)
            .where(Redemption.created_at >= start, Redemption.created_at < end,
                   Redemption.undone_at.is_(None))
            .group_by(Partner.name).order_by(Partner.name))
    rows = [{"partner": name, "redemptions": count, "owed_pounds": round(int(value) / 100, 2)}
            for name, count, value in ctx.session.execute(stmt)]
    # Partners are organisations, but a partner's total less its offers shown in
    # `rewards` would give back an offer hidden there: such a partner is hidden too
    # (with another, if it is the only one).
    hidden = {row["partner"] for row in rewards(ctx)[1]
              if "redeemed" in row.get("_suppressed", ())}
    suppress(rows, 0, "redemptions", ["owed_pounds"],
             forced=lambda row: row["partner"] in hidden)
    columns = [col("partner", "Partner", "Partner", "text"),
               col("redemptions", "Redemptions", "Defnyddiau"),
               col("owed_pounds", "Owed", "Yn ddyledus", "money")]
    return columns, rows, [ctx.period_note(), "Redemptions not undone, at the value fixed "
                           "when each happened. A partner with an offer whose redemptions "
                           "`rewards` suppresses is suppressed here too; the monthly "
                           "settlement (scheme managers) gives the exact amounts."]
