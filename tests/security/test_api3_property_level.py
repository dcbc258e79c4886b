"""API3:2023 Broken object property level authorisation: what each answer contains and
which fields a request may set. Residents cannot set their id, email, erasure or
consent flags through the profile; cards show kind and last 4 only; partners see no
member's identity; analysts' aggregates carry no member ids."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from ..helpers import bearer, link, staff_token
from ..reward_support import admin_headers, make_offer, make_partner, resident, till


def test_the_profile_takes_only_its_own_fields(client: FlaskClient, app: Flask) -> None:
    me = resident(client, app)
    for field, value in (("id", "00000000-0000-0000-0000-000000000000"),
                         ("email", "boss@leeds.gov.uk"), ("erased_at", None),
                         ("travel_data_withheld", True), ("pin_hash", "x"), ("role", "admin"),
                         ("joined_at", "2020-01-01T00:00:00Z")):
        answer = client.patch("/v1/me", json={field: value}, headers=me.headers)
        assert answer.status_code == 422, (field, answer.json)
    profile = client.get("/v1/me", headers=me.headers).json
    assert profile["id"] == me.id and profile["email"] == me.email
    assert set(profile) == {"id", "email", "display_name", "ward", "locale", "joined_at",
                            "birth_year"}


def test_cards_show_kind_and_last_four_only(client: FlaskClient, app: Flask) -> None:
    me = resident(client, app)
    linked = link(client, app, me.headers, "6335 0077 8899 0011")
    assert set(linked.json) == {"id", "kind", "last4", "created_at"}
    text = client.get("/v1/me/identifiers", headers=me.headers).get_data(as_text=True)
    assert "63350077" not in text and "0077 8899" not in text
    assert "6335007788990011" not in client.get("/v1/me/export",
                                                headers=me.headers).get_data(as_text=True)


def test_partners_and_analysts_see_no_member_identity(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Laynes")
    charity = make_partner(client, admin, "Crypt", kind="charity")
    offer = make_offer(client, admin, partner["id"], cost_points=10)
    me = resident(client, app, points=30, display_name="Nia", ward="Headingley")
    reward = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                         headers=me.headers).json
    code = client.get(f"/v1/me/rewards/{reward['id']}", headers=me.headers).json["code"]
    client.post("/v1/me/donations", json={"charity_id": charity["id"], "points": 10},
                headers=me.headers)
    identity = (me.id, me.email, "Nia", "Headingley")
    checked = client.get(f"/v1/partner/vouchers/{code}", headers=till(partner))
    redeemed = client.post("/v1/partner/redemptions", json={"code": code},
                           headers=till(partner))
    listed = client.get("/v1/partner/redemptions", headers=till(partner))
    analyst = bearer(staff_token(client, app, "analyst"))
    donations = client.get("/v1/admin/donations", headers=analyst)
    for answer in (checked, redeemed, listed, donations):
        assert answer.status_code in (200, 201), answer.json
        text = answer.get_data(as_text=True)
        for value in identity:
            assert value not in text, (value, text)
