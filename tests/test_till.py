"""What a till needs: idempotent redemptions, its own reference on each, finding a
redemption by voucher code or reference, and several keys with rotation and overlap."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from rewards.extensions import db
from rewards.models import PartnerKey, Redemption, utcnow

from .helpers import at_once
from .reward_support import admin_headers, make_offer, make_partner, partner_user, resident, till


def _voucher(client: FlaskClient, app: Flask, offer_id: str) -> str:
    member = resident(client, app, points=100)
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer_id}, headers=member.headers)
    assert claimed.status_code == 202, claimed.json
    reward = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=member.headers).json
    assert reward["status"] == "issued"
    return reward["code"]


def _redemptions(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Redemption.id))) or 0


def _setup(client: FlaskClient, app: Flask, admin: dict[str, str] | None = None
           ) -> tuple[dict[str, str], dict[str, Any], str]:
    admin = admin or admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10)
    return admin, partner, offer["id"]


def test_a_retry_with_the_same_idempotency_key_gets_the_first_redemption(
        client: FlaskClient, app: Flask) -> None:
    admin, partner, offer_id = _setup(client, app)
    code, other = _voucher(client, app, offer_id), _voucher(client, app, offer_id)
    headers = {**till(partner), "Idempotency-Key": "sale-1001"}
    body = {"code": code, "reference": "R-1001"}
    first = client.post("/v1/partner/redemptions", json=body, headers=headers)
    assert first.status_code == 201, first.json
    assert first.json["reference"] == "R-1001"
    assert "Idempotent-Replayed" not in first.headers
    retry = client.post("/v1/partner/redemptions", json=body, headers=headers)
    assert retry.status_code == 201, retry.json
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json == first.json
    assert _redemptions(app) == 1
    reused = client.post("/v1/partner/redemptions", json={"code": other}, headers=headers)
    assert (reused.status_code, reused.json["reason"]) == (422, "idempotency_key_reused")
    without = client.post("/v1/partner/redemptions", json=body, headers=till(partner))
    assert (without.status_code, without.json["reason"]) == (409, "voucher_used")
    fresh = client.post("/v1/partner/redemptions", json={"code": other},
                        headers={**till(partner), "Idempotency-Key": "sale-1002"})
    assert fresh.status_code == 201 and fresh.json["reference"] is None
    assert _redemptions(app) == 2
    # Keys are per partner: another partner's till may use the same key for its own sale.
    _, second, second_offer = _setup(client, app, admin)
    theirs = client.post("/v1/partner/redemptions",
                         json={"code": _voucher(client, app, second_offer)},
                         headers={**till(second), "Idempotency-Key": "sale-1001"})
    assert theirs.status_code == 201 and theirs.json["id"] != first.json["id"]


def test_concurrent_tries_with_one_key_redeem_once_and_answer_alike(
        client: FlaskClient, app: Flask) -> None:
    _, partner, offer_id = _setup(client, app)
    code = _voucher(client, app, offer_id)
    headers = {**till(partner), "Idempotency-Key": "lost-answer"}
    answers = at_once(app, 4, lambda own, _: own.post(
        "/v1/partner/redemptions", json={"code": code}, headers=headers))
    assert [answer.status_code for answer in answers] == [201] * 4, [a.json for a in answers]
    assert len({answer.json["id"] for answer in answers}) == 1
    assert _redemptions(app) == 1


def test_redemptions_are_found_by_voucher_code_or_till_reference(
        client: FlaskClient, app: Flask) -> None:
    admin, partner, offer_id = _setup(client, app)
    first, second = _voucher(client, app, offer_id), _voucher(client, app, offer_id)
    for code, reference in ((first, "R-1"), (second, "R-2")):
        made = client.post("/v1/partner/redemptions", json={"code": code, "reference": reference},
                           headers=till(partner))
        assert made.status_code == 201, made.json
    by_code = client.get("/v1/partner/redemptions",
                         query_string={"code": second.lower()}, headers=till(partner))
    assert [(r["code"], r["reference"]) for r in by_code.json] == [(second, "R-2")]
    by_reference = client.get("/v1/partner/redemptions", query_string={"reference": "R-1"},
                              headers=till(partner))
    assert [r["code"] for r in by_reference.json] == [first]
    _, other, _ = _setup(client, app, admin)
    assert client.get("/v1/partner/redemptions", query_string={"code": first},
                      headers=till(other)).json == []


def test_several_till_keys_rotation_with_overlap_and_retirement(
        client: FlaskClient, app: Flask) -> None:
    admin, partner, _ = _setup(client, app)
    keys_path = f"/v1/admin/partners/{partner['id']}/keys"
    registration = till(partner)

    def works(headers: dict[str, str]) -> int:
        return client.get("/v1/partner/redemptions", headers=headers).status_code

    second = client.post(keys_path, json={"label": "Back counter", "rotate": False},
                         headers=admin)
    assert second.status_code == 201, second.json
    assert second.json["previous_keys_end_at"] is None
    second_till = {"X-Api-Key": second.json["api_key"]}
    assert (works(registration), works(second_till)) == (200, 200)

    rotated = client.post(keys_path, json={"overlap_days": 3}, headers=admin)
    assert rotated.status_code == 201, rotated.json
    new_till = {"X-Api-Key": rotated.json["api_key"]}
    assert (works(registration), works(second_till), works(new_till)) == (200, 200, 200)
    listed = client.get(keys_path, headers=admin).json
    assert [key["state"] for key in listed] == ["active", "expiring", "expiring"]
    assert listed[-1]["key_prefix"] is None and listed[-1]["label"] == "registration"
    assert "api_key" not in listed[0]

    with app.app_context():  # the overlap ends
        db.session.execute(update(PartnerKey).where(PartnerKey.expires_at.is_not(None))
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    expired = client.get("/v1/partner/redemptions", headers=registration)
    assert expired.status_code == 401 and "expired" in expired.json["message"]
    assert (works(second_till), works(new_till)) == (401, 200)

    retired = client.delete(f"{keys_path}/{rotated.json['id']}", headers=admin)
    assert retired.status_code == 204
    assert works(new_till) == 401
    assert client.delete(f"{keys_path}/{rotated.json['id']}", headers=admin).status_code == 204
    _, other, _ = _setup(client, app, admin)
    wrong = client.delete(f"/v1/admin/partners/{other['id']}/keys/{rotated.json['id']}",
                          headers=admin)
    assert wrong.status_code == 404
    analyst = admin_headers(client, app, "analyst")
    assert client.post(keys_path, json={}, headers=analyst).status_code == 403


def test_a_partner_made_inactive_is_shut_out_by_key_and_by_login_and_redeems_nothing(
        client: FlaskClient, app: Flask) -> None:
    admin, partner, offer_id = _setup(client, app)
    code = _voucher(client, app, offer_id)
    user = partner_user(client, app, partner["id"])
    rotated = client.post(f"/v1/admin/partners/{partner['id']}/keys", json={"rotate": False},
                          headers=admin)
    assert rotated.status_code == 201, rotated.json
    for headers in (till(partner), {"X-Api-Key": rotated.json["api_key"]}, user):
        assert client.get(f"/v1/partner/vouchers/{code}", headers=headers).status_code == 200
    closed = client.patch(f"/v1/admin/partners/{partner['id']}", json={"active": False},
                          headers=admin)
    assert closed.status_code == 200, closed.json
    for headers in (till(partner), {"X-Api-Key": rotated.json["api_key"]}, user):
        checked = client.get(f"/v1/partner/vouchers/{code}", headers=headers)
        assert checked.status_code == 401, checked.json
        assert any(words in checked.json["message"]
                   for words in ("partner is not active", "no longer part of the scheme"))
        redeemed = client.post("/v1/partner/redemptions", json={"code": code},
                               headers={**headers, "Idempotency-Key": "closed-1"})
        assert redeemed.status_code == 401, redeemed.json
    assert _redemptions(app) == 0
    # Made active again, the same credentials work and the voucher is still good.
    client.patch(f"/v1/admin/partners/{partner['id']}", json={"active": True}, headers=admin)
    assert client.post("/v1/partner/redemptions", json={"code": code},
                       headers=till(partner)).status_code == 201
