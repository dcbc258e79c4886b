"""What a resident reads of the ledger (balances, lifetime earned, lots, the available
figure the catalogue uses) agrees with the lines after random operations, whatever
other members do; the running totals the database keeps follow every way lines are
written; and the lookups by action and by a member's lots use their index."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from rewards.extensions import db
from rewards.ledger import (
    NotEnoughPoints,
    adjust,
    balance_expiring,
    expire_member,
    expiring,
    member_available,
    member_balances,
    member_lots,
    pending_credits,
    release_member,
    reverse_action,
    verify,
)
from rewards.ledger.lots import lots_of
from rewards.ledger.service import account_movements, member_account
from rewards.ledger.totals import FIRST_READ, recount_totals
from rewards.models import Account, Action, MemberTotals, Posting, PostingLine
from tests.helpers import postgres_only

from .support import available, earn, make_member, make_place, pending, spend

START = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


def issued_to(session: Session, member_id: uuid.UUID) -> int:
    """Lifetime earned the long way: every issuance line of the scheme, kept when its
    posting is the member's award or reversal."""
    total = 0
    rows = session.execute(
        select(PostingLine.points, Posting.member_id, Posting.kind)
        .join(Posting, Posting.id == PostingLine.posting_id)
        .join(Account, Account.id == PostingLine.account_id)
        .where(Account.code == "scheme:issuance"))
    for points, owner, kind in rows:
        if owner == member_id and kind in ("earn", "reversal"):
            total -= points
    return total


def check_member(session: Session, member_id: uuid.UUID) -> None:
    shown = member_balances(session, member_id)
    assert shown.available == available(session, member_id)
    assert shown.pending == pending(session, member_id)
    assert shown.lifetime_earned == issued_to(session, member_id)
    # Lots read from the newest end equal the FIFO rule over the whole history.
    whole = lots_of(account_movements(session, member_account(session, member_id).id))
    assert list(shown.lots) == whole
    assert member_lots(session, member_id) == whole
    # What expires by a moment, worked out by the database, is the same as from the lots.
    for by in (START + timedelta(days=800), START + timedelta(days=1400),
               START + timedelta(days=3000)):
        balances, lots = balance_expiring(session, member_id, by)
        assert lots == expiring(whole, by, timedelta(0))
        assert balances == replace(shown, lots=())
    assert sum(lot.points for lot in shown.lots) == shown.available
    assert member_available(session, member_id) == shown.available


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_member_reads_equal_the_lines_after_random_operations(session: Session, seed: int):
    rng = random.Random(seed)
    place = make_place(session)
    members = [make_member(session) for _ in range(3)]
    session.commit()
    actions: list[Action] = []
    now = START
    for _ in range(60):
        now += timedelta(days=rng.randint(0, 40), hours=rng.randint(0, 23))
        member_id = rng.choice(members)
        move = rng.choice(("earn", "earn", "earn", "hold", "spend", "release", "reverse",
                           "expire", "adjust"))
        if move in ("earn", "hold"):
            actions.append(earn(session, place, member_id, rng.randint(1, 30), now,
                                hold_days=7 if move == "hold" else 0))
        elif move == "spend":
            spend(session, place, member_id, rng.randint(1, 40), now=now)
        elif move == "release":
            release_member(session, member_id, now)
        elif move == "reverse" and actions:
            action = rng.choice(actions)
            reverse_action(session, action, "Revoked by the source", now)
        elif move == "expire":
            expire_member(session, member_id, now)
        elif move == "adjust":
            try:
                adjust(session, member_id, rng.randint(-20, 20) or 1, "Goodwill", now=now)
            except NotEnoughPoints:  # more taken than there is: refused, nothing posted
                session.rollback()
                continue
        session.commit()
        for each in members:
            check_member(session, each)
    assert verify(session) == []


def test_an_other_members_history_does_not_count(session: Session):
    place = make_place(session)
    mine, theirs = make_member(session), make_member(session)
    for day in range(5):
        earn(session, place, theirs, 10, START + timedelta(days=day))
    earn(session, place, mine, 7, START)
    session.commit()
    shown = member_balances(session, mine)
    assert (shown.available, shown.pending, shown.lifetime_earned) == (7, 0, 7)
    assert member_balances(session, theirs).lifetime_earned == 50
    assert member_available(session, uuid.uuid4()) == 0  # no such member: nothing


