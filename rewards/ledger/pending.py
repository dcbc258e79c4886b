"""Pending points: awards under a rule with hold_days wait in the member's pending
account until their available_at, then move to available, keeping their expiry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, aliased

from ..models import Account, Posting, PostingLine
from .service import lock_member, member_account, post


@dataclass(frozen=True)
class PendingCredit:
    """An award still waiting in a pending account."""

    posting: Posting
    member_id: uuid.UUID
    points: int
    available_at: datetime


def release_key(earn_posting_id: uuid.UUID) -> str:
    return f"pending:{earn_posting_id}:release"


def pending_credits(
    session: Session,
    *,
    member_id: uuid.UUID | None = None,
    action_id: uuid.UUID | None = None,
    due_by: datetime | None = None,
) -> list[PendingCredit]:
    """Credits to pending accounts neither released nor reversed yet, oldest first;
    with `due_by`, only those spendable by then. A credit without available_at (none
    is made so; migration 0005 gave the old ones theirs) is due when posted."""
    release = aliased(Posting)
    reversal = aliased(Posting)
    stmt = (
        select(Posting, Account.member_id, PostingLine.points)
        .join(PostingLine, PostingLine.posting_id == Posting.id)
        .join(Account, Account.id == PostingLine.account_id)
        .where(
            Account.kind == "pending",
            PostingLine.points > 0,
            Posting.kind == "earn",
            ~exists().where(release.origin_id == Posting.id, release.kind == "pending_release"),
            ~exists().where(reversal.action_id == Posting.action_id,
                            reversal.kind == "reversal"),
        )
        .order_by(Posting.created_at, Posting.id)
    )
    if member_id is not None:
        stmt = stmt.where(Account.member_id == member_id)
    if action_id is not None:
        stmt = stmt.where(Posting.action_id == action_id)
    if due_by is not None:
        stmt = stmt.where(or_(Posting.available_at <= due_by, Posting.available_at.is_(None)))
    return [PendingCredit(posting, owner, int(points), posting.available_at or posting.created_at)
            for posting, owner, points in session.execute(stmt)]


def members_with_due_pending(session: Session, now: datetime) -> list[uuid.UUID]:
    return sorted({credit.member_id for credit in pending_credits(session, due_by=now)})


def release_member(session: Session, member_id: uuid.UUID, now: datetime) -> int:
    """Move each of the member's pending credits due by `now` to available, one
    posting per credit keyed by it, in the caller's transaction; returns the points
    moved. Under the member lock, so a reversal of the same action cannot interleave,
    and a second run finds the credits released."""
    lock_member(session, member_id)
    due = pending_credits(session, member_id=member_id, due_by=now)
    if not due:
        return 0
    pending = member_account(session, member_id, "pending")
    available = member_account(session, member_id, "available")
    for credit in due:
        earn = credit.posting
        post(
            session,
            "pending_release",
            f"Now spendable: {earn.reason}",
            [(pending, -credit.points), (available, credit.points)],
            key=release_key(earn.id),
            member_id=member_id,
            action_id=earn.action_id,
            available_at=credit.available_at,
            expires_at=earn.expires_at,
            origin_id=earn.id,
        )
    return sum(credit.points for credit in due)
