"""What revoking gives back, and how awards reach the ledger: a revoked action's awards
stop counting against caps and budgets; a budget is checked against the rule's running
total, which `rewards ledger verify` proves; one action's stacked awards are one
earn posting per hold."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from rewards.extensions import db
from rewards.ledger import verify
from rewards.models import Action, Award, Posting, PostingLine, Rule

from .helpers import Scheme, bearer, build_scheme, postgres_only, signed_post, tap
from .test_ledger_api import _daytime, person, revoke


def send(client: FlaskClient, source: dict[str, Any], items: list[dict[str, Any]]) -> list[Any]:
    answer = signed_post(client, source, {"items": items})
    assert answer.status_code == 200, answer.json
    return [(r["status"], r.get("points")) for r in answer.json["results"]]


def drifted(kept: int, actual: int) -> str:
    """What verify says of the Bus journey rule whose running total drifted."""
    return (f"rule Bus journey: points_awarded is {kept}, its awards sum to {actual} (those "
            "not revoked, and the written-off part of those revoked)")


def rule_view(client: FlaskClient, admin: str, rule_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/admin/rules/{rule_id}", headers=bearer(admin))
    assert answer.status_code == 200, answer.json
    return answer.json


def test_a_revoked_action_no_longer_uses_the_daily_cap(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, per_day=2)
    me = person(client, app, scheme, 0)
    day = [_daytime(1, hour) for hour in (8, 9, 10, 11)]
    assert send(client, scheme.source, [tap("a", me.card, day[0]), tap("b", me.card, day[1]),
                                        tap("c", me.card, day[2])]) == [
        ("accepted", 10), ("accepted", 10), ("accepted", 0)]  # the third is over the cap

    assert revoke(client, scheme, ["a"]).json["results"][0]["status"] == "revoked"
    # The day now holds one counted journey: the next one earns, the one after does not.
    assert send(client, scheme.source, [tap("d", me.card, day[3]),
                                        tap("e", me.card, _daytime(1, 12))]) == [
        ("accepted", 10), ("accepted", 0)]
    with app.app_context():
        revoked = db.session.execute(
            select(Award.points, Award.revoked_at).join(Action, Action.id == Award.action_id)
            .where(Action.external_ref == "a")).one()
        assert revoked.points == 10 and revoked.revoked_at is not None
        assert verify(db.session) == []


def test_budget_spends_the_running_total_and_revocation_returns_to_it(client: FlaskClient,
                                                                      app: Flask):
    scheme = build_scheme(client, app, per_day=10)
    admin = bearer(scheme.admin)
    rule_id = scheme.rule["id"]
    patched = client.patch(f"/v1/admin/rules/{rule_id}", json={"budget_points": 25},
                           headers=admin)
    assert patched.status_code == 200, patched.json
    assert (patched.json["points_awarded"], patched.json["budget_left"]) == (0, 25)
    me = person(client, app, scheme, 0)

    assert send(client, scheme.source, [tap(f"t{h}", me.card, _daytime(2, h))
                                        for h in (8, 9, 10, 11)]) == [
        ("accepted", 10), ("accepted", 10), ("accepted", 5), ("accepted", 0)]
    view = rule_view(client, scheme.admin, rule_id)
    assert (view["points_awarded"], view["budget_left"]) == (25, 0)

    revoke(client, scheme, ["t8"])
    view = rule_view(client, scheme.admin, rule_id)
    assert (view["points_awarded"], view["budget_left"]) == (15, 10)
    assert send(client, scheme.source, [tap("t12", me.card, _daytime(2, 12)),
                                        tap("t13", me.card, _daytime(2, 13))]) == [
        ("accepted", 10), ("accepted", 0)]
    with app.app_context():
        assert db.session.scalar(select(Rule.points_awarded)
                                 .where(Rule.id == uuid.UUID(rule_id))) == 25
        assert verify(db.session) == []


def test_verify_finds_a_running_total_that_drifted(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app)
    me = person(client, app, scheme, 3)
    assert me.refs
    with app.app_context():
        assert verify(db.session) == []
        db.session.execute(update(Rule).where(Rule.id == uuid.UUID(scheme.rule["id"]))
                           .values(points_awarded=Rule.points_awarded + 7))
        db.session.commit()
        problems = verify(db.session)
    assert problems == [drifted(37, 30)]


def test_verify_finds_awards_whose_revocation_is_out_of_step(client: FlaskClient,
                                                              app: Flask):
    scheme = build_scheme(client, app)
    me = person(client, app, scheme, 2)
    with app.app_context():
        first = db.session.scalar(select(Action.id).where(Action.external_ref == me.refs[0]))
        db.session.execute(update(Action).where(Action.id == first).values(status="revoked"))
        db.session.commit()
        award = db.session.scalar(select(Award.id).where(Award.action_id == first))
        assert verify(db.session) == [
            f"award {award} of action {first} (revoked) is not marked revoked"]


def test_the_nightly_verify_job_logs_each_problem(client: FlaskClient, app: Flask, caplog):
    import importlib

    from rq import cron

    import workers.ledger

    importlib.import_module("workers.cron")
    scheduled = {entry["func"].__name__: entry for entry in cron._job_data_registry}
    assert scheduled["verify_ledger"]["cron"] and scheduled["verify_ledger"]["queue_name"]

    scheme = build_scheme(client, app)
    person(client, app, scheme, 2)
    with app.app_context():
        assert workers.ledger.verify_ledger() == {"problems": 0, "first": []}
        db.session.execute(update(Rule).where(Rule.id == uuid.UUID(scheme.rule["id"]))
                           .values(points_awarded=5))
        db.session.commit()
        with caplog.at_level("ERROR", logger="rewards.ledger"):
            outcome = workers.ledger.verify_ledger()
    problem = drifted(5, 20)
    assert outcome == {"problems": 1, "first": [problem]}
    assert [r.getMessage() for r in caplog.records if r.name == "rewards.ledger"] == [
        f"ledger verify: {problem}"]


def test_verify_reads_one_snapshot_while_batches_commit(client: FlaskClient, app: Flask,
                                                        monkeypatch: pytest.MonkeyPatch):
    """A change committed between two of its checks is not half seen: the checks agree
    with each other. (PostgreSQL: REPEATABLE READ. On SQLite, verify's transaction holds
    the write lock, so nothing can commit meanwhile.)"""
    import rewards.ledger.service as service
    from rewards.ledger import verify_snapshot

    postgres_only(app, "SQLite's BEGIN IMMEDIATE lets no other writer commit during verify")
    scheme = build_scheme(client, app)
    person(client, app, scheme, 2)
    lots = service._lot_problems

    def lots_then_a_commit_elsewhere(session):
        found = lots(session)
        with db.engine.begin() as other:  # another connection, as a batch would be
            other.execute(update(Rule).where(Rule.id == uuid.UUID(scheme.rule["id"]))
                          .values(points_awarded=Rule.points_awarded + 9))
        return found

    monkeypatch.setattr(service, "_lot_problems", lots_then_a_commit_elsewhere)
    with app.app_context():
        assert verify_snapshot(db.session) == []  # the rule total is read from before
        monkeypatch.setattr(service, "_lot_problems", lots)
        assert verify_snapshot(db.session) == [drifted(29, 20)]


def _second_rule(client: FlaskClient, admin: str, hold_days: int) -> None:
    answer = client.post("/v1/admin/rules", json={
        "name": "Clean Air November", "action_types": ["bus_journey"], "condition": "true",
        "points": "5", "status": "active", "hold_days": hold_days,
        "starts_at": "2020-01-01T00:00:00Z"}, headers=bearer(admin))
    assert answer.status_code == 201, answer.json


def earn_rows(app: Flask, ref: str) -> list[tuple[str, str, int, int]]:
    """(reason, key's rule part, member's credit, awards naming it) per earn posting."""
    with app.app_context():
        action_id = db.session.scalar(select(Action.id).where(Action.external_ref == ref))
        rows = []
        for posting in db.session.scalars(select(Posting).where(
                Posting.action_id == action_id, Posting.kind == "earn")
                .order_by(Posting.reason)):
            credit = db.session.scalar(select(PostingLine.points).where(
                PostingLine.posting_id == posting.id, PostingLine.points > 0))
            named = db.session.scalars(select(Award.points)
                                       .where(Award.posting_id == posting.id)).all()
            rows.append((posting.reason, posting.key.split(":")[0], credit, sorted(named)))
        return rows


def test_stacked_awards_on_one_action_are_one_posting_per_hold(client: FlaskClient,
                                                               app: Flask):
    scheme = build_scheme(client, app)
    _second_rule(client, scheme.admin, hold_days=0)
    me = person(client, app, scheme, 0)
    assert send(client, scheme.source, [tap("x", me.card, _daytime(1, 9))]) == [
        ("accepted", 15)]
    assert earn_rows(app, "x") == [("Bus journey v1 + Clean Air November v1", "award",
                                    15, [5, 10])]
    statement = client.get("/v1/me/ledger", headers=me.headers).json
    assert [(line["points"], line["reason"]) for line in statement] == [
        (15, "Bus journey v1 + Clean Air November v1")]


def test_awards_with_different_holds_post_separately(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app)
    _second_rule(client, scheme.admin, hold_days=3)
    me = person(client, app, scheme, 0)
    assert send(client, scheme.source, [tap("y", me.card, _daytime(1, 9))]) == [
        ("accepted", 15)]
    assert earn_rows(app, "y") == [("Bus journey v1", "award", 10, [10]),
                                   ("Clean Air November v1", "award", 5, [5])]
    balance = client.get("/v1/me/balance", headers=me.headers).json
    assert (balance["available"], balance["pending"]) == (10, 5)
    with app.app_context():
        assert verify(db.session) == []


# Random sequences of taps and revocations through the API, checked against a model of
# the per-day cap after every step: a revoked award frees its place, the cap is never
# exceeded by awards still standing, and the ledger (with the rule's running total)
# verifies.
history = st.lists(
    st.one_of(
        st.tuples(st.just("tap"), st.sampled_from([1, 2]), st.integers(9, 17)),
        st.tuples(st.just("revoke"), st.integers(0, 9)),
    ),
    min_size=1,
    max_size=10,  # at most 10 taps an hour: the hourly control never steps in
)


@pytest.fixture
def capped_scheme(client: FlaskClient, app: Flask) -> Scheme:
    return build_scheme(client, app, per_day=2)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=history)
def test_random_taps_and_revocations_keep_the_daily_cap(client: FlaskClient, app: Flask,
                                                        capped_scheme: Scheme, steps):
    scheme = capped_scheme
    me = person(client, app, scheme, 0)
    standing: dict[int, int] = {1: 0, 2: 0}  # awards with points not revoked, by day
    sent: list[tuple[str, int, int, bool]] = []  # (ref, day, points, revoked)
    for step in steps:
        if step[0] == "tap":
            _, day, hour = step
            ref = f"{me.card}-{len(sent)}"
            expected = 10 if standing[day] < 2 else 0
            assert send(client, scheme.source, [tap(ref, me.card, _daytime(day, hour))]) == [
                ("accepted", expected)]
            standing[day] += 1 if expected else 0
            sent.append((ref, day, expected, False))
        elif sent:
            index = step[1] % len(sent)
            ref, day, points, revoked = sent[index]
            result = revoke(client, scheme, [ref]).json["results"][0]
            assert result["status"] == ("already_revoked" if revoked else "revoked")
            if not revoked:
                standing[day] -= 1 if points else 0
                sent[index] = (ref, day, points, True)
        with app.app_context():
            counted = db.session.execute(
                select(Action.external_ref).join(Award, Award.action_id == Action.id)
                .where(Action.member_id == uuid.UUID(me.id), Award.points > 0,
                       Award.revoked_at.is_(None))).scalars().all()
            assert sorted(counted) == sorted(r for r, _, p, gone in sent if p and not gone)
            assert verify(db.session) == []
    assert all(0 <= n <= 2 for n in standing.values())
