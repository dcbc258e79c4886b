"""Members give points to charity partners: one posting from the member's available
account to scheme:donated, and a row per donation naming the charity."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .ledger import account_balance, expire_member, lock_member, post, scheme_account
from .models import Account, Member, Partner, utcnow
from .models.donation import Donation
from .reasons import Reason, Refused
from .vouchers import ACCOUNT_CLOSED

MAX_DONATION = 1_000_000


class DonationRefused(Refused):
    """A donation cannot be made as asked."""


def charity(session: Session, charity_id: uuid.UUID) -> Partner | None:
    found = session.get(Partner, charity_id)
    if found is None or found.kind != "charity" or not found.active:
        return None
    return found


def donate(
    session: Session, member_id: uuid.UUID, charity_id: uuid.UUID, points: int,
    now: datetime | None = None,
) -> Donation:
    """Give `points` to the charity in the caller's transaction, under the member lock
    (so a concurrent claim cannot spend the same points)."""
    receiver = charity(session, charity_id)
    if receiver is None:
        raise DonationRefused(404, "No such charity.")
    account = lock_member(session, member_id)
    # Read after the lock: an erasure holds it while it closes the account.
    if session.scalar(select(Member.erased_at).where(Member.id == member_id)) is not None:
        raise DonationRefused(401, ACCOUNT_CLOSED, Reason.SESSION_ENDED)
    # Points past their expiry are not there to give.
    expire_member(session, member_id, now or utcnow())
    available = account_balance(session, account.id)
    if available < points:
        raise DonationRefused(
            409, f"Not enough points: you have {available}, you offered {points}.",
            Reason.INSUFFICIENT_POINTS)
    posting = post(
        session,
        "donation",
        f"Donated to {receiver.name}",
        [(account, -points), (scheme_account(session, "scheme:donated"), points)],
        member_id=member_id,
    )
    donation = Donation(id=uuid.uuid4(), member_id=member_id, charity_id=receiver.id,
                        points=points, posting_id=posting.id)
    session.add(donation)
    return donation


@dataclass(frozen=True)
class CharityTotal:
    charity_id: uuid.UUID
    name: str
    points: int | None
    donations: int | None
    donors: int | None  # None: fewer than the suppression threshold; not shown


@dataclass(frozen=True)
class DonationTotals:
    charities: list[CharityTotal]
    donated: int | None  # None when a hidden charity's points could be worked out from it
    earned: int

    @property
    def share(self) -> float | None:
        if self.donated is None:
            return None
        return round(self.donated / self.earned, 4) if self.earned > 0 else 0.0


def suppress(count: int, threshold: int) -> int | None:
    """Small cells are hidden: a count under the threshold could point at a person."""
    return count if count >= threshold else None


def totals(session: Session, threshold: int) -> DonationTotals:
    """Per charity (every charity, donated to or not) and for the whole scheme: points
    donated against points ever earned (awarded, less awards reversed)."""
    rows = session.execute(
        select(Partner.id, Partner.name, func.coalesce(func.sum(Donation.points), 0),
               func.count(Donation.id), func.count(func.distinct(Donation.member_id)))
        .select_from(Partner)
        .outerjoin(Donation, Donation.charity_id == Partner.id)
        .where(Partner.kind == "charity")
        .group_by(Partner.id, Partner.name)
        .order_by(Partner.name)
    ).all()
    # A charity given to by a few members hides its points and donations as well as
    # its donors (one donor's total is that person's gift), and then the scheme total
    # hides too, or the hidden figure would be the total less the others.
    charities = [
        CharityTotal(cid, name, int(points), int(count), suppress(int(donors), threshold))
        if not 0 < donors < threshold else CharityTotal(cid, name, None, None, None)
        for cid, name, points, count, donors in rows]
    hidden = any(charity.points is None for charity in charities)

    def balance(code: str) -> int:
        account_id = session.scalar(select(Account.id).where(Account.code == code))
        return 0 if account_id is None else account_balance(session, account_id)

    # Issuance goes negative as points are awarded; reversals bring it back.
    return DonationTotals(charities, None if hidden else balance("scheme:donated"),
                          -balance("scheme:issuance"))

