"""A member's balances and lots, read without their history.

The database keeps each member's running totals (`member_totals`, written by a trigger
on posting_lines in the transaction that adds the lines: migration 0025), so a balance
is one row. What is left of the member's lots comes from the newest end of their
credits (latest expiry first): a resident's balance and a claim ask the database for
only the lots that expire by a moment (`balance_expiring`), and `lots_left` (every lot,
for exports and staff) stops reading once the credits read add up to the balance. Lots
from the FIFO rule are the same either way (lots.left_from_newest). `verify` checks the
totals against the lines; `recount_totals` sums them again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

from .. import reads
from ..models import Account, MemberTotals, Posting, PostingLine
from ..models.ledger import LOT_POSTINGS
from .lots import Lot, left_from_newest

# Credits read at first from the newest end; a member holding more lots than this
# (points kept unspent a long time) is read again in full.
FIRST_READ = 48
EVERY = 2**62


@dataclass(frozen=True)
class MemberBalances:
    available: int
    pending: int
    lifetime_earned: int
    # What is left of the available points' lots, soonest-expiring first.
    lots: tuple[Lot, ...] = ()


def member_balances(session: Session, member_id: uuid.UUID) -> MemberBalances:
    """The member's balances (one row) and what is left of their lots."""
    row = reads.first(_totals_stmt(), {"member": member_id}, session)
    if row is None:  # no line yet
        return MemberBalances(0, 0, 0)
    available, pending, issued = row
    lots = lots_left(session, member_id, int(available))
    return MemberBalances(available=int(available), pending=int(pending),
                          lifetime_earned=int(issued), lots=tuple(lots))


def balance_expiring(session: Session, member_id: uuid.UUID,
                     by: datetime) -> tuple[MemberBalances, list[Lot]]:
    """The member's balances and what is left of their lots that expire by `by`
    (inclusive), one per expiry time, soonest first (lots.expiring of lots_left), in
    one statement: the database works the lots out and sends only those. Spending takes
    the soonest first, so what is left of a lot is what the credits after it (in that
    order) do not already make up of the balance."""
    rows = reads.rows(_balance_stmt(), {"member": member_id, "by": by}, session)
    if not rows:  # no line yet
        return MemberBalances(0, 0, 0), []
    available, pending, issued = rows[0][:3]
    return (MemberBalances(int(available), int(pending), int(issued)),
            [Lot(int(points), expires_at) for *_, expires_at, points in rows
             if expires_at is not None])


def member_available(session: Session, member_id: uuid.UUID) -> int:
    """The member's spendable points (before any expiry the daily job has yet to take)."""
    row = reads.first(_totals_stmt(), {"member": member_id}, session)
    return int(row[0]) if row is not None else 0


def member_lots(session: Session, member_id: uuid.UUID) -> list[Lot]:
    """The member's spendable points as lots, soonest-expiring first."""
    return lots_left(session, member_id, member_available(session, member_id))


def lots_left(session: Session, member_id: uuid.UUID, balance: int) -> list[Lot]:
    """What is left of the member's lots given their available balance, soonest-expiring
    first: the newest credits first, FIRST_READ of them, all of them if that is short."""
    if balance <= 0:
        return []
    rows = reads.rows(_newest_credits_stmt(), {"member": member_id, "first": FIRST_READ},
                      session)
    lots, reached = left_from_newest(rows, balance)
    if reached or len(rows) < FIRST_READ:
        return lots
    rows = reads.rows(_newest_credits_stmt(), {"member": member_id, "first": EVERY}, session)
    return left_from_newest(rows, balance)[0]


def _available_account() -> Any:
    """The member's available account, looked up once in the statement (not joined to
    each of their lines)."""
    accounts = Account.__table__
    return (select(accounts.c.id)
            .where(accounts.c.member_id == bindparam("member", type_=accounts.c.member_id.type),
                   accounts.c.kind == literal_column("'available'"))
            .scalar_subquery())


@cache
def _totals_stmt() -> Select[Any]:
    totals = MemberTotals.__table__
    return (select(totals.c.available, totals.c.pending, totals.c.issued)
            .where(totals.c.member_id == bindparam("member", type_=totals.c.member_id.type)))


_LINES, _POSTINGS = PostingLine.__table__, Posting.__table__
# FIFO's order read backwards: never-expiring first, then latest expiry first, ties
# latest made first.
_NEWEST_FIRST = (_POSTINGS.c.expires_at.desc().nulls_first(), _LINES.c.created_at.desc(),
                 _LINES.c.id.desc())


def _credits(*columns: Any) -> Select[Any]:
    """`columns` of the member's lots as credited: lines crediting their available
    account from a lot's posting. The kinds as literal SQL, the partial index's own
    condition, so the planner uses it with any plan."""
    member = bindparam("member", type_=_POSTINGS.c.member_id.type)
    return (select(*columns)
            .select_from(_POSTINGS.join(_LINES, _LINES.c.posting_id == _POSTINGS.c.id))
            .where(_POSTINGS.c.member_id == member, literal_column(f"postings.{LOT_POSTINGS}"),
                   _LINES.c.account_id == _available_account(), _LINES.c.points > 0))


