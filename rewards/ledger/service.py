from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

from flask import current_app, has_app_context
from sqlalchemy import Select, and_, bindparam, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import Account, Action, Award, Posting, PostingLine, Rule
from .lots import DEFAULT_EXPIRY_MONTHS, Movement, lot_terms, lots_of
from .totals import totals_problems


class LedgerError(Exception):
    pass


def setting(name: str, default: int) -> int:
    """A scheme setting from the app's config; the default outside an app."""
    if has_app_context():
        return int(current_app.config.get(name, default))
    return default


def earn_terms(
    now: datetime, hold_days: int = 0, expiry_months: int | None = None
) -> tuple[datetime, datetime | None]:
    """(available_at, expires_at) for points awarded at `now` under a rule with
    `hold_days`: pass both to `post()`. Expiry is POINTS_EXPIRY_MONTHS after `now`."""
    if expiry_months is None:
        expiry_months = setting("POINTS_EXPIRY_MONTHS", DEFAULT_EXPIRY_MONTHS)
    return lot_terms(now, hold_days, expiry_months)


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


def _movements_stmt() -> Select[tuple[uuid.UUID, int, str, datetime | None]]:
    """An account's lines with their postings' kind and expiry, oldest first."""
    return (
        select(PostingLine.account_id, PostingLine.points, Posting.kind, Posting.expires_at)
        .join(Posting, Posting.id == PostingLine.posting_id)
        .order_by(PostingLine.account_id, PostingLine.created_at, PostingLine.id)
    )


def account_movements(session: Session, account_id: uuid.UUID) -> list[Movement]:
    rows = session.execute(_movements_stmt().where(PostingLine.account_id == account_id))
    return [Movement(points, kind, expires_at) for _, points, kind, expires_at in rows]


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
    available_at: datetime | None = None,
    expires_at: datetime | None = None,
    origin_id: uuid.UUID | None = None,
) -> Posting:
    """Record one balanced movement. A credit that is a lot carries its terms:
    `available_at` (when held points become spendable) and `expires_at` (when what
    is left of them expires; None never)."""
    check_balanced(lines)
    posting = Posting(
        id=uuid.uuid4(),
        kind=kind,
        reason=reason,
        key=key,
        member_id=member_id,
        action_id=action_id,
        reward_id=reward_id,
        available_at=available_at,
        expires_at=expires_at,
        origin_id=origin_id,
    )
    session.add(posting)
    for account, points in lines:
        if points:
            session.add(PostingLine(posting_id=posting.id, account_id=account.id, points=points))
    return posting


def add_points_awarded(session: Session, changes: Mapping[uuid.UUID, int]) -> None:
    """Add to (or, negative, take from) rules' running totals (rules.points_awarded), one
    rule at a time in id order: the order every awarding transaction locks rule rows in,
    so no two wait on each other in a cycle. Once per transaction, after its awards or
    reversals, just before commit."""
    moves = [{"rule": rule_id, "points": points}
             for rule_id, points in sorted(changes.items()) if points]
    if moves:
        session.execute(
            update(Rule.__table__).where(Rule.__table__.c.id == bindparam("rule"))
            .values(points_awarded=Rule.__table__.c.points_awarded + bindparam("points")),
            moves,
        )


def verify_snapshot(session: Session) -> list[str]:
    """verify() in a transaction of its own that sees one snapshot of the database
    (REPEATABLE READ on PostgreSQL; SQLite's transactions always do), so batches
    committing meanwhile cannot make one check disagree with another. Writes nothing:
    ends whatever the session had open before, rolls back after."""
    session.rollback()
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    try:
        return verify(session)
    finally:
        session.rollback()


