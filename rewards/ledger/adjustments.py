"""Staff adjustments: points given or taken by hand, always with a reason."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from ..models import Posting, utcnow
from .expiry import expire_member
from .service import LedgerError, account_balance, earn_terms, lock_member, post, scheme_account

MAX_ADJUSTMENT = 1_000_000


class NotEnoughPoints(LedgerError):
    def __init__(self, available: int, wanted: int) -> None:
        super().__init__(f"the member has {available} points available; cannot take {wanted}")
        self.available = available
        self.wanted = wanted


def adjust(
    session: Session,
    member_id: uuid.UUID,
    points: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> Posting:
    """Credit (points > 0) or debit (points < 0) the member's available account
    against scheme:adjustments, in the caller's transaction. A credit is a lot with
    the normal expiry; a debit never takes the balance below zero (NotEnoughPoints)."""
    if not isinstance(points, int) or points == 0:
        raise LedgerError("an adjustment moves a whole, non-zero number of points")
    if abs(points) > MAX_ADJUSTMENT:
        raise LedgerError(f"an adjustment moves at most {MAX_ADJUSTMENT} points")
    if not reason.strip():
        raise LedgerError("an adjustment needs a reason")
    now = now or utcnow()
    account = lock_member(session, member_id)
    scheme = scheme_account(session, "scheme:adjustments")
    if points > 0:
        available_at, expires_at = earn_terms(now)
        return post(session, "adjustment", reason.strip(), [(scheme, -points), (account, points)],
                    member_id=member_id, available_at=available_at, expires_at=expires_at)
    expire_member(session, member_id, now)  # points past their expiry are not there to take
    available = account_balance(session, account.id)
    if available < -points:
        raise NotEnoughPoints(available, -points)
    return post(session, "adjustment", reason.strip(), [(account, points), (scheme, -points)],
                member_id=member_id)