@cache
def _newest_credits_stmt() -> Select[Any]:
    """The member's lots as credited (points, expiry), newest end first, the first
    `first` of them."""
    return (_credits(_LINES.c.points, _POSTINGS.c.expires_at)
            .order_by(*_NEWEST_FIRST).limit(bindparam("first")))


@cache
def _balance_stmt() -> Select[Any]:
    """The member's totals, each with one of the lots left that expire by `by`
    (NULLs when none does)."""
    totals = MemberTotals.__table__
    member = bindparam("member", type_=totals.c.member_id.type)
    kept = (select(totals.c.available, totals.c.pending, totals.c.issued)
            .where(totals.c.member_id == member).subquery("kept"))
    credits = _credits(
        _LINES.c.points, _POSTINGS.c.expires_at,
        func.sum(_LINES.c.points).over(order_by=_NEWEST_FIRST, rows=(None, 0)).label("upto"),
    ).subquery("credits")
    balance = select(totals.c.available).where(totals.c.member_id == member).scalar_subquery()
    wanted = balance - (credits.c.upto - credits.c.points)  # of the balance, not yet made up
    left = case((credits.c.points < wanted, credits.c.points), else_=wanted)
    expiring = (select(credits.c.expires_at, func.sum(left).label("points"))
                .where(wanted > 0,
                       credits.c.expires_at <= bindparam("by", type_=_POSTINGS.c.expires_at.type))
                .group_by(credits.c.expires_at).subquery("expiring"))
    return (select(kept.c.available, kept.c.pending, kept.c.issued, expiring.c.expires_at,
                   expiring.c.points)
            .select_from(kept.outerjoin(expiring, true()))
            .order_by(expiring.c.expires_at))


@cache
def spendable_by() -> Any:
    """A one-row CTE of the member's spendable points (`available`, 0 with no lines yet)
    and the points of their lots that expire by `by` (`expiring`, 0 when none does), for
    a write to test in its own statement (a claim on PostgreSQL: rewards/vouchers.py).
    Its parameters are `member` and `by`, as for `balance_expiring`."""
    funds = _balance_stmt().subquery("member_funds")
    return select(func.coalesce(func.max(funds.c.available), 0).label("available"),
                  func.coalesce(func.sum(funds.c.points), 0).label("expiring")).cte("funds")


def _from_lines(session: Session) -> dict[Any, list[int]]:
    """Every member's totals summed from the lines: [available, pending, issued]."""
    accounts, lines, postings = Account.__table__, PostingLine.__table__, Posting.__table__
    by_kind = (select(accounts.c.member_id, accounts.c.kind,
                      func.sum(lines.c.points).label("points"))
               .join(lines, lines.c.account_id == accounts.c.id)
               .where(accounts.c.member_id.is_not(None))
               .group_by(accounts.c.member_id, accounts.c.kind))
    actual: dict[Any, list[int]] = {}
    for member_id, kind, points in session.execute(by_kind):
        actual.setdefault(member_id, [0, 0, 0])[0 if kind == "available" else 1] += int(points)
    issued = (select(postings.c.member_id, func.sum(-lines.c.points))
              .join(lines, lines.c.posting_id == postings.c.id)
              .join(accounts, accounts.c.id == lines.c.account_id)
              .where(accounts.c.code == "scheme:issuance", postings.c.member_id.is_not(None),
                     postings.c.kind.in_(("earn", "reversal")))
              .group_by(postings.c.member_id))
    for member_id, points in session.execute(issued):
        actual.setdefault(member_id, [0, 0, 0])[2] += int(points)
    return actual


def totals_problems(session: Session) -> list[str]:
    """Members whose running totals differ from their lines (and awards issued)."""
    actual = _from_lines(session)
    kept = {member_id: [int(a), int(p), int(i)] for member_id, a, p, i in session.execute(
        select(MemberTotals.member_id, MemberTotals.available, MemberTotals.pending,
               MemberTotals.issued))}
    return [f"member {member_id}: running totals (available, pending, issued) are "
            f"{tuple(kept.get(member_id, (0, 0, 0)))}, the ledger says "
            f"{tuple(actual.get(member_id, (0, 0, 0)))}"
            for member_id in sorted(set(actual) | set(kept), key=str)
            if kept.get(member_id, [0, 0, 0]) != actual.get(member_id, [0, 0, 0])][:100]


def recount_totals(session: Session) -> int:
    """Sum every member's running totals again from the lines, in the session's
    transaction (the caller commits); returns the members counted. For a database
    whose lines were written with triggers off (a bulk load with
    session_replication_role = replica) or restored in part: `verify` says when. Lines
    written meanwhile wait (PostgreSQL: a SHARE lock on posting_lines until commit;
    SQLite's writer already holds the database)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE posting_lines IN SHARE MODE"))
    actual = _from_lines(session)
    session.execute(delete(MemberTotals))
    rows = [{"member_id": member_id, "available": available, "pending": pending,
             "issued": issued} for member_id, (available, pending, issued) in actual.items()]
    for start in range(0, len(rows), 5000):
        session.execute(insert(MemberTotals), rows[start:start + 5000])
    return len(rows)
