"""The catalogue's decisions: who may see and claim an offer, and from when a
per-member limit counts. Pure functions over plain values; the queries that use them
live beside (`live_offers`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, bindparam, func, select

from .models import MemberTotals, Offer, Partner


@dataclass(frozen=True)
class Eligibility:
    wards: tuple[str, ...] | None  # None: every ward
    joined_after: datetime | None


def normalise_ward(ward: str | None) -> str:
    return " ".join((ward or "").split()).casefold()


def eligibility_of(offer: Offer) -> Eligibility:
    wards = offer.eligible_wards
    return Eligibility(
        tuple(normalise_ward(w) for w in wards) if wards else None, offer.joined_after
    )


def ineligible_because(rule: Eligibility, ward: str | None, joined_at: datetime) -> str | None:
    """Why a member in `ward` who joined at `joined_at` may not claim, or None if they may."""
    if rule.wards is not None and normalise_ward(ward) not in rule.wards:
        return "This offer is only for residents of some wards; set your ward in your profile."
    if rule.joined_after is not None and joined_at < rule.joined_after:
        return (f"This offer is only for members who joined on or after "
                f"{rule.joined_after:%d %B %Y}.")
    return None


def period_start(period: str, now: datetime, tz: str) -> datetime | None:
    """The start of the day, week (Monday) or month containing `now`, in the scheme's
    time zone; None for "ever". A limit counts claims made since then."""
    if period == "ever":
        return None
    local = now.astimezone(ZoneInfo(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = midnight
    elif period == "week":
        start = midnight - timedelta(days=local.weekday())
    elif period == "month":
        start = midnight.replace(day=1)
    else:
        raise ValueError(f"unknown limit period {period!r}")
    # zoneinfo works in wall-clock time: a clock change inside the week still gives
    # local midnight, with that day's offset.
    return start.astimezone(now.tzinfo)


def window_state(starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> str:
    """"open", "not_yet" or "ended"."""
    if starts_at is not None and starts_at > now:
        return "not_yet"
    if ends_at is not None and ends_at <= now:
        return "ended"
    return "open"


def live_offers(now: datetime) -> Select[tuple[Offer]]:
    """Offers members can see and claim now (eligibility is applied per member)."""
    return select(Offer).where(
        Offer.status == "live",
        (Offer.starts_at.is_(None)) | (Offer.starts_at <= now),
        (Offer.ends_at.is_(None)) | (Offer.ends_at > now),
    )


# What a resident's catalogue shows and decides eligibility by (not the review trail).
_SHOWN = ("id", "partner_id", "title", "description", "translations", "category",
          "cost_points", "stock", "claimed", "per_member_limit", "limit_period",
          "voucher_valid_days", "starts_at", "ends_at", "eligible_wards", "joined_after",
          "image_url", "points_back_on_expiry", "fulfilment")


@cache
def live_offer_rows() -> Select[Any]:
    """live_offers as plain rows, each offer's columns and its partner's `partner_name`,
    at the moment bound as `now`: the catalogue reads every live offer for every
    resident, and rows cost a fraction of what entities cost to load. Built once."""
    offers = Offer.__table__.c
    shown = [offers[name] for name in _SHOWN]
    return (select(*shown, Partner.name.label("partner_name"))
            .select_from(Offer.__table__.join(Partner.__table__,
                                              Partner.__table__.c.id == offers.partner_id))
            .where(live_offers(bindparam("now", type_=Offer.starts_at.type)).whereclause)  # type: ignore[arg-type]
            .order_by(Offer.cost_points, Offer.id))


@cache
def catalogue_rows() -> tuple[Select[Any], Any]:
    """`live_offer_rows` with the member's available points in each row (`available`,
    from the running totals of the member bound as `member`: one statement for the
    catalogue), and that figure as an expression to filter on. Built once."""
    totals = MemberTotals.__table__
    available = func.coalesce(
        select(totals.c.available)
        .where(totals.c.member_id == bindparam("member", type_=totals.c.member_id.type))
        .scalar_subquery(), 0)
    return live_offer_rows().add_columns(available.label("available")), available


def eligible(offers: Iterable[Offer], ward: str | None, joined_at: datetime) -> list[Offer]:
    return [offer for offer in offers
            if ineligible_because(eligibility_of(offer), ward, joined_at) is None]


def stock_left(offer: Offer) -> int | None:
    return None if offer.stock is None else max(offer.stock - offer.claimed, 0)


# Rewards that hold one of an offer's stock: all but those failed or cancelled.
RELEASED = ("failed", "cancelled")


def claims_of(offer: Offer) -> int:
    """How many of the offer are claimed (rewards not failed or cancelled). An offer with
    a stock counts them on its row (`claimed`, updated by each claim in its statement,
    so two claims cannot take the last one); an unlimited offer does not, so that its
    claims never queue for that one row (rewards/vouchers.py): they are counted here.
    An offer's stock is set when it is made and never changed after, so the row's
    count is never needed for an offer that was unlimited."""
    if offer.stock is not None:
        return offer.claimed
    from .extensions import db
    from .models import Reward

    return int(db.session.scalar(select(func.count()).select_from(Reward).where(
        Reward.offer_id == offer.id, Reward.status.notin_(RELEASED))) or 0)
