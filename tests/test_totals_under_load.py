"""Members' running totals (kept by the database as lines are written) stay exact when
every way of writing lines runs at once for the same members: source batches that
award several members in one statement, and claims that spend, each member's totals
changed by both. Nothing is refused for a lock the totals added (no deadlock, no 5xx),
every answer agrees with the lines, and `verify` (which checks the totals) is clean."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from rewards.extensions import db
from rewards.ledger import member_balances, verify
from rewards.ledger.service import member_account
from rewards.models import PostingLine

from .helpers import at_once, bearer, build_scheme, link, member_token, signed_post, tap
from .test_rewards import COST, _daytime, claim, member_id

MEMBERS = 4
BATCHES = 4
CLAIMS = 3


def test_batches_and_claims_at_once_keep_every_members_totals_exact(
        client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app, cost_points=COST, stock=None)
    members: list[tuple[dict[str, str], str]] = []
    for n in range(MEMBERS):
        headers = bearer(member_token(client, app, f"totals{n}@example.org"))
        card = f"6336{n:012d}"
        assert link(client, app, headers, card).status_code == 201
        members.append((headers, card))
    # Points to start with: four journeys a member in one batch.
    first = signed_post(client, scheme.source, {"items": [
        tap(f"start-{card}-{h}", card, _daytime(1, 9 + h)) for _, card in members
        for h in range(4)]})
    assert first.status_code == 200, first.json

    def send(own: FlaskClient, index: int) -> list[int]:
        if index < BATCHES:  # each batch awards every member, on days of its own
            items = [tap(f"b{index}-{card}-{d}", card, _daytime(3 + 2 * index + d, 10))
                     for _, card in members for d in range(2)]
            answer = signed_post(own, scheme.source, {"items": items})
            assert answer.status_code == 200, answer.json
            return [item["points"] for item in answer.json["results"]]
        headers = members[index - BATCHES][0]
        return [claim(own, headers, scheme.offer["id"]).status_code for _ in range(CLAIMS)]

    answers = at_once(app, BATCHES + MEMBERS, send)
    assert all(points == [COST] * 2 * MEMBERS for points in answers[:BATCHES]), answers
    assert all(statuses == [202] * CLAIMS for statuses in answers[BATCHES:]), answers

    expected = (4 + 2 * BATCHES - CLAIMS) * COST
    with app.app_context():
        session = db.session
        assert verify(session) == []
        for headers, _ in members:
            who = member_id(client, headers)
            lines = session.scalar(select(func.sum(PostingLine.points)).where(
                PostingLine.account_id == member_account(session, who).id))
            assert lines == expected
            assert member_balances(session, who).available == expected
            assert member_balances(session, who).lifetime_earned == (4 + 2 * BATCHES) * COST
    for headers, _ in members:
        assert client.get("/v1/me/balance", headers=headers).json["available"] == expected
