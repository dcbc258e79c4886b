"""The ledger's operations on the real database, at chosen times: expiry, pending
releases, reversals, adjustments and verify."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

import workers.ledger
from rewards import vouchers
from rewards.extensions import db
from rewards.ledger import (
    LedgerError,
    NotEnoughPoints,
    adjust,
    expire_member,
    expiring,
    member_balances,
    member_lots,
    pending_credits,
    post,
    release_member,
    reverse_action,
    scheme_account,
    verify,
)
from rewards.ledger.lots import Lot, add_months
from rewards.ledger.runs import expire_all, release_all
from rewards.models import Action, Posting

from .support import (
    Place,
    available,
    earn,
    hold,
    make_member,
    make_place,
    pending,
    postings,
    scheme_balance,
    spend,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
MONTHS = 24


def earned_to_expire_at(moment: datetime) -> datetime:
    """When points were earned that expire at `moment`."""
    return add_months(moment, -MONTHS)


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


@pytest.fixture
def place(session: Session) -> Place:
    made = make_place(session)
    session.commit()
    return made


@pytest.fixture
def member(session: Session) -> uuid.UUID:
    made = make_member(session)
    session.commit()
    return made


# -- expiry -------------------------------------------------------------------------

def test_expiry_takes_the_oldest_lots_left_after_spending(session, place, member):
    soon = NOW - timedelta(days=5)
    later = NOW + timedelta(days=10)
    earn(session, place, member, 10, earned_to_expire_at(soon))
    earn(session, place, member, 20, earned_to_expire_at(later))
    earn(session, place, member, 30, NOW - timedelta(days=1))
    session.commit()
    # Spent before the first lot's expiry: from the 10 that expire soonest.
    assert spend(session, place, member, 4, now=soon - timedelta(days=5))
    session.commit()
    assert [lot.points for lot in member_lots(session, member)] == [6, 20, 30]

    assert expire_member(session, member, NOW) == 6
    session.commit()
    assert available(session, member) == 50
    assert member_lots(session, member) == [
        Lot(20, later), Lot(30, add_months(NOW - timedelta(days=1), MONTHS))]
    assert scheme_balance(session, "scheme:expired") == 6
    # The next 30 days: the lot of 20 (the one expired is gone).
    assert expiring(member_lots(session, member), NOW, timedelta(days=30)) == [Lot(20, later)]

    # Running again at the same moment expires nothing more.
    assert expire_member(session, member, NOW) == 0
    session.commit()
    assert postings(session, "expiry") == 1

    # Spend 25: the 20 expiring first go, then 5 of the 30.
    assert spend(session, place, member, 25, now=NOW)
    session.commit()
    assert expire_member(session, member, later + timedelta(days=1)) == 0
    assert [lot.points for lot in member_lots(session, member)] == [25]
    assert verify(session) == []


def test_a_failed_claim_gives_back_points_that_then_expire(session, place, member):
    soon = NOW - timedelta(days=1)
    earn(session, place, member, 10, earned_to_expire_at(soon))
    earn(session, place, member, 10, NOW - timedelta(days=2))
    session.commit()
    reward = hold(session, place, member, 10, now=soon - timedelta(hours=1))
    assert reward is not None
    session.commit()
    assert expire_member(session, member, NOW) == 0  # the held points were the old ones
    vouchers.fail(session, reward.id, "printer on fire")
    session.commit()
    # The release undid the hold: the old lot is back and has expired.
    assert [lot.points for lot in member_lots(session, member)] == [10, 10]
    assert expire_member(session, member, NOW) == 10
    session.commit()
    assert available(session, member) == 10
    assert verify(session) == []


def test_old_awards_without_an_expiry_never_expire(session, place, member):
    action = earn(session, place, member, 10, NOW - timedelta(days=2000))
    session.execute(
        Posting.__table__.update().where(Posting.action_id == action.id).values(expires_at=None)
    )
    session.commit()
    assert expire_member(session, member, NOW + timedelta(days=5000)) == 0
    assert member_lots(session, member) == [Lot(10, None)]


def test_expire_all_settles_each_member_once(session, place, member):
    other = make_member(session)
    earn(session, place, member, 7, earned_to_expire_at(NOW - timedelta(hours=1)))
    earn(session, place, other, 9, earned_to_expire_at(NOW - timedelta(days=40)))
    earn(session, place, other, 5, NOW)
    session.commit()
    first = expire_all(session, NOW)
    assert (first.members, first.points) == (2, 16)
    again = expire_all(session, NOW)
    assert (again.members, again.points) == (0, 0)
    # Through the job as RQ calls it (now as a string).
    assert workers.ledger.expire_points(now=NOW.isoformat()) == {
        "members": 0, "points": 0, "failed": 0}
    assert (available(session, member), available(session, other)) == (0, 5)
    assert verify(session) == []


# -- pending ------------------------------------------------------------------------

def test_pending_points_move_to_available_when_the_hold_ends(session, place, member):
    action = earn(session, place, member, 12, NOW, hold_days=7)
    session.commit()
    assert (available(session, member), pending(session, member)) == (0, 12)
    assert release_all(session, NOW + timedelta(days=6, hours=23)).points == 0
    assert pending(session, member) == 12

    moved = release_all(session, NOW + timedelta(days=7))
    assert (moved.members, moved.points) == (1, 12)
    assert (available(session, member), pending(session, member)) == (12, 0)
    # The lot keeps the expiry of the award, counted from when it was earned.
    assert member_lots(session, member) == [Lot(12, add_months(NOW, MONTHS))]
    release = session.scalars(select(Posting).where(Posting.kind == "pending_release")).one()
    assert release.action_id == action.id
    assert release.available_at == NOW + timedelta(days=7)

    # Twice is once.
    assert release_all(session, NOW + timedelta(days=30)).points == 0
    assert workers.ledger.release_pending(now=(NOW + timedelta(days=31)).isoformat())[
        "points"] == 0
    assert postings(session, "pending_release") == 1
    assert member_balances(session, member).lifetime_earned == 12
    assert verify(session) == []


# -- reversal -----------------------------------------------------------------------

def test_reversing_pending_points_takes_them_from_pending(session, place, member):
    action = earn(session, place, member, 15, NOW, hold_days=14)
    session.commit()
    reversal = reverse_action(session, action, "Revoked by First Bus")
    session.commit()
    assert (reversal.points_reversed, reversal.points_written_off, reversal.already) == (
        15, 0, False)
    assert (available(session, member), pending(session, member)) == (0, 0)
    assert session.get(Action, action.id).status == "revoked"
    # A reversed award is never released.
    assert pending_credits(session, member_id=member) == []
    assert release_member(session, member, NOW + timedelta(days=20)) == 0
    assert member_balances(session, member).lifetime_earned == 0
    assert verify(session) == []


def test_reversing_spent_points_writes_off_what_is_gone(session, place, member):
    first = earn(session, place, member, 10, NOW)
    second = earn(session, place, member, 10, NOW)
    session.commit()
    assert spend(session, place, member, 14, now=NOW)
    session.commit()
    assert available(session, member) == 6

    reversal = reverse_action(session, first, "Revoked by First Bus")
    session.commit()
    assert (reversal.points_reversed, reversal.points_written_off) == (6, 4)
    assert available(session, member) == 0
    assert scheme_balance(session, "scheme:written_off") == -4

    # Nothing left to take: all of the second is written off, never below zero.
    reversal = reverse_action(session, second, "Revoked by First Bus")
    session.commit()
    assert (reversal.points_reversed, reversal.points_written_off) == (0, 10)
    assert available(session, member) == 0

    # Again: the same answer, marked as already done, and nothing posted.
    before = postings(session, "reversal")
    again = reverse_action(session, first, "Revoked by First Bus")
    session.commit()
    assert (again.points_reversed, again.points_written_off, again.already) == (6, 4, True)
    assert postings(session, "reversal") == before
    assert member_balances(session, member).lifetime_earned == 0
    assert verify(session) == []


def test_reversing_released_points_takes_them_from_available(session, place, member):
    action = earn(session, place, member, 9, NOW, hold_days=1)
    earn(session, place, member, 4, NOW)
    session.commit()
    assert release_member(session, member, NOW + timedelta(days=1)) == 9
    session.commit()
    reversal = reverse_action(session, action, "Rejected on review")
    session.commit()
    assert (reversal.points_reversed, reversal.points_written_off) == (9, 0)
    assert (available(session, member), pending(session, member)) == (4, 0)
    assert verify(session) == []


def test_an_action_that_earned_nothing_is_revoked_without_a_posting(session, place, member):
    action = earn(session, place, member, 5, NOW)
    session.commit()
    nothing = Action(id=uuid.uuid4(), source_id=place.source_id, external_ref="zero",
                     member_id=member, action_type_id=action.action_type_id,
                     type_code="bus_journey", occurred_at=NOW, attributes={})
    session.add(nothing)
    session.commit()
    first = reverse_action(session, nothing, "Revoked")
    assert (first.points_reversed, first.points_written_off, first.already) == (0, 0, False)
    session.commit()
    assert reverse_action(session, nothing, "Revoked").already
    assert postings(session, "reversal") == 0
    assert available(session, member) == 5


def test_a_claim_cannot_spend_points_past_their_expiry(session, place, member):
    earn(session, place, member, 10, earned_to_expire_at(NOW - timedelta(minutes=1)))
    earn(session, place, member, 5, NOW)
    session.commit()
    assert not spend(session, place, member, 10, now=NOW)  # only 5 are still good
    assert available(session, member) == 15  # the refusal changed nothing
    assert spend(session, place, member, 5, now=NOW)
    session.commit()
    # The claim expired the old lot on its way.
    assert (available(session, member), scheme_balance(session, "scheme:expired")) == (0, 10)
    assert verify(session) == []


# -- adjustments --------------------------------------------------------------------

def test_adjustments(session, place, member):
    given = adjust(session, member, 30, "Goodwill: lost card", now=NOW)
    session.commit()
    assert given.expires_at == add_months(NOW, MONTHS)
    assert member_lots(session, member) == [Lot(30, add_months(NOW, MONTHS))]
    adjust(session, member, -10, "Duplicate goodwill")
    session.commit()
    assert available(session, member) == 20
    with pytest.raises(NotEnoughPoints) as refused:
        adjust(session, member, -21, "Too much")
    session.rollback()
    assert (refused.value.available, refused.value.wanted) == (20, 21)
    for points, reason in ((0, "nothing"), (5, "   "), (10**7, "a lot")):
        with pytest.raises(LedgerError):
            adjust(session, member, points, reason)
        session.rollback()
    assert available(session, member) == 20
    assert scheme_balance(session, "scheme:adjustments") == -20
    assert verify(session) == []


def test_the_expiry_setting(app, session, place, member):
    app.config["POINTS_EXPIRY_MONTHS"] = 0
    try:
        earn(session, place, member, 5, NOW)
        app.config["POINTS_EXPIRY_MONTHS"] = 1
        earn(session, place, member, 6, NOW)
    finally:
        app.config["POINTS_EXPIRY_MONTHS"] = MONTHS
    session.commit()
    assert member_lots(session, member) == [Lot(6, add_months(NOW, 1)), Lot(5, None)]


# -- verify -------------------------------------------------------------------------

def test_verify_finds_what_is_wrong(session, place, member):
    earn(session, place, member, 10, NOW)
    session.commit()
    assert verify(session) == []

    # A debit the FIFO rule cannot cover: the balance goes below zero.
    from rewards.ledger import member_account

    account = member_account(session, member)
    post(session, "hold", "bad", [(account, -15),
                                  (scheme_account(session, "scheme:rewards_held"), 15)])
    session.commit()
    problems = verify(session)
    assert any("below zero (-5)" in p for p in problems), problems
    assert any("lots add up to 0, the balance is -5" in p for p in problems), problems

    # A posting that does not balance (written around post()).
    from rewards.models import PostingLine

    bad = Posting(kind="earn", reason="broken")
    session.add(bad)
    session.flush()
    session.add(PostingLine(posting_id=bad.id, account_id=account.id, points=3))
    session.commit()
    problems = verify(session)
    assert any(f"posting {bad.id} sums to 3" in p for p in problems), problems
    assert any("all accounts together sum to 3" in p for p in problems), problems
