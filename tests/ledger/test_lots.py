"""The pure part of the ledger: which lots are left, what expires, the terms of a new
award. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.ledger.lots import (
    Lot,
    Movement,
    add_months,
    credits_and_taken,
    expired_points,
    expiring,
    fifo_lots,
    left_from_newest,
    lot_terms,
    lots_of,
)
from rewards.ledger.reversal import plan_reversal

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


# -- FIFO ---------------------------------------------------------------------------

def test_the_soonest_expiring_lot_is_consumed_first():
    credits = [Lot(10, at(30)), Lot(20, at(10)), Lot(5, at(20))]
    assert fifo_lots(credits, 0) == [Lot(20, at(10)), Lot(5, at(20)), Lot(10, at(30))]
    assert fifo_lots(credits, 15) == [Lot(5, at(10)), Lot(5, at(20)), Lot(10, at(30))]
    assert fifo_lots(credits, 20) == [Lot(5, at(20)), Lot(10, at(30))]
    assert fifo_lots(credits, 27) == [Lot(8, at(30))]
    assert fifo_lots(credits, 35) == []


def test_lots_that_never_expire_are_consumed_last():
    credits = [Lot(10, None), Lot(10, at(5)), Lot(10, None), Lot(10, at(1))]
    assert fifo_lots(credits, 25) == [Lot(5, None), Lot(10, None)]


def test_ties_go_in_the_order_the_credits_were_made():
    credits = [Lot(3, at(1)), Lot(4, at(1))]
    assert fifo_lots(credits, 2) == [Lot(1, at(1)), Lot(4, at(1))]


def test_taking_more_than_there_is_leaves_nothing_and_negative_takes_nothing():
    credits = [Lot(10, at(1))]
    assert fifo_lots(credits, 11) == []
    assert fifo_lots(credits, -5) == [Lot(10, at(1))]
    assert fifo_lots([], 0) == []


def test_a_failed_rewards_release_undoes_its_hold_rather_than_adding_a_lot():
    movements = [
        Movement(10, "earn", at(100)),
        Movement(10, "earn", at(200)),
        Movement(-10, "hold"),  # a claim takes the older lot
        Movement(10, "release"),  # the reward failed: the claim is undone
    ]
    credits, taken = credits_and_taken(movements)
    assert credits == [Lot(10, at(100)), Lot(10, at(200))]
    assert taken == 0
    assert lots_of(movements) == [Lot(10, at(100)), Lot(10, at(200))]
    # Had the release been a new lot, it would never expire and 10 of the older
    # points would be spent: the lots would misstate what expires.
    assert lots_of(movements[:3]) == [Lot(10, at(200))]


def test_every_kind_of_credit_and_debit():
    movements = [
        Movement(10, "earn", None),  # before expiry existed: never expires
        Movement(7, "pending_release", at(50)),
        Movement(5, "adjustment", at(60)),
        Movement(-3, "adjustment"),
        Movement(-4, "hold"),
        Movement(-2, "expiry"),
        Movement(-1, "reversal"),
    ]
    credits, taken = credits_and_taken(movements)
    assert sum(lot.points for lot in credits) == 22
    assert taken == 10
    assert lots_of(movements) == [Lot(2, at(60)), Lot(10, None)]


def test_expired_and_expiring():
    lots = [Lot(4, at(1)), Lot(6, at(10)), Lot(2, at(10)), Lot(9, at(40)), Lot(1, None)]
    assert expired_points(lots, at(0)) == 0
    assert expired_points(lots, at(1)) == 4
    assert expired_points(lots, at(39)) == 12
    soon = expiring(lots, at(0), timedelta(days=30))
    assert soon == [Lot(4, at(1)), Lot(8, at(10))]
    assert expiring(lots, at(11), timedelta(days=30)) == [Lot(4, at(1)), Lot(8, at(10)),
                                                          Lot(9, at(40))]


# -- terms of an award ----------------------------------------------------------------

def test_add_months_keeps_the_day_or_takes_the_months_last():
    assert add_months(datetime(2026, 1, 31, 12, tzinfo=UTC), 1) == datetime(2026, 2, 28, 12,
                                                                            tzinfo=UTC)
    assert add_months(datetime(2027, 12, 31, tzinfo=UTC), 2) == datetime(2028, 2, 29, tzinfo=UTC)
    assert add_months(datetime(2026, 11, 21, 8, 15, tzinfo=UTC), 24) == datetime(
        2028, 11, 21, 8, 15, tzinfo=UTC)
    assert add_months(datetime(2026, 5, 10, tzinfo=UTC), 0) == datetime(2026, 5, 10, tzinfo=UTC)


def test_lot_terms():
    assert lot_terms(T0) == (T0, datetime(2028, 1, 15, 9, 30, tzinfo=UTC))
    assert lot_terms(T0, hold_days=14, expiry_months=12) == (
        T0 + timedelta(days=14), datetime(2027, 1, 15, 9, 30, tzinfo=UTC))
    assert lot_terms(T0, expiry_months=0) == (T0, None)
    with pytest.raises(ValueError):
        lot_terms(T0, hold_days=-1)


# -- reversal plan ------------------------------------------------------------------

@pytest.mark.parametrize(("pending", "award", "available", "plan"), [
    (10, 0, 0, (10, 0, 0)),  # still pending: taken from pending
    (0, 10, 50, (0, 10, 0)),  # spendable and unspent
    (0, 10, 4, (0, 4, 6)),  # spent in part: the rest is written off
    (0, 10, 0, (0, 0, 10)),
    (5, 10, -3, (5, 0, 10)),  # a balance below zero is never taken further down
])
def test_plan_reversal(pending, award, available, plan):
    decided = plan_reversal(pending, award, available)
    assert (decided.from_pending, decided.from_available, decided.written_off) == plan


# -- properties -----------------------------------------------------------------------

expiries = st.one_of(st.none(), st.integers(0, 60).map(at))
lots_strategy = st.lists(st.builds(Lot, st.integers(1, 50), expiries), max_size=12)


def order(lot: Lot) -> tuple[bool, datetime]:
    return (lot.expires_at is None, lot.expires_at or T0)


@settings(max_examples=300, deadline=None)
@given(credits=lots_strategy, taken=st.integers(-20, 700))
def test_fifo_properties(credits, taken):
    left = fifo_lots(credits, taken)
    total = sum(lot.points for lot in credits)
    # What is left is what there was less what was taken, never below nothing.
    assert sum(lot.points for lot in left) == max(0, total - max(taken, 0))
    assert all(lot.points > 0 for lot in left)
    # In expiry order, never-expiring last.
    assert [order(lot) for lot in left] == sorted(order(lot) for lot in left)
    # Oldest first: every credit expiring sooner than the first lot left is used up,
    # every one expiring later is untouched.
    if left:
        first = order(left[0])
        sooner = sum(lot.points for lot in credits if order(lot) < first)
        later = sum(lot.points for lot in credits if order(lot) > first)
        assert max(taken, 0) >= sooner
        assert sum(lot.points for lot in left if order(lot) > first) == later
    # Each remaining lot is no larger than the credits with that expiry.
    for when in {lot.expires_at for lot in left}:
        assert (sum(lot.points for lot in left if lot.expires_at == when)
                <= sum(lot.points for lot in credits if lot.expires_at == when))


@settings(max_examples=300, deadline=None)
@given(credits=lots_strategy, taken=st.integers(-20, 700))
def test_lots_read_from_the_newest_end_are_the_fifo_lots(credits, taken):
    """Reading the credits backwards (never-expiring first, then latest expiry, ties
    latest made first) until they add up to the balance leaves what FIFO leaves."""
    balance = sum(lot.points for lot in credits) - taken
    newest_first = [(lot.points, lot.expires_at) for lot in reversed(
        sorted(credits, key=order))]  # sorted() is stable: reversed, ties latest first
    left, reached = left_from_newest(newest_first, balance)
    assert left == fifo_lots(credits, taken)
    assert reached == (balance <= 0 or taken >= 0)
    # Fewer credits read than it needs: the balance is not reached.
    if reached and left and balance > 0:
        assert not left_from_newest(newest_first[:len(left) - 1], balance)[1]


@settings(max_examples=300, deadline=None)
@given(credits=lots_strategy, taken=st.integers(0, 700), now=st.integers(0, 60).map(at))
def test_expiring_what_expired_takes_exactly_those_lots(credits, taken, now):
    before = fifo_lots(credits, taken)
    gone = expired_points(before, now)
    after = fifo_lots(credits, taken + gone)
    assert after == [lot for lot in before if lot.expires_at is None or lot.expires_at > now]
    assert expired_points(after, now) == 0  # a second expiry finds nothing


movements_strategy = st.lists(
    st.one_of(
        st.builds(Movement, st.integers(1, 40), st.sampled_from(["earn", "pending_release",
                                                                 "adjustment"]), expiries),
        st.builds(Movement, st.integers(-40, -1),
                  st.sampled_from(["hold", "expiry", "reversal", "adjustment"])),
        st.builds(Movement, st.integers(1, 40), st.just("release")),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(movements=movements_strategy)
def test_lots_add_up_to_the_balance_unless_it_is_negative(movements):
    balance = sum(m.points for m in movements)
    in_lots = sum(lot.points for lot in lots_of(movements))
    if credits_and_taken(movements)[1] >= 0:  # releases never exceed what was taken
        assert in_lots == max(balance, 0)