def _plan(session: Session, statement: str, params: dict[str, object]) -> str:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # On a small table a sequential scan is cheaper; forbid it to see which index
        # the query can use at all.
        session.execute(text("SET LOCAL enable_seqscan = off"))
        rows = session.execute(text(f"EXPLAIN {statement}"), params)
    else:
        rows = session.execute(text(f"EXPLAIN QUERY PLAN {statement}"), params)
    plan = "\n".join(" ".join(str(part) for part in row) for row in rows)
    session.rollback()
    return plan


def test_an_actions_postings_are_found_by_its_index(session: Session):
    place = make_place(session)
    member_id = make_member(session)
    action = earn(session, place, member_id, 10, START, hold_days=7)
    session.commit()
    # What reversal and release ask: the action's earn postings and its reversal.
    plan = _plan(session, "SELECT id FROM postings WHERE action_id = :action AND kind = 'earn'",
                 {"action": action.id if session.get_bind().dialect.name == "postgresql"
                  else action.id.hex})
    assert "ix_postings_action_id" in plan
    # And pending_credits by action, which goes through that lookup, still answers.
    assert [credit.points for credit in pending_credits(session, action_id=action.id)] == [10]


@pytest.mark.parametrize("spent", [5, 2 * FIRST_READ * 3 - 7])
def test_lots_of_a_long_history_equal_the_whole_fifo(session: Session, spent: int):
    """More credits than the first read takes: spending little leaves more lots than it
    reads (the whole history is read again), spending most leaves a few (it stops)."""
    place = make_place(session)
    member_id = make_member(session)
    for n in range(2 * FIRST_READ):
        earn(session, place, member_id, 3, START + timedelta(days=n % 40, minutes=n))
    spend(session, place, member_id, spent, now=START + timedelta(days=41))
    session.commit()
    check_member(session, member_id)
    left = member_balances(session, member_id)
    assert left.available == 2 * FIRST_READ * 3 - spent
    assert sum(lot.points for lot in left.lots) == left.available


def test_totals_follow_lines_written_by_any_statement_and_verify_checks_them(
        session: Session):
    """The trigger adds lines however they are written (here one raw INSERT of several
    lines, as bulk awarding does); a total that disagrees with its lines is reported."""
    place = make_place(session)
    first, second = make_member(session), make_member(session)
    earn(session, place, first, 10, START)
    session.commit()
    accounts = {member_id: member_account(session, member_id).id for member_id in (first, second)}
    issuance = session.scalar(select(Account.id).where(Account.code == "scheme:issuance"))
    posting = Posting(kind="earn", reason="Bulk", member_id=second)
    session.add(posting)
    session.flush()
    session.execute(PostingLine.__table__.insert(), [
        {"id": uuid.uuid4(), "posting_id": posting.id, "account_id": accounts[second],
         "points": 4, "created_at": START},
        {"id": uuid.uuid4(), "posting_id": posting.id, "account_id": accounts[second],
         "points": 5, "created_at": START},
        {"id": uuid.uuid4(), "posting_id": posting.id, "account_id": issuance,
         "points": -9, "created_at": START}])
    session.commit()
    check_member(session, first)
    check_member(session, second)
    assert member_balances(session, second).lifetime_earned == 9
    assert verify(session) == []
    session.execute(MemberTotals.__table__.update()
                    .where(MemberTotals.member_id == first).values(available=11))
    session.commit()
    problems = verify(session)
    assert len(problems) == 1 and f"member {first}: running totals" in problems[0]
    assert "(11, 0, 10)" in problems[0] and "(10, 0, 10)" in problems[0]
    # Summed again from the lines: every member's totals right, nothing else changed.
    assert recount_totals(session) == 2
    session.commit()
    assert verify(session) == []
    check_member(session, first)
    check_member(session, second)


def test_a_members_lots_are_read_by_their_index(app: Flask, session: Session):
    postgres_only(app, "the plan checked is PostgreSQL's")
    from rewards.ledger.totals import _newest_credits_stmt

    member_id = make_member(session)
    session.commit()
    compiled = _newest_credits_stmt().compile(session.get_bind())
    params = {**compiled.params, "member": member_id, "first": FIRST_READ}
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(row[0] for row in session.connection().exec_driver_sql(
        f"EXPLAIN {compiled.string}", params))
    session.rollback()
    assert "ix_postings_member_lots" in plan
