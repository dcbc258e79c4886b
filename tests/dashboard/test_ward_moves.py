"""A member's ward is the one on their profile, for their whole history: after a move
(PATCH /v1/me) or an erasure, the rollups' figures by ward equal the raw tables', and an
erased member's ward is gone from every rollup row."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.dashboard import Filters, Raw, compute
from rewards.dashboard.filters import scheme_zone, today
from rewards.dashboard.refresh import refresh
from rewards.erasure import erase_member
from rewards.extensions import db
from rewards.models import Action, ActionType, Member, Source, utcnow
from rewards.models.dashboard import JoinDay, MemberDay, MemberHourMonth, MemberMonth, MemberTenure

from ..helpers import bearer, member_token
from ..reward_support import add_ward

FIGURES = ("actions_by_ward", "reach_wards", "active", "fairness_deprivation", "actions")


def _history(app: Flask, tokens: dict[str, str]) -> list:
    """Twelve members in each of two wards, each with a bus journey 100 days ago
    (older than the nightly rebuild reaches) and one yesterday."""
    with app.app_context():
        kind = ActionType(code="bus_journey", name="Bus", category="travel")
        db.session.add(kind)
        db.session.flush()
        source = Source(name="operator", api_key_hash="x" * 64, signing_secret="s" * 32,
                        action_types=["bus_journey"])
        db.session.add(source)
        db.session.flush()
        ids = []
        for n in range(24):
            email = f"r{n}@example.org"
            member = db.session.scalar(select(Member).where(Member.email == email))
            member.ward = "Alpha" if n < 12 else "Bravo"
            member.joined_at = utcnow() - timedelta(days=120)
            for ago in (100, 1):
                day = today() - timedelta(days=ago)
                db.session.add(Action(
                    source_id=source.id, external_ref=f"{n}-{ago}", member_id=member.id,
                    action_type_id=kind.id, type_code="bus_journey",
                    occurred_at=datetime.combine(day, time(12), scheme_zone()).astimezone(UTC),
                    attributes={}, points=5, status="accepted"))
            ids.append(member.id)
        db.session.commit()
        refresh(db.session)
        return ids


def _same_as_raw(app: Flask) -> None:
    with app.app_context():
        period = Filters(today() - timedelta(days=110), today())
        for name in FIGURES:
            got = compute(name, period, threshold=1).to_json()["rows"]
            raw = compute(name, period, source=Raw(), threshold=1).to_json()["rows"]
            assert got == raw, (name, got, raw)


def test_a_move_and_an_erasure_reach_the_whole_history(client: FlaskClient, app: Flask) -> None:
    for ward in ("Alpha", "Bravo"):
        add_ward(app, ward)
    tokens = {f"r{n}": member_token(client, app, f"r{n}@example.org") for n in range(24)}
    ids = _history(app, tokens)
    _same_as_raw(app)
    for n in range(3):  # three residents of Alpha move to Bravo
        moved = client.patch("/v1/me", json={"ward": "Bravo"}, headers=bearer(tokens[f"r{n}"]))
        assert moved.status_code == 200, moved.json
    with app.app_context():
        erase_member(db.session, db.session.get(Member, ids[5]), utcnow())
        db.session.commit()
        refresh(db.session)
    _same_as_raw(app)
    with app.app_context():
        rows = compute("actions_by_ward", Filters(today() - timedelta(days=110), today()),
                       threshold=1).to_json()["rows"]
        assert {r["ward"]: r["members"] for r in rows} == {
            "(no ward given)": 1, "Alpha": 8, "Bravo": 15}
        for model in (MemberDay, MemberMonth, MemberHourMonth, MemberTenure):
            wards = set(db.session.scalars(select(model.ward).where(
                model.member_id == ids[5])))
            assert wards <= {""}, (model.__name__, wards)
            assert set(db.session.scalars(select(model.ward).where(
                model.member_id == ids[0]))) == {"Bravo"}
        assert sum(db.session.scalars(select(JoinDay.members).where(
            JoinDay.ward == "Bravo"))) == 15
    # Nothing more to move: a later refresh changes nothing.
    with app.app_context():
        refresh(db.session, now=utcnow() + timedelta(minutes=30))
    _same_as_raw(app)
