"""An offer without a stock: its claims never write its row (so they never queue for
it), and staff still see how many are claimed, counted from the rewards; an offer
with a stock still counts on its row and never sells more than it has."""

from __future__ import annotations

import uuid

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.extensions import db
from rewards.models import Offer
from rewards.vouchers import cancel_unredeemed

from .helpers import at_once
from .reward_support import admin_headers, ledger_sound, make_offer, make_partner, resident


def _row(app: Flask, offer_id: str) -> tuple[int, int | None]:
    with app.app_context():
        claimed, stock = db.session.execute(select(Offer.claimed, Offer.stock).where(
            Offer.id == uuid.UUID(offer_id))).one()
        return claimed, stock


def test_claims_of_an_unlimited_offer_are_counted_without_writing_its_row(
        client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10)
    assert offer["stock"] is None and offer["claimed"] == 0
    people = [resident(client, app, points=30) for _ in range(3)]
    claimed = [client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                           headers=person.headers) for person in people for _ in range(2)]
    assert [answer.status_code for answer in claimed] == [202] * 6, [a.json for a in claimed]
    assert _row(app, offer["id"]) == (0, None)  # the row was read, never written
    shown = client.get(f"/v1/admin/offers/{offer['id']}", headers=admin).json
    assert (shown["claimed"], shown["stock_left"]) == (6, None)
    listed = client.get("/v1/admin/offers", headers=admin).json
    assert [o["claimed"] for o in listed if o["id"] == offer["id"]] == [6]
    # A reward cancelled gives its claim back: counted from the rewards, 5 now.
    with app.app_context():
        cancel_unredeemed(db.session, uuid.UUID(claimed[0].json["id"]), "account closed")
        db.session.commit()
    assert client.get(f"/v1/admin/offers/{offer['id']}", headers=admin).json["claimed"] == 5
    assert _row(app, offer["id"]) == (0, None)
    ledger_sound(app)


def test_an_offer_with_a_stock_counts_on_its_row_and_never_oversells(
        client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10, stock=3)
    people = [resident(client, app, points=10) for _ in range(6)]
    answers = at_once(app, 6, lambda own, n: own.post(
        "/v1/me/rewards", json={"offer_id": offer["id"]}, headers=people[n].headers))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202, 202, 202, 409, 409, 409], [a.json for a in answers]
    assert {a.json["reason"] for a in answers if a.status_code == 409} == {"sold_out"}
    assert _row(app, offer["id"]) == (3, 3)
    shown = client.get(f"/v1/admin/offers/{offer['id']}", headers=admin).json
    assert (shown["claimed"], shown["stock_left"]) == (3, 0)
    won = next(a.json["id"] for a in answers if a.status_code == 202)
    with app.app_context():
        cancel_unredeemed(db.session, uuid.UUID(won), "account closed")
        db.session.commit()
    assert _row(app, offer["id"]) == (2, 3)  # one back in stock
    ledger_sound(app)
