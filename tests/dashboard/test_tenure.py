"""The tenure cells behind the baseline figure: a member's actions land in the window
of their membership they happened in, and leave it when they stop counting."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import Flask
from sqlalchemy import select

from rewards.dashboard.filters import month_start, scheme_zone, today
from rewards.dashboard.refresh import rebuild, refresh
from rewards.dashboard.tenure import window_of
from rewards.extensions import db
from rewards.ledger import ensure_member_accounts
from rewards.models import Action, Member
from rewards.models.dashboard import MemberTenure, TenureCell

from .scheme import make_world, now_utc


def test_windows_of_membership() -> None:
    assert window_of(-1) is None
    assert [window_of(d) for d in (0, 27, 28, 90, 91, 181, 182, 900)] == [
        "weeks_1_4", "weeks_1_4", "months_2_3", "months_2_3", "months_4_6", "months_4_6",
        "later", "later"]


def _cells(session) -> dict[tuple, tuple[int, int]]:
    return {(c.cohort, c.ward, c.type_code, c.category, c.window): (c.members, c.actions)
            for c in session.scalars(select(TenureCell))}


def test_cells_follow_a_members_actions(app: Flask) -> None:
    with app.app_context():
        session = db.session
        world = make_world(session)
        joined = now_utc().replace(hour=12, minute=0) - timedelta(days=40)
        members = []
        for _ in range(2):
            member = Member(id=uuid.uuid4(), email=f"t{uuid.uuid4().hex[:8]}@example.org",
                            ward="Armley", joined_at=joined)
            session.add(member)
            ensure_member_accounts(session, member.id)
            members.append(member.id)
        session.flush()
        actions = []
        for member_id, days in ((members[0], (-3, 1, 2, 35)), (members[1], (5,))):
            for day in days:
                action = Action(id=uuid.uuid4(), source_id=world.source_id,
                                external_ref=f"t-{uuid.uuid4().hex}", member_id=member_id,
                                action_type_id=world.types["bus_journey"],
                                type_code="bus_journey", occurred_at=joined + timedelta(days=day),
                                attributes={}, points=0, status="accepted")
                session.add(action)
                actions.append(action)
        session.commit()
        refresh(session)
        cohort = month_start(joined.astimezone(scheme_zone()).date())
        first = ("bus_journey", "travel", "weeks_1_4")
        second = ("bus_journey", "travel", "months_2_3")
        # Two members in their first weeks (three actions); one later; none before joining.
        assert _cells(session) == {(cohort, "Armley", *first): (2, 3),
                                   (cohort, "Armley", *second): (1, 1)}
        assert session.scalar(select(MemberTenure.actions).where(
            MemberTenure.member_id == members[0], MemberTenure.window == "weeks_1_4")) == 2
        # The later action stops counting: its cell goes.
        actions[-2].status = "revoked"
        session.commit()
        rebuild(session, today() - timedelta(days=60), today())
        session.commit()
        assert _cells(session) == {(cohort, "Armley", *first): (2, 3)}