def verify(session: Session) -> list[str]:
    """Problems with the ledger's invariants, read in the session's open transaction;
    an empty list means it is sound. Checks: every posting's lines sum to zero, all
    accounts together sum to zero, no member's balance is below zero, each member's
    lots add up to their available balance, members' running totals equal their
    lines, each rule's running total equals its
    awards (less what revocations took back), awards are marked revoked exactly
    when their actions are, and each earn posting credits exactly its awards."""
    problems: list[str] = []
    unbalanced = session.execute(
        select(PostingLine.posting_id, func.sum(PostingLine.points))
        .group_by(PostingLine.posting_id)
        .having(func.sum(PostingLine.points) != 0)
    ).all()
    problems += [f"posting {pid} sums to {total}" for pid, total in unbalanced]
    total = session.scalar(select(func.coalesce(func.sum(PostingLine.points), 0)))
    if total:
        problems.append(f"all accounts together sum to {total}, not 0")
    negative = session.execute(
        select(Account.code, func.sum(PostingLine.points))
        .join(PostingLine, PostingLine.account_id == Account.id)
        .where(Account.kind.in_(("available", "pending")))
        .group_by(Account.code)
        .having(func.sum(PostingLine.points) < 0)
    ).all()
    problems += [f"account {code} is below zero ({total})" for code, total in negative]
    problems += _lot_problems(session)
    problems += totals_problems(session)
    problems += _award_problems(session)
    return problems


def _award_problems(session: Session) -> list[str]:
    """Each rule's running total must equal its awards not revoked plus the written-off
    part of those revoked; an award is marked revoked exactly when its action is; and
    each posting that awards name must be an earn posting crediting exactly their
    points."""
    counted = (select(Award.rule_id, func.sum(case(
        (Award.revoked_at.is_(None), Award.points), else_=Award.points_written_off,
    )).label("points")).group_by(Award.rule_id).subquery())
    problems = [
        f"rule {name}: points_awarded is {kept}, its awards sum to {actual or 0} (those "
        "not revoked, and the written-off part of those revoked)"
        for name, kept, actual in session.execute(
            select(Rule.name, Rule.points_awarded, counted.c.points)
            .outerjoin(counted, counted.c.rule_id == Rule.id)
            .where(Rule.points_awarded != func.coalesce(counted.c.points, 0))
        )
    ]
    problems += [
        f"award {award_id} of action {action_id} ({status}) is "
        f"{'not ' if revoked_at is None else ''}marked revoked"
        for award_id, action_id, status, revoked_at in session.execute(
            select(Award.id, Award.action_id, Action.status, Award.revoked_at)
            .join(Action, Action.id == Award.action_id)
            .where(or_(and_(Action.status == "revoked", Award.revoked_at.is_(None)),
                       and_(Action.status != "revoked", Award.revoked_at.is_not(None))))
            .limit(100)
        )
    ]
    awarded = (select(Award.posting_id, func.sum(Award.points).label("points"))
               .where(Award.posting_id.is_not(None)).group_by(Award.posting_id).subquery())
    credited = (select(PostingLine.posting_id, func.sum(PostingLine.points).label("points"))
                .join(Posting, Posting.id == PostingLine.posting_id)
                .where(Posting.kind == "earn", PostingLine.points > 0)
                .group_by(PostingLine.posting_id).subquery())
    problems += [
        f"earn posting {posting_id} credits {credit or 0}, its awards sum to {award}"
        for posting_id, credit, award in session.execute(
            select(awarded.c.posting_id, credited.c.points, awarded.c.points)
            .outerjoin(credited, credited.c.posting_id == awarded.c.posting_id)
            .where(func.coalesce(credited.c.points, 0) != awarded.c.points)
        )
    ]
    return problems


def _lot_problems(session: Session) -> list[str]:
    """Each member's lots, from the FIFO rule, must add up to their available balance."""
    available = select(Account.id).where(Account.kind == "available")
    rows = session.execute(
        _movements_stmt().where(PostingLine.account_id.in_(available))
        .execution_options(yield_per=5000)
    )
    wrong: dict[uuid.UUID, tuple[int, int]] = {}
    for account_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        movements = [Movement(points, kind, expires_at) for _, points, kind, expires_at in group]
        balance = sum(m.points for m in movements)
        in_lots = sum(lot.points for lot in lots_of(movements))
        if in_lots != balance:
            wrong[account_id] = (in_lots, balance)
    codes = {account_id: code for account_id, code in session.execute(
        select(Account.id, Account.code).where(Account.id.in_(list(wrong))))}
    return [f"account {codes.get(account_id, account_id)}: lots add up to {in_lots}, "
            f"the balance is {balance}" for account_id, (in_lots, balance) in wrong.items()]
