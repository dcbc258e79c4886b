"""A revocation racing with a batch that awards the same member under the same rule:
they take the members' rows and the rules' rows in the same order, so neither waits
for the other in a cycle (no deadlock: no 503 for the revocation, no batch attempted
again), and the rule's running total and the ledger stay exact."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards.actions import ingest
from rewards.extensions import db
from rewards.ledger import verify
from rewards.models import Rule

from .helpers import bearer, build_scheme, link, member_token, postgres_only, signed_post, tap
from .test_erasure_races import WAIT, _in_thread, _lock_watch


def test_a_revocation_and_a_batch_for_the_same_member_do_not_deadlock(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch holds the member's row and the rule's row and is about to write its
    lines when the revocation comes. The revocation used to write its reversal first
    (its lines lock the member's running totals) and then wait for the rule's row to
    take the points off its total, while the batch waited for those totals: PostgreSQL
    failed one of them (the revocation answered 503, or the batch ran again). Now the
    revocation waits for the member's row before writing anything."""
    postgres_only(app, "row locks; SQLite serialises writers")
    scheme = build_scheme(client, app, cost_points=10, per_day=10)
    me = bearer(member_token(client, app, "racer@example.org"))
    card = "6335001234567891"
    assert link(client, app, me, card).status_code == 201
    earlier = datetime.now(UTC) - timedelta(hours=3)
    first = signed_post(client, scheme.source, {"items": [tap("trip-1", card, earlier)]})
    assert first.json["results"][0]["status"] == "accepted", first.json

    holding, go = threading.Event(), threading.Event()
    attempts: list[int] = []
    real_lock = ingest.lock_live_rules

    def held_here(session: Any, type_codes: Any) -> Any:
        rules = real_lock(session, type_codes)
        attempts.append(1)
        holding.set()  # the member's row and the rule's row are held: let it come
        assert go.wait(WAIT)
        return rules

    monkeypatch.setattr(ingest, "lock_live_rules", held_here)
    waiting = _lock_watch(app)
    later = datetime.now(UTC) - timedelta(hours=1)
    batching, batched = _in_thread(lambda: signed_post(
        app.test_client(), scheme.source, {"items": [tap("trip-2", card, later)]}))
    assert holding.wait(WAIT)
    revoking, revoked = _in_thread(lambda: signed_post(
        app.test_client(), scheme.source, {"external_refs": ["trip-1"]},
        path="/v1/source/actions/revocations"))
    waiting()
    go.set()
    batching.join(WAIT)
    revoking.join(WAIT)
    assert "error" not in batched and "error" not in revoked, (batched, revoked)
    assert revoked["value"].status_code == 200, revoked["value"].json
    assert revoked["value"].json["results"][0]["status"] == "revoked"
    assert batched["value"].status_code == 200, batched["value"].json
    assert batched["value"].json["results"][0]["status"] == "accepted"
    assert attempts == [1], "the batch was attempted again after a deadlock"
    balance = client.get("/v1/me/balance", headers=me).json
    points = batched["value"].json["results"][0]["points"]
    assert balance["available"] == points
    with app.app_context():
        rule = db.session.get(Rule, scheme.rule["id"])
        assert rule is not None and rule.points_awarded == points
        assert verify(db.session) == []
