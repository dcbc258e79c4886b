"""Expiring what is left of lots whose time has come."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Account, Posting, PostingLine
from .lots import LOT_KINDS
from .service import lock_member, post, scheme_account
from .totals import balance_expiring


def members_with_expired_lots(session: Session, now: datetime) -> list[uuid.UUID]:
    """Members who may have points to expire: a lot credited to them has reached its
    expiry and they have points left. Whether any of that lot is left is decided per
    member by `expire_member`."""
    with_expired_credits = (
        select(PostingLine.account_id)
        .join(Posting, Posting.id == PostingLine.posting_id)
        .where(Posting.expires_at <= now, Posting.kind.in_(LOT_KINDS), PostingLine.points > 0)
    )
    positive = (
        select(PostingLine.account_id)
        .where(PostingLine.account_id.in_(with_expired_credits))
        .group_by(PostingLine.account_id)
        .having(func.sum(PostingLine.points) > 0)
    )
    return sorted(session.scalars(
        select(Account.member_id).where(Account.kind == "available", Account.id.in_(positive))
    ))


def expire_member(session: Session, member_id: uuid.UUID, now: datetime, *,
                  locked: Account | None = None) -> int:
    """Post one expiry for everything left of the member's lots that expired by `now`,
    in the caller's transaction; returns the points expired. Under the member lock
    (`locked`: the available account the caller has locked already, see lock_member),
    and from the lots as they are after it: a second run finds nothing left to expire."""
    account = locked if locked is not None else lock_member(session, member_id)
    session.flush()  # the totals and lots are read past the session
    return _expire_lots(session, member_id, now, account)[0]


class AccountRef(NamedTuple):
    """An account by id, for post(): what a claim has of the account it locked."""

    id: uuid.UUID


def expire_then_spendable(session: Session, member_id: uuid.UUID, account_id: uuid.UUID,
                          now: datetime) -> int:
    """expire_member, then the available balance after the expiry, for a caller holding
    the member lock by the account's id (a claim, which locks it in a statement of its
    own, having flushed the session, and spends what this returns under that lock)."""
    expired, spendable = _expire_lots(session, member_id, now, AccountRef(account_id))
    if expired:
        session.flush()  # the expiry's rows before the claim's own, which skip the session
    return spendable


def _expire_lots(session: Session, member_id: uuid.UUID, now: datetime,
                 account: Account | AccountRef) -> tuple[int, int]:
    """Expire what is left of lots past their expiry (one read of the totals and those
    lots); returns (points expired, available balance after)."""
    balances, expired = balance_expiring(session, member_id, now)
    balance = balances.available
    points = sum(lot.points for lot in expired)
    if points <= 0:
        return 0, balance
    post(
        session,
        "expiry",
        "Points expired: not spent by their expiry date",
        [(account, -points), (scheme_account(session, "scheme:expired"), points)],
        member_id=member_id,
    )
    return points, balance - points
