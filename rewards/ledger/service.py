from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import Account, Posting, PostingLine


class LedgerError(Exception):
    pass


def check_balanced(lines: Sequence[tuple[object, int]]) -> None:
    """Decide: a posting is valid only if it has lines and they sum to zero."""
    if len(lines) < 2:
        raise LedgerError("a posting needs at least two lines")
    if sum(points for _, points in lines) != 0:
        raise LedgerError("a posting's lines must sum to zero")
    if any(not isinstance(points, int) for _, points in lines):
        raise LedgerError("points are whole numbers")


def scheme_account(session: Session, code: str) -> Account:
    account = session.scalar(select(Account).where(Account.code == code))
    if account is not None:
        return account
    try:
        with session.begin_nested():
            account = Account(code=code, kind=code.split(":", 1)[1])
            session.add(account)
    except IntegrityError:
        account = session.scalar(select(Account).where(Account.code == code))
    assert account is not None
    return account


def ensure_member_accounts(session: Session, member_id: uuid.UUID) -> None:
    """Create a new member's accounts in the member's own transaction."""
    for kind in ("available", "pending"):
        session.add(Account(code=f"member:{member_id}:{kind}", kind=kind, member_id=member_id))


def member_account(session: Session, member_id: uuid.UUID, kind: str = "available") -> Account:
    account = session.scalar(select(Account).where(Account.code == f"member:{member_id}:{kind}"))
    if account is None:
        raise LedgerError(f"member {member_id} has no {kind} account")
    return account


def lock_member(session: Session, member_id: uuid.UUID) -> Account:
    """Serialise everything that spends a member's points: a row lock on the member's
    available account (PostgreSQL); SQLite already holds the write lock from BEGIN."""
    account = session.scalar(
        select(Account)
        .where(Account.code == f"member:{member_id}:available")
        # NO KEY UPDATE: serialises spenders without blocking inserts of lines that
        # reference the account (earning, releases) as plain FOR UPDATE would.
        .with_for_update(key_share=True)
    )
    if account is None:
        raise LedgerError(f"member {member_id} has no available account")
    return account


def account_balance(session: Session, account_id: uuid.UUID) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(PostingLine.points), 0)).where(
            PostingLine.account_id == account_id
        )
    )
    return int(total or 0)


@dataclass(frozen=True)
class MemberBalances:
    available: int
    pending: int
    lifetime_earned: int


def member_balances(session: Session, member_id: uuid.UUID) -> MemberBalances:
    rows = session.execute(
        select(Account.kind, func.coalesce(func.sum(PostingLine.points), 0))
        .join(PostingLine, PostingLine.account_id == Account.id, isouter=True)
        .where(Account.member_id == member_id)
        .group_by(Account.kind)
    ).all()
    by_kind = {kind: int(total) for kind, total in rows}
    earned = session.scalar(
        select(func.coalesce(func.sum(PostingLine.points), 0))
        .join(Posting, Posting.id == PostingLine.posting_id)
        .join(Account, Account.id == PostingLine.account_id)
        .where(Account.member_id == member_id, Posting.kind == "earn")
    )
    return MemberBalances(
        available=by_kind.get("available", 0),
        pending=by_kind.get("pending", 0),
        lifetime_earned=int(earned or 0),
    )


def post(
    session: Session,
    kind: str,
    reason: str,
    lines: Sequence[tuple[Account, int]],
    *,
    key: str | None = None,
    member_id: uuid.UUID | None = None,
    action_id: uuid.UUID | None = None,
    reward_id: uuid.UUID | None = None,
) -> Posting:
    check_balanced(lines)
    posting = Posting(
        id=uuid.uuid4(),
        kind=kind,
        reason=reason,
        key=key,
        member_id=member_id,
        action_id=action_id,
        reward_id=reward_id,
    )
    session.add(posting)
    for account, points in lines:
        if points:
            session.add(PostingLine(posting_id=posting.id, account_id=account.id, points=points))
    return posting


def verify(session: Session) -> list[str]:
    """Problems with the ledger's invariants; an empty list means it is sound."""
    problems: list[str] = []
    unbalanced = session.execute(
        select(PostingLine.posting_id, func.sum(PostingLine.points))
        .group_by(PostingLine.posting_id)
        .having(func.sum(PostingLine.points) != 0)
    ).all()
    problems += [f"posting {pid} sums to {total}" for pid, total in unbalanced]
    negative = session.execute(
        select(Account.code, func.sum(PostingLine.points))
        .join(PostingLine, PostingLine.account_id == Account.id)
        .where(Account.kind == "available")
        .group_by(Account.code)
        .having(func.sum(PostingLine.points) < 0)
    ).all()
    problems += [f"account {code} is below zero ({total})" for code, total in negative]
    return problems
