"""The forecast figure's points due to expire, read from the expiry-day rollup: known
earn postings expiring inside and outside each window give exactly their sums, after
the first build, after an incremental refresh, a rebuild and a catch-up of a scheme
whose rollups were built before the expiry days existed."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import pytest
from flask import Flask
from sqlalchemy import delete, select

from rewards.dashboard import Filters, Raw, compute
from rewards.dashboard.filters import scheme_zone, today
from rewards.dashboard.ledgerdays import EXPIRY_STATE
from rewards.dashboard.refresh import rebuild, refresh
from rewards.extensions import db
from rewards.ledger import member_account, post, scheme_account
from rewards.ledger.reversal import reverse_action
from rewards.models import Action, Reward
from rewards.models.dashboard import DashboardRefresh, ExpiryDay

from .scheme import World, add_member, make_world, now_utc

# Far from UTC, so a day in the scheme's zone is not the UTC day: an expiry just after
# the zone's midnight is the previous day in UTC.
ZONE = "Pacific/Auckland"


@pytest.fixture
def far_zone(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(app.config, "SCHEME_TIMEZONE", ZONE)
    yield


def _at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), scheme_zone())


def _earn(session, world: World, member_id: uuid.UUID, points: int,
          expires_at: datetime | None, kind: str = "earn") -> Action:
    """An accepted action and its posting from issuance (an adjustment: from the
    adjustments account), expiring at `expires_at`."""
    action = Action(id=uuid.uuid4(), source_id=world.source_id,
                    external_ref=f"forecast-{uuid.uuid4()}", member_id=member_id,
                    action_type_id=world.types["bus_journey"], type_code="bus_journey",
                    occurred_at=now_utc() - timedelta(hours=1), attributes={},
                    points=points, status="accepted")
    session.add(action)
    session.flush()
    source = "scheme:issuance" if kind == "earn" else "scheme:adjustments"
    post(session, kind, "Bus journey v1",
         [(scheme_account(session, source), -points),
          (member_account(session, member_id), points)],
         key=f"award:{action.id}", member_id=member_id,
         action_id=action.id if kind == "earn" else None,
         available_at=now_utc() - timedelta(hours=1), expires_at=expires_at)
    return action


def _figure(source=None) -> list[dict]:
    table = compute("forecast", Filters.from_args({}), source=source, threshold=1)
    assert [row["window"] for row in table.rows] == [
        "next 30 days", "next 60 days", "next 90 days"]
    return table.rows


def _points(source=None) -> list[int]:
    return [row["points_expiring_at_most"] for row in _figure(source)]


def _known(session, world: World, member_id: uuid.UUID) -> list[int]:
    """Earn postings expiring on either side of each window's edges (scheme zone);
    returns what each window must sum to."""
    first = today()
    expiring = [  # (points, expires_at, windows it falls in: 30, 60, 90)
        (2, _at(first, 0, 5), (1, 1, 1)),  # early today: the day counts whole
        (3, _at(first + timedelta(days=10)), (1, 1, 1)),
        (5, _at(first + timedelta(days=29), 23, 55), (1, 1, 1)),
        (7, _at(first + timedelta(days=30), 0, 30), (0, 1, 1)),  # the UTC day before
        (11, _at(first + timedelta(days=59)), (0, 1, 1)),
        (13, _at(first + timedelta(days=60)), (0, 0, 1)),
        (17, _at(first + timedelta(days=89), 23, 0), (0, 0, 1)),
        (19, _at(first + timedelta(days=90), 0, 10), (0, 0, 0)),
        (23, _at(first - timedelta(days=1), 23, 50), (0, 0, 0)),  # yesterday
        (29, None, (0, 0, 0)),  # never expires
    ]
    for points, expires_at, _ in expiring:
        _earn(session, world, member_id, points, expires_at)
    # Not earned: a staff adjustment's lot expires too, but the figure counts earnings.
    _earn(session, world, member_id, 31, _at(first + timedelta(days=5)), kind="adjustment")
    return [sum(points for points, _, inside in expiring if inside[n]) for n in range(3)]


def test_points_due_to_expire_by_window(app: Flask, far_zone: None) -> None:
    with app.app_context():
        session = db.session
        world = make_world(session)
        member_id = add_member(session, world, random.Random(3), now_utc())
        expected = _known(session, world, member_id)
        assert expected == [10, 28, 58]
        # Revoked after it was earned: the points taken back are not subtracted.
        revoked = _earn(session, world, member_id, 37, _at(today() + timedelta(days=40)))
        session.commit()
        reverse_action(session, revoked, "Duplicate tap found by the operator", now_utc())
        session.commit()
        expected = [expected[0], expected[1] + 37, expected[2] + 37]

        # Issued vouchers from now on: two members' in the first window, one later, one
        # past the last; a redeemed one and one already past its expiry do not count.
        others = [add_member(session, world, random.Random(n), now_utc()) for n in (5, 6)]
        for owner, status, days in ((member_id, "issued", 10), (others[0], "issued", 10),
                                    (others[1], "issued", 29), (member_id, "issued", 45),
                                    (member_id, "issued", 95), (others[0], "redeemed", 10),
                                    (others[1], "issued", -1)):
            session.add(Reward(member_id=owner, offer_id=world.offers[0], status=status,
                               cost_points=20, expires_at=now_utc() + timedelta(days=days)))
        session.commit()

        refresh(session)  # the first build
        assert _points() == expected
        assert _points(Raw()) == expected
        assert [row["vouchers_expiring"] for row in _figure()] == [3, 4, 4]

        # A new earn posting appears; an incremental refresh adds exactly its points to
        # the windows its expiry falls in.
        _earn(session, world, member_id, 41, _at(today() + timedelta(days=45)))
        session.commit()
        assert _points() == expected  # not yet refreshed: the figure reads the rollup
        refresh(session, margin=timedelta(0))
        expected = [expected[0], expected[1] + 41, expected[2] + 41]
        assert _points() == expected
        assert _points(Raw()) == expected
        # Refreshing again, or rebuilding the days, changes nothing.
        rows = sorted(session.execute(select(ExpiryDay.day, ExpiryDay.expires,
                                             ExpiryDay.points)).all())
        refresh(session, margin=timedelta(days=2))
        rebuild(session, today() - timedelta(days=3), today())
        session.commit()
        assert sorted(session.execute(select(ExpiryDay.day, ExpiryDay.expires,
                                             ExpiryDay.points)).all()) == rows
        assert _points() == expected


def test_rollups_built_before_the_expiry_days_are_caught_up(app: Flask) -> None:
    """A scheme refreshed before the table existed has no rows and no state: the next
    refresh fills every posting day once, and marks it done."""
    with app.app_context():
        session = db.session
        world = make_world(session)
        member_id = add_member(session, world, random.Random(4), now_utc())
        expected = _known(session, world, member_id)
        session.commit()
        refresh(session)
        assert session.get(DashboardRefresh, EXPIRY_STATE) is not None
        assert _points() == expected
        # As the table was after the migration on such a scheme.
        session.execute(delete(ExpiryDay))
        session.execute(delete(DashboardRefresh).where(DashboardRefresh.name == EXPIRY_STATE))
        session.commit()
        assert _points() == [0, 0, 0]
        refresh(session, margin=timedelta(0))
        assert _points() == expected
        assert session.get(DashboardRefresh, EXPIRY_STATE) is not None
        # Once caught up, a refresh redoes only the days with new postings: rows of an
        # older day left alone stay as they are.
        session.add(ExpiryDay(day=today() - timedelta(days=400),
                              expires=today() + timedelta(days=1), points=1000))
        session.commit()
        refresh(session, margin=timedelta(0))
        assert _points() == [n + 1000 for n in expected]
