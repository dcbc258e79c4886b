"""The ledger's rollups, by the day points were posted (scheme zone): points moved per
scheme account and posting kind (LedgerDay), and earned points by the day they expire
(ExpiryDay).

The forecast figure asks how many earned points fall due in the next 30, 60 and 90
days. Summed from the ledger, that is every earn line expiring in the window read on
each request (a scan of the whole ledger at a million actions). The expiry days hold
the same sums by (posting day, expiry day), so the figure reads a few hundred rows.

A posting day is the day of a posting's lines on scheme accounts (an earn posting's
on issuance). The refresh redoes the days with new lines there, both tables' rows of a
day whole (delete, insert), so redoing a day is harmless. A scheme whose rollups were
built before the expiry days existed has none: the first refresh after fills them for
the whole history, once (`catch_up`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import Select

from ..models import Account, Posting, PostingLine
from ..models.dashboard import DashboardRefresh, ExpiryDay, LedgerDay
from .filters import day_bounds, today

# The DashboardRefresh row that says the expiry days were filled for the whole history.
EXPIRY_STATE = "expiry_days"


def scheme_accounts(session: Session) -> list[uuid.UUID]:
    return list(session.scalars(select(Account.id).where(Account.member_id.is_(None))))


def rebuild(session: Session, days: Iterable[date]) -> int:
    """Both tables' rows of the posting days `days` again from the ledger; returns the
    number of days."""
    days = sorted(set(days))
    accounts = scheme_accounts(session)
    table = LedgerDay.__table__
    for day in days:
        start, end = day_bounds(day, day)
        session.execute(delete(table).where(table.c.day == day))
        if not accounts:
            continue
        source = (
            select(literal(day).label("day"), Account.code, Posting.kind,
                   func.sum(PostingLine.points), func.count())
            .join(Account, Account.id == PostingLine.account_id)
            .join(Posting, Posting.id == PostingLine.posting_id)
            .where(PostingLine.account_id.in_(accounts), PostingLine.created_at >= start,
                   PostingLine.created_at < end)
            .group_by(Account.code, Posting.kind))
        session.execute(insert(table).from_select(
            ["day", "account", "kind", "points", "postings"], source))
    expiry_days(session, days, accounts)
    return len(days)


def expiry_grouped(accounts: list[uuid.UUID], first: date, last: date) -> Select[Any]:
    """(day, expires, points): the credits of earn postings whose scheme-account line
    was posted `first`..`last`, summed by that day and the day they expire (scheme
    zone). An earn posting takes its points from one scheme account, so each posting
    is counted once; its credits are what the figure used to sum from the ledger."""
    from .sources import day_of

    issued = aliased(PostingLine)  # the line on the scheme account: when it was posted
    credit = aliased(PostingLine)
    start, end = day_bounds(first, last)
    day = day_of(issued.created_at).label("day")
    expires = day_of(Posting.expires_at).label("expires")
    return (
        select(day, expires, func.sum(credit.points).label("points"))
        .select_from(issued)
        .join(Posting, Posting.id == issued.posting_id)
        .join(credit, credit.posting_id == Posting.id)
        .where(issued.account_id.in_(accounts), issued.points < 0,
               issued.created_at >= start, issued.created_at < end,
               Posting.kind == "earn", Posting.expires_at.is_not(None), credit.points > 0)
        .group_by(day, expires))


def _runs(days: Iterable[date]) -> Iterable[tuple[date, date]]:
    """Consecutive days as (first, last): one statement a run, however long."""
    run: list[date] = []
    for day in sorted(set(days)):
        if run and (day - run[-1]).days != 1:
            yield run[0], run[-1]
            run = []
        run.append(day)
    if run:
        yield run[0], run[-1]


def expiry_days(session: Session, days: Iterable[date],
                accounts: list[uuid.UUID] | None = None) -> None:
    """The expiry-day rows of the posting days `days` again from the ledger."""
    table = ExpiryDay.__table__
    if accounts is None:
        accounts = scheme_accounts(session)
    for first, last in _runs(days):
        session.execute(delete(table).where(table.c.day >= first, table.c.day <= last))
        if accounts:
            session.execute(insert(table).from_select(
                ["day", "expires", "points"], expiry_grouped(accounts, first, last)))


def catch_up(session: Session) -> int:
    """Fill the expiry days for every posting day once, if that was never done: the
    ledger days say where the history starts. Returns the days filled."""
    if session.get(DashboardRefresh, EXPIRY_STATE) is not None:
        return 0
    first = session.scalar(select(func.min(LedgerDay.day)))
    if first is None:
        return 0
    days = [first + timedelta(days=n) for n in range((today() - first).days + 1)]
    expiry_days(session, days)
    return len(days)


def mark_filled(session: Session, now: datetime) -> None:
    """After a first build or a catch-up: every posting day has its expiry rows."""
    if session.get(DashboardRefresh, EXPIRY_STATE) is None:
        session.add(DashboardRefresh(name=EXPIRY_STATE, refreshed_at=now))
