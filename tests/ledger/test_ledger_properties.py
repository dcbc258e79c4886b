"""Random sequences of earn, spend (hold and capture), failed claims, pending releases,
expiry, reversal and adjustment, run through the ledger's own functions against the
real test database, checked after every step against the invariants and a model."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from rewards import vouchers
from rewards.extensions import db
from rewards.ledger import (
    NotEnoughPoints,
    adjust,
    expire_member,
    member_lots,
    release_member,
    reverse_action,
    verify,
)
from rewards.ledger.lots import Lot, add_months, expired_points, fifo_lots
from rewards.models import Account, Action, Posting, PostingLine

from .support import available, earn, hold, make_member, make_place, pending, spend

START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
MONTHS = 24

steps = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.integers(1, 30), st.sampled_from([0, 0, 3])),
        st.tuples(st.just("spend"), st.integers(1, 40)),
        st.tuples(st.just("fail"), st.integers(1, 40)),
        st.tuples(st.just("wait"), st.sampled_from([1, 2, 5, 200, 400, 800])),
        st.tuples(st.just("release")),
        st.tuples(st.just("expire")),
        st.tuples(st.just("reverse"), st.integers(0, 20)),
        st.tuples(st.just("adjust"), st.integers(-30, 30).filter(bool)),
    ),
    min_size=1,
    max_size=14,
)


@dataclass
class Earned:
    action_id: uuid.UUID
    points: int
    expires_at: datetime
    due: datetime | None  # pending until then; None once spendable
    reversed: bool = False


@dataclass
class Model:
    """What the member should have, kept independently of the database."""

    clock: datetime = START
    credits: list[Lot] = field(default_factory=list)
    taken: int = 0
    pending: int = 0
    expired: int = 0
    written_off: int = 0
    actions: list[Earned] = field(default_factory=list)

    @property
    def available(self) -> int:
        return sum(lot.points for lot in self.credits) - self.taken

    def due(self) -> int:
        """Points left in lots past their expiry."""
        return expired_points(fifo_lots(self.credits, self.taken), self.clock)

    def expire_due(self) -> None:
        due = self.due()
        self.taken += due
        self.expired += due

    def lots(self) -> Counter[datetime | None]:
        return by_expiry(fifo_lots(self.credits, self.taken))


def by_expiry(lots: list[Lot]) -> Counter[datetime | None]:
    totals: Counter[datetime | None] = Counter()
    for lot in lots:
        totals[lot.expires_at] += lot.points
    return totals


def scheme_side(member_id: uuid.UUID, code: str) -> int:
    return int(db.session.scalar(
        select(func.coalesce(func.sum(PostingLine.points), 0))
        .join(Posting, Posting.id == PostingLine.posting_id)
        .join(Account, Account.id == PostingLine.account_id)
        .where(Posting.member_id == member_id, Account.code == code)
    ) or 0)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=steps)
def test_random_ledger_histories_keep_every_invariant(app: Flask, sequence):
    with app.app_context():
        session = db.session
        place = make_place(session)
        member = make_member(session)
        session.commit()
        model = Model()
        for step in sequence:
            run_step(session, place, member, model, step)
            session.commit()
            check(session, member, model, step)
        session.remove()


def run_step(session, place, member, model: Model, step) -> None:  # noqa: C901 - a dispatcher
    name = step[0]
    if name == "earn":
        points, hold_days = step[1], step[2]
        action = earn(session, place, member, points, model.clock, hold_days)
        expires_at = add_months(model.clock, MONTHS)
        due = model.clock + timedelta(days=hold_days) if hold_days else None
        model.actions.append(Earned(action.id, points, expires_at, due))
        if due is None:
            model.credits.append(Lot(points, expires_at))
        else:
            model.pending += points
    elif name in ("spend", "fail"):
        # A claim first expires what is past its expiry, then needs the points.
        affordable = step[1] <= model.available - model.due()
        if name == "spend":
            assert spend(session, place, member, step[1], now=model.clock) == affordable
        else:
            reward = hold(session, place, member, step[1], now=model.clock)
            assert (reward is not None) == affordable
            if reward is not None:
                session.commit()
                vouchers.fail(session, reward.id, "printer on fire")
        if affordable:
            model.expire_due()
            if name == "spend":
                model.taken += step[1]
    elif name == "wait":
        model.clock += timedelta(days=step[1])
    elif name == "release":
        moved = release_member(session, member, model.clock)
        expected = 0
        for earned in model.actions:
            if earned.due is not None and earned.due <= model.clock and not earned.reversed:
                expected += earned.points
                model.pending -= earned.points
                model.credits.append(Lot(earned.points, earned.expires_at))
                earned.due = None
        assert moved == expected
    elif name == "expire":
        assert expire_member(session, member, model.clock) == model.due()
        model.expire_due()
    elif name == "reverse":
        if not model.actions:
            return
        earned = model.actions[step[1] % len(model.actions)]
        action = session.get(Action, earned.action_id)
        reversal = reverse_action(session, action, "Revoked by First Bus", now=model.clock)
        assert reversal.already == earned.reversed
        if earned.reversed:
            return
        earned.reversed = True
        model.expire_due()
        if earned.due is not None:
            assert (reversal.points_reversed, reversal.points_written_off) == (earned.points, 0)
            model.pending -= earned.points
        else:
            take = min(earned.points, model.available)
            assert (reversal.points_reversed, reversal.points_written_off) == (
                take, earned.points - take)
            model.taken += take
            model.written_off += earned.points - take
    elif name == "adjust":
        points = step[1]
        if points > 0:
            adjust(session, member, points, "Goodwill", now=model.clock)
            model.credits.append(Lot(points, add_months(model.clock, MONTHS)))
        elif -points > model.available - model.due():
            try:
                adjust(session, member, points, "Correction", now=model.clock)
            except NotEnoughPoints:
                session.rollback()
            else:
                raise AssertionError("an adjustment took the balance below zero")
        else:
            adjust(session, member, points, "Correction", now=model.clock)
            model.expire_due()
            model.taken -= points


def check(session, member, model: Model, step) -> None:
    problems = verify(session)  # postings sum to zero, nothing negative, lots == balance
    assert problems == [], (step, problems)
    assert available(session, member) == model.available >= 0, step
    assert pending(session, member) == model.pending >= 0, step
    assert by_expiry(member_lots(session, member)) == model.lots(), step
    assert scheme_side(member, "scheme:expired") == model.expired, step
    assert -scheme_side(member, "scheme:written_off") == model.written_off, step
