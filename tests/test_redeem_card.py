"""Members without a phone redeem at the till with their card and PIN: claimed, issued
and redeemed in one transaction; wrong PINs are counted and five lock the PIN; every
refusal changes nothing else. The same on the partner page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from rewards.extensions import db
from rewards.models import Member, Offer, Redemption, Reward

from .reward_support import (
    admin_headers,
    card_member,
    ledger_sound,
    make_offer,
    make_partner,
    member_available,
    member_row,
    partner_user,
    postings,
    till,
)
from .test_partner_pages import _csrf, _log_in, _partner_user

# Their fake partner systems listen on 127.0.0.1 over http.
pytestmark = pytest.mark.usefixtures("allow_private_webhooks")


CARD = "6335 0099 8877 6655"


def _redeem(client: FlaskClient, headers: dict[str, str], offer_id: str, pin: str = "4729",
            number: str = CARD, kind: str = "leisure_card", key: str | None = None) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/partner/card-redemptions",
                       json={"card": {"kind": kind, "number": number}, "pin": pin,
                             "offer_id": offer_id},
                       headers={**headers, **extra})


def _counts(app: Flask) -> tuple[int, int]:
    with app.app_context():
        return (int(db.session.scalar(select(func.count(Reward.id))) or 0),
                int(db.session.scalar(select(func.count(Redemption.id))) or 0))


def test_card_and_pin_redeem_at_once(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds")
    swim = make_offer(client, admin, partner["id"], title="Free swim", cost_points=40,
                      stock=5, value_pence=300)
    member_id = card_member(app, CARD, points=100)

    done = _redeem(client, till(partner), swim["id"], number="6335009988776655")
    assert done.status_code == 201, done.json
    assert (done.json["channel"], done.json["offer"]["id"], done.json["value_pence"]) == (
        "card", swim["id"], 300)
    assert done.json["undo_until"] is not None
    assert member_available(app, member_id) == 60
    with app.app_context():
        reward = db.session.scalars(select(Reward)).one()
        assert (reward.status, reward.code is not None) == ("redeemed", True)
        assert db.session.get(Offer, uuid.UUID(swim["id"])).claimed == 1
    assert (postings(app, "hold"), postings(app, "capture")) == (1, 1)

    # A retry of the same request (the till lost the answer) redeems nothing more.
    again = _redeem(client, till(partner), swim["id"], key="till-7-0001")
    assert again.status_code == 201
    replay = _redeem(client, till(partner), swim["id"], key="till-7-0001")
    assert replay.status_code == 201 and replay.json["id"] == again.json["id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert member_available(app, member_id) == 20
    assert _counts(app) == (2, 2)
    # A partner's user on a bearer token can do it too.
    user = partner_user(client, app, partner["id"])
    poor = _redeem(client, user, swim["id"])
    assert poor.status_code == 409 and poor.json["message"].startswith("Not enough points")
    ledger_sound(app)


def test_card_refusals_change_nothing(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds")
    other = make_partner(client, admin, "Elsewhere")
    swim = make_offer(client, admin, partner["id"], cost_points=40, stock=1)
    theirs = make_offer(client, admin, other["id"], cost_points=10)
    gone = make_offer(client, admin, partner["id"], cost_points=10, stock=0)
    ended = make_offer(client, admin, partner["id"], cost_points=10)
    dear = make_offer(client, admin, partner["id"], cost_points=500)
    with app.app_context():
        db.session.execute(update(Offer).where(Offer.id == uuid.UUID(ended["id"]))
                           .values(ends_at=datetime.now(UTC) - timedelta(hours=1)))
        db.session.commit()
    client.patch(f"/v1/admin/partners/{partner['id']}",
                 json={"fulfilment_url": "http://127.0.0.1:9/passes"}, headers=admin)
    booked = make_offer(client, admin, partner["id"], cost_points=10, fulfilment="webhook")
    member_id = card_member(app, CARD, points=100)
    me = till(partner)

    def refused(response: Any, status: int, text: str) -> None:
        assert response.status_code == status, response.json
        assert text in response.json["message"], response.json
        assert _counts(app) == (0, 0)
        assert member_available(app, member_id) == 100

    refused(_redeem(client, me, theirs["id"]), 404, "No such offer here")
    refused(_redeem(client, me, str(uuid.uuid4())), 404, "No such offer here")
    refused(_redeem(client, me, gone["id"]), 409, "Sold out")
    refused(_redeem(client, me, ended["id"]), 410, "This offer has ended")
    refused(_redeem(client, me, dear["id"]), 409, "Not enough points: this costs 500")
    refused(_redeem(client, me, booked["id"]), 409, "booking system")
    refused(_redeem(client, me, swim["id"], number="1111 2222 3333"), 401, "not recognised")
    refused(_redeem(client, me, swim["id"], kind="travel_card"), 401, "not recognised")
    assert _redeem(client, me, swim["id"], pin="12").status_code == 422
    assert _redeem(client, {}, swim["id"]).status_code == 401
    assert member_row(app, member_id).pin_failures == 0

    # Wrong PINs are kept even though the request is refused; the fifth locks the PIN.
    for tries in range(1, 5):
        refused(_redeem(client, me, swim["id"], pin="0000"), 401, "not recognised")
        assert member_row(app, member_id).pin_failures == tries
    refused(_redeem(client, me, swim["id"], pin="0000"), 401, "not recognised")
    locked = member_row(app, member_id)
    assert locked.pin_locked_until is not None
    refused(_redeem(client, me, swim["id"]), 403, "Too many wrong PINs")
    # After the lock the right PIN works again, and clears the count.
    with app.app_context():
        db.session.execute(update(Member).where(Member.id == uuid.UUID(member_id))
                           .values(pin_locked_until=datetime.now(UTC) - timedelta(seconds=1),
                                   pin_failures=3))
        db.session.commit()
    assert _redeem(client, me, swim["id"]).status_code == 201
    assert member_row(app, member_id).pin_failures == 0
    ledger_sound(app)


def test_undoing_a_card_redemption_returns_the_points(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    swim = make_offer(client, admin, partner["id"], cost_points=40, stock=1)
    member_id = card_member(app, CARD, points=100)
    done = _redeem(client, till(partner), swim["id"])
    assert done.status_code == 201
    undone = client.post(f"/v1/partner/redemptions/{done.json['id']}/undo",
                         headers=till(partner))
    assert undone.status_code == 200, undone.json
    assert undone.json["undone_at"] is not None and undone.json["undo_until"] is None
    assert member_available(app, member_id) == 100
    with app.app_context():
        assert db.session.scalars(select(Reward)).one().status == "cancelled"
        assert db.session.get(Offer, uuid.UUID(swim["id"])).claimed == 0
    assert postings(app, "refund") == 1
    assert client.post(f"/v1/partner/redemptions/{done.json['id']}/undo",
                       headers=till(partner)).status_code == 409
    # The stock freed, the member can have it after all.
    assert _redeem(client, till(partner), swim["id"]).status_code == 201
    assert member_available(app, member_id) == 60
    ledger_sound(app)


def test_card_and_pin_on_the_partner_page(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds")
    swim = make_offer(client, admin, partner["id"], title="Free swim", cost_points=40)
    member_id = card_member(app, CARD, points=60)
    assert _log_in(client, _partner_user(app, partner["id"])).status_code == 302

    page = client.get("/partner/card")
    assert page.status_code == 200 and b"Free swim" in page.data
    form = {"csrf": _csrf(page.data), "kind": "leisure_card", "number": CARD,
            "offer_id": swim["id"]}
    wrong = client.post("/partner/card", data={**form, "pin": "0000"})
    assert wrong.status_code == 401 and b"NOT RECOGNISED" in wrong.data
    assert member_row(app, member_id).pin_failures == 1
    done = client.post("/partner/card", data={**form, "pin": "4729"})
    assert done.status_code == 201 and b"REDEEMED" in done.data
    assert b'id="undo"' in done.data
    assert member_available(app, member_id) == 20
    poor = client.post("/partner/card", data={**form, "pin": "4729"})
    assert poor.status_code == 409 and b"Not enough points" in poor.data
    assert client.post("/partner/card", data={**form, "pin": "4729", "csrf": "x"}
                       ).status_code == 400
    assert client.post("/partner/card", data={**form, "pin": "4729", "offer_id": "x"}
                       ).status_code == 422

    # The page lists it for ten minutes with an undo button; undo gives the points back.
    redeem_page = client.get("/partner/redeem")
    assert b"Redeemed in the last 10 minutes" in redeem_page.data
    with app.app_context():
        redemption_id = db.session.scalars(select(Redemption.id)).one()
    undone = client.post(f"/partner/redemptions/{redemption_id}/undo",
                         data={"csrf": _csrf(redeem_page.data)})
    assert undone.status_code == 200 and b"UNDONE" in undone.data
    assert b"points have been returned" in undone.data
    assert member_available(app, member_id) == 60
    ledger_sound(app)
