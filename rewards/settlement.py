"""What the council owes each partner for a month: redemptions not undone, at the
value fixed when each happened; for offers a partner's own system fulfils (we never
see those redeemed) the passes it issued that month, at the offer's value."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .csvfile import csv_text
from .models import Offer, Partner, Redemption, Reward

# Years 2000-2999: the months a scheme can have (any other year is a 422, not a crash).
MONTH = re.compile(r"^(2\d\d\d)-(0[1-9]|1[0-2])$")


def month_bounds(month: str, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of a "YYYY-MM" month in the scheme's time zone, as UTC moments."""
    match = MONTH.match(month)
    if not match:
        raise ValueError("month must look like YYYY-MM")
    year, number = int(match.group(1)), int(match.group(2))
    zone = ZoneInfo(tz)
    start = datetime(year, number, 1, tzinfo=zone)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))


# How an amount (from `pounds`) is described in the API: the fields keep their `_gbp`
# names, but the money is the scheme's currency (SCHEME_CURRENCY).
GBP_DOC = {"type": "string", "pattern": r"^\d+\.\d\d$",
           "description": "An amount in the scheme's currency (SCHEME_CURRENCY, pounds by "
                          "default) with two decimals, e.g. 4.50."}


def pounds(pence: int) -> str:
    return f"{pence // 100}.{pence % 100:02d}"


@dataclass
class OfferLine:
    offer_id: uuid.UUID
    title: str
    basis: str  # "redeemed" (at a till or on the page) or "issued" (by the partner's system)
    count: int
    value_pence: int


@dataclass
class PartnerSettlement:
    partner_id: uuid.UUID
    partner_name: str
    offers: list[OfferLine] = field(default_factory=list)

    @property
    def partner(self) -> dict[str, object]:
        """As the API shows a partner everywhere: {id, name}."""
        return {"id": self.partner_id, "name": self.partner_name}

    @property
    def count(self) -> int:
        return sum(line.count for line in self.offers)

    @property
    def value_pence(self) -> int:
        return sum(line.value_pence for line in self.offers)


def settle(
    session: Session, month: str, tz: str, partner_id: uuid.UUID | None = None
) -> list[PartnerSettlement]:
    """Every partner owed something in the month (or just `partner_id`, always
    listed), by name, each offer's line by title."""
    start, end = month_bounds(month, tz)
    redeemed = (
        select(Offer.partner_id, Offer.id, Offer.title, func.count(Redemption.id),
               func.coalesce(func.sum(Redemption.value_pence), 0))
        .select_from(Redemption)
        .join(Reward, Reward.id == Redemption.reward_id)
        .join(Offer, Offer.id == Reward.offer_id)
        .where(Redemption.undone_at.is_(None), Redemption.created_at >= start,
               Redemption.created_at < end)
        .group_by(Offer.partner_id, Offer.id, Offer.title)
    )
    passes = (
        select(Offer.partner_id, Offer.id, Offer.title, func.count(Reward.id),
               func.coalesce(func.sum(Offer.value_pence), 0))
        .select_from(Reward)
        .join(Offer, Offer.id == Reward.offer_id)
        .where(Reward.partner_code.is_not(None), Reward.issued_at >= start,
               Reward.issued_at < end)
        .group_by(Offer.partner_id, Offer.id, Offer.title)
    )
    if partner_id is not None:
        redeemed = redeemed.where(Offer.partner_id == partner_id)
        passes = passes.where(Offer.partner_id == partner_id)
    lines: dict[uuid.UUID, list[OfferLine]] = {}
    for basis, stmt in (("redeemed", redeemed), ("issued", passes)):
        for owner, offer_id, title, count, value in session.execute(stmt):
            lines.setdefault(owner, []).append(
                OfferLine(offer_id, title, basis, int(count), int(value)))
    wanted = set(lines) | ({partner_id} if partner_id is not None else set())
    names = dict(session.execute(select(Partner.id, Partner.name)
                                 .where(Partner.id.in_(list(wanted)))).all())
    result = [
        PartnerSettlement(pid, names.get(pid, ""),
                          sorted(lines.get(pid, []), key=lambda line: (line.title, line.basis)))
        for pid in wanted if pid in names
    ]
    return sorted(result, key=lambda item: (item.partner_name, str(item.partner_id)))


CSV_COLUMNS = ("month", "partner_id", "partner_name", "offer_id", "offer_title", "basis",
               "count", "value_pence", "value_gbp")


def as_csv(month: str, settlements: list[PartnerSettlement]) -> str:
    """One row per partner and offer, then a total row per partner."""
    def rows() -> Iterator[tuple[Any, ...]]:
        for item in settlements:
            for line in item.offers:
                yield (month, item.partner_id, item.partner_name, line.offer_id,
                       line.title, line.basis, line.count, line.value_pence,
                       pounds(line.value_pence))
            yield (month, item.partner_id, item.partner_name, "", "TOTAL", "",
                   item.count, item.value_pence, pounds(item.value_pence))

    return csv_text(CSV_COLUMNS, rows())
