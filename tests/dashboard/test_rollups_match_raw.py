"""The rollups, refreshed incrementally between rounds of a seeded random mix of
actions, revocations, claims, redemptions, expiries and donations, give exactly the
figures computed from the raw tables; and a rebuild gives the same again."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import delete, func, select

from rewards.dashboard import FIGURES, Filters, Raw, compute
from rewards.dashboard.filters import today
from rewards.dashboard.refresh import rebuild, refresh
from rewards.dashboard.settings import put
from rewards.extensions import db
from rewards.models import Action, Award, Posting, PostingLine, Redemption, Reward
from rewards.models.dashboard import (
    MemberDay,
    MemberHourMonth,
    MemberMonth,
    MemberTenure,
    SpanCell,
    SumCell,
    TenureCell,
)
from rewards.models.donation import Donation

from .scheme import WARDS, make_world, now_utc, random_round


def _filters() -> list[Filters]:
    end = today()
    return [
        Filters.from_args({}),
        Filters(end - timedelta(days=150), end),
        Filters(end - timedelta(days=60), end - timedelta(days=20), ward=WARDS[0]),
        Filters(end - timedelta(days=120), end, category="travel"),
        Filters(end - timedelta(days=120), end, action_type="leisure_visit", ward=WARDS[2]),
    ]


def _campaigns(session) -> None:
    """Rules with windows: one type (its own week cells), every type (the `*` cells) and
    two types of different categories (no cell counts those: member-day rows)."""
    from rewards.models import Rule, RuleVersion

    now = now_utc()
    for name, types in (("Bus weeks", ["bus_journey"]),
                        ("Everything weeks", ["bus_journey", "leisure_visit",
                                              "volunteering_hour"]),
                        ("Mixed weeks", ["bus_journey", "leisure_visit"])):
        rule = Rule(name=name, current_version=1)
        session.add(rule)
        session.flush()
        session.add(RuleVersion(
            rule_id=rule.id, version=1, name=name, action_types=types, condition="true",
            points="1", caps={}, points_caps={}, starts_at=now - timedelta(days=60),
            ends_at=now - timedelta(days=25), priority=0, stackable=True, hold_days=0,
            status="active"))
    session.flush()


def _assert_same(threshold: int) -> None:
    for filters in _filters():
        for name in FIGURES:
            rolled = compute(name, filters, threshold=threshold).to_json()
            raw = compute(name, filters, source=Raw(), threshold=threshold).to_json()
            assert rolled == raw, (name, filters)


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_equal_raw_after_a_random_mix(app: Flask, seed: int) -> None:
    rng = random.Random(seed)
    with app.app_context():
        session = db.session
        world = make_world(session)
        for ward, decile in zip(WARDS, (4, 7, 1, 9), strict=True):
            put(session, f"ward:{ward}", {"adult_population": 900, "imd_decile": decile}, None)
        put(session, "impact:bus_journey", {"co2_kg": 0.5, "co2_kg_per_km": 0.1}, None)
        _campaigns(session)
        session.commit()
        refresh(session)
        for _ in range(4):
            random_round(session, world, rng, now_utc())
            refresh(session, margin=timedelta(0))
            _assert_same(threshold=2)
        # The mix really happened: every kind of change is there.
        assert session.scalar(select(func.count()).where(Action.status == "revoked")) > 0
        assert session.scalar(select(func.count()).select_from(Redemption)) > 0
        assert session.scalar(select(func.count()).where(Reward.status == "expired")) > 0
        assert session.scalar(select(func.count()).select_from(Donation)) > 0
        _assert_same(threshold=10)
        # Numbers are there, not only suppressed cells; every campaign has weeks.
        weeks = compute("campaign", Filters(today() - timedelta(days=150), today()),
                        threshold=2).rows
        assert {row["campaign"] for row in weeks if row["members"]} == {
            "Bus weeks", "Everything weeks", "Mixed weeks"}
        actions = compute("actions", Filters(today() - timedelta(days=150), today()),
                          threshold=2)
        assert sum(row["actions"] or 0 for row in actions.rows) > 100
        baseline = compute("baseline", Filters(today() - timedelta(days=150), today()),
                           threshold=2)
        assert any(row["weeks_1_4"] for row in baseline.rows)
        # The tenure cells hold every counted action of a member after joining.
        assert session.scalar(select(func.sum(TenureCell.actions))) > 100
        assert session.scalar(select(func.sum(TenureCell.members))) == session.scalar(
            select(func.count()).select_from(MemberTenure))
        # A rebuild of the whole range gives the same rows as the incremental refreshes
        # (which change month rows by the difference each day made).
        tables = (MemberDay.__table__, MemberMonth.__table__, MemberHourMonth.__table__,
                  MemberTenure.__table__, TenureCell.__table__, SpanCell.__table__,
                  SumCell.__table__)
        before = [_rows(session, table) for table in tables]
        rebuild(session, today() - timedelta(days=130), today())
        session.commit()
        assert [_rows(session, table) for table in tables] == before
        # The span cells are there for every kind, and count someone.
        dims = set(session.scalars(select(SpanCell.dim).where(SpanCell.members > 0)))
        assert dims == {"ward", "age", "hour", "day", "cohort", "week"}


def _rows(session, table) -> list[tuple]:
    return sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in row)
                  for row in session.execute(select(table)).all())


def test_a_revocation_of_an_old_action_reaches_the_rollups(app: Flask) -> None:
    """A change to an action made before the last refresh is found by its posting."""
    from rewards.ledger.reversal import reverse_action

    rng = random.Random(7)
    with app.app_context():
        session = db.session
        world = make_world(session)
        random_round(session, world, rng, now_utc(), actions=60)
        refresh(session)
        filters = Filters(today() - timedelta(days=150), today())
        before = compute("actions", filters, threshold=1).rows
        action = session.scalar(select(Action).where(Action.status == "accepted",
                                                     Action.points > 0).limit(1))
        reverse_action(session, action, "Fraud confirmed", now_utc())
        session.commit()
        refresh(session, margin=timedelta(0))
        after = compute("actions", filters, threshold=1).rows
        row_before = next(r for r in before if r["type_code"] == action.type_code)
        row_after = next(r for r in after if r["type_code"] == action.type_code)
        assert row_after["actions"] == row_before["actions"] - 1
        assert row_after["points"] == row_before["points"] - action.points
        assert compute("actions", filters, threshold=1).to_json() == compute(
            "actions", filters, source=Raw(), threshold=1).to_json()


def test_a_revocation_of_an_action_that_earned_nothing_reaches_the_rollups(
    app: Flask
) -> None:
    """An action that earned nothing has no posting and no award to be found by, so
    its revocation is found by the action's own `revoked_at`."""
    from rewards.ledger.reversal import reverse_action

    rng = random.Random(7)
    with app.app_context():
        session = db.session
        world = make_world(session)
        random_round(session, world, rng, now_utc(), actions=60)
        action = session.scalar(select(Action).where(Action.status == "accepted").limit(1))
        # As if no rule had matched it: no award, no posting (each posting's lines
        # balance, so the ledger stays whole without them).
        postings = select(Posting.id).where(Posting.action_id == action.id)
        session.execute(delete(Award).where(Award.action_id == action.id))
        session.execute(delete(PostingLine).where(PostingLine.posting_id.in_(postings)))
        session.execute(delete(Posting).where(Posting.action_id == action.id))
        action.points = 0
        session.commit()
        refresh(session)
        filters = Filters(today() - timedelta(days=150), today())
        before = compute("actions", filters, threshold=1).rows
        reverse_action(session, action, "Duplicate tap", now_utc())
        session.commit()
        assert action.revoked_at is not None
        refresh(session, margin=timedelta(0))
        after = compute("actions", filters, threshold=1).rows
        row_before = next(r for r in before if r["type_code"] == action.type_code)
        row_after = next(r for r in after if r["type_code"] == action.type_code)
        assert row_after["actions"] == row_before["actions"] - 1
        assert compute("actions", filters, threshold=1).to_json() == compute(
            "actions", filters, source=Raw(), threshold=1).to_json()
