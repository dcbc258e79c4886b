"""Undoing a redemption (the same partner, within ten minutes, once per voucher), the
partner's list of its redemptions, and the undo button on the partner page."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from rewards.extensions import db
from rewards.models import Redemption

from .reward_support import (
    admin_headers,
    ledger_sound,
    make_offer,
    make_partner,
    partner_user,
    resident,
    reward_status,
    till,
)
from .test_partner_pages import _csrf, _log_in, _partner_user
from .test_rewards import together


def _voucher(client: FlaskClient, headers: dict[str, str], offer_id: str) -> tuple[str, str]:
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer_id}, headers=headers)
    assert claimed.status_code == 202, claimed.json
    reward = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=headers).json
    assert reward["status"] == "issued"
    return reward["id"], reward["code"]


def _redeem(client: FlaskClient, headers: dict[str, str], code: str) -> Any:
    return client.post("/v1/partner/redemptions", json={"code": code}, headers=headers)


def _age(app: Flask, redemption_id: str, minutes: float) -> None:
    with app.app_context():
        db.session.execute(update(Redemption).where(Redemption.id == uuid.UUID(redemption_id))
                           .values(created_at=datetime.now(UTC) - timedelta(minutes=minutes)))
        db.session.commit()


def test_undo_makes_the_voucher_valid_again_once(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Laynes Espresso")
    other = make_partner(client, admin, "Elsewhere")
    offer = make_offer(client, admin, partner["id"], title="Flat white", value_pence=250)
    me = resident(client, app, points=50)
    reward_id, code = _voucher(client, me.headers, offer["id"])

    first = _redeem(client, till(partner), code)
    assert first.status_code == 201
    assert (first.json["channel"], first.json["value_gbp"]) == ("code", "2.50")
    url = f"/v1/partner/redemptions/{first.json['id']}/undo"
    # Another partner, a resident, nobody: no.
    assert client.post(url, headers=till(other)).status_code == 404
    assert client.post(url, headers=me.headers).status_code == 403
    assert client.post(url).status_code == 401
    assert client.post(f"/v1/partner/redemptions/{uuid.uuid4()}/undo",
                       headers=till(partner)).status_code == 404
    assert reward_status(app, reward_id) == "redeemed"

    undone = client.post(url, headers=till(partner))
    assert undone.status_code == 200, undone.json
    assert undone.json["undone_at"] is not None
    assert reward_status(app, reward_id) == "issued"
    shown = client.get(f"/v1/me/rewards/{reward_id}", headers=me.headers).json
    assert (shown["status"], shown["redeemed_at"]) == ("issued", None)
    check = client.get(f"/v1/partner/vouchers/{code}", headers=till(partner)).json
    assert check["valid"] is True
    assert client.post(url, headers=till(partner)).status_code == 409  # undone already

    # Valid again: it can be redeemed again, by a partner user this time...
    user = partner_user(client, app, partner["id"])
    second = _redeem(client, user, code)
    assert second.status_code == 201 and second.json["id"] != first.json["id"]
    assert _redeem(client, till(partner), code).status_code == 409
    # ...but not undone a second time.
    refused = client.post(f"/v1/partner/redemptions/{second.json['id']}/undo", headers=user)
    assert refused.status_code == 409
    assert "undone once already" in refused.json["message"]
    assert reward_status(app, reward_id) == "redeemed"
    ledger_sound(app)


def test_undo_is_refused_after_ten_minutes(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"])
    me = resident(client, app, points=50)
    reward_id, code = _voucher(client, me.headers, offer["id"])
    done = _redeem(client, till(partner), code).json
    _age(app, done["id"], 10.5)
    late = client.post(f"/v1/partner/redemptions/{done['id']}/undo", headers=till(partner))
    assert late.status_code == 409
    assert "within 10 minutes" in late.json["message"]
    assert reward_status(app, reward_id) == "redeemed"
    _age(app, done["id"], 9.5)
    assert client.post(f"/v1/partner/redemptions/{done['id']}/undo",
                       headers=till(partner)).status_code == 200


def test_concurrent_undos_undo_once(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"])
    me = resident(client, app, points=50)
    reward_id, code = _voucher(client, me.headers, offer["id"])
    done = _redeem(client, till(partner), code).json
    answers = together(app, 8, lambda c, _: c.post(
        f"/v1/partner/redemptions/{done['id']}/undo", headers=till(partner)))
    assert Counter(status for status, _ in answers) == {200: 1, 409: 7}, answers
    assert reward_status(app, reward_id) == "issued"


def test_partner_lists_its_redemptions(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    other = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], title="Tea", value_pence=120)
    theirs = make_offer(client, admin, other["id"])
    me = resident(client, app, points=100)
    ids = []
    for _ in range(3):
        _, code = _voucher(client, me.headers, offer["id"])
        ids.append(_redeem(client, till(partner), code).json["id"])
    _, code = _voucher(client, me.headers, theirs["id"])
    assert _redeem(client, till(other), code).status_code == 201
    client.post(f"/v1/partner/redemptions/{ids[1]}/undo", headers=till(partner))
    with app.app_context():
        db.session.execute(update(Redemption).where(Redemption.id == uuid.UUID(ids[0]))
                           .values(created_at=datetime(2026, 1, 15, 12, tzinfo=UTC)))
        db.session.commit()

    listed = client.get("/v1/partner/redemptions?page_size=2", headers=till(partner))
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json] == [ids[2], ids[1]]
    assert '"total": 3' in listed.headers["X-Pagination"]
    assert listed.json[1]["undone_at"] is not None and listed.json[0]["undone_at"] is None
    assert listed.json[0]["offer"]["title"] == "Tea" and listed.json[0]["value_pence"] == 120
    january = client.get("/v1/partner/redemptions?month=2026-01", headers=till(partner)).json
    assert [r["id"] for r in january] == [ids[0]]
    assert client.get("/v1/partner/redemptions?month=2026-13",
                      headers=till(partner)).status_code == 422
    assert len(client.get("/v1/partner/redemptions", headers=till(other)).json) == 1


def test_undo_on_the_partner_page(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    other = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], title="Flat white")
    me = resident(client, app, points=50)
    reward_id, code = _voucher(client, me.headers, offer["id"])
    assert _log_in(client, _partner_user(app, partner["id"])).status_code == 302
    page = client.get("/partner/redeem")
    done = client.post("/partner/redeem", data={"code": code, "csrf": _csrf(page.data)})
    assert done.status_code == 201 and b'id="undo"' in done.data
    with app.app_context():
        redemption_id = db.session.scalars(select(Redemption.id)).one()
    assert client.post(f"/partner/redemptions/{redemption_id}/undo",
                       data={"csrf": "forged"}).status_code == 400
    assert reward_status(app, reward_id) == "redeemed"
    undone = client.post(f"/partner/redemptions/{redemption_id}/undo",
                         data={"csrf": _csrf(done.data)})
    assert undone.status_code == 200 and b"The voucher is valid again" in undone.data
    assert reward_status(app, reward_id) == "issued"
    again = client.post(f"/partner/redemptions/{redemption_id}/undo",
                        data={"csrf": _csrf(done.data)})
    assert again.status_code == 409 and b"NOT UNDONE" in again.data

    # Another partner's user cannot undo it.
    redone = client.post("/partner/redeem", data={"code": code, "csrf": _csrf(done.data)})
    assert redone.status_code == 201
    client.post("/partner/logout", data={"csrf": _csrf(redone.data)})
    assert _log_in(client, _partner_user(app, other["id"], "till@other.example")
                   ).status_code == 302
    page = client.get("/partner/redeem")
    with app.app_context():
        standing = db.session.scalars(
            select(Redemption.id).where(Redemption.undone_at.is_(None))).one()
    assert client.post(f"/partner/redemptions/{standing}/undo",
                       data={"csrf": _csrf(page.data)}).status_code == 404
    assert reward_status(app, reward_id) == "redeemed"
