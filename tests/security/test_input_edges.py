"""Input at the edges that a fuzzer finds: each is a clear 4xx that changes nothing, never
a 500. Numbers too large for time arithmetic, dates at the calendar's ends, digits that
are not ASCII, text fields where a file belongs, NUL characters PostgreSQL cannot store,
a reused Idempotency-Key with another reference, and a body that is not JSON (422)."""

from __future__ import annotations

import io
import json

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from rewards.extensions import db
from rewards.models import Member, Redemption
from rewards.security import sign_body

from ..helpers import bearer, build_scheme, iso, staff_token
from ..reward_support import admin_headers, make_offer, make_partner, resident, till
from ..test_partner_pages import _csrf, _partner_user
from ..test_redemptions import _voucher
from ..test_staff_pages import csrf as staff_csrf
from ..ways_in import add_type_and_rule, daytime


def test_a_signature_timestamp_too_large_for_time_arithmetic_is_refused(
        client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app)
    raw = b'{"items": []}'
    for stamp in ("1" + "0" * 400, "-" + "9" * 400, "\u0661\u0667\u0660\u0660"):
        header = f"t={stamp},v1={sign_body(scheme.source['signing_secret'], 0, raw)}"
        for path in ("/v1/source/actions", "/v1/source/actions/revocations"):
            answer = client.post(path, data=raw, content_type="application/json", headers={
                "X-Api-Key": scheme.source["api_key"], "X-Signature": header})
            assert answer.status_code == 401, (stamp[:5], path, answer.json)
            assert "t=<unix seconds>" in answer.json["message"]


def test_dashboard_dates_at_the_calendars_ends_are_refused(client: FlaskClient,
                                                           app: Flask) -> None:
    admin = admin_headers(client, app)
    for query in ("to=0001-01-05", "from=9999-12-30&to=9999-12-31", "from=0001-01-01",
                  "ward=%00", "action_type=a%00b"):
        answer = client.get(f"/v1/admin/dashboard/reach_wards?{query}", headers=admin)
        assert answer.status_code == 422, (query, answer.json)
    assert client.get("/v1/admin/dashboard/reach_wards?from=2026-01-01&to=2026-03-31",
                      headers=admin).status_code == 200


def test_a_form_token_that_is_not_ascii_is_a_refused_form(client: FlaskClient,
                                                          app: Flask) -> None:
    scheme = build_scheme(client, app)
    email = _partner_user(app, scheme.partner["id"])
    client.get("/partner/login")
    page = client.post("/partner/login", data={"csrf": "é", "email": email,
                                               "password": "till password"})
    assert page.status_code == 400
    client.get("/staff/login")
    assert client.post("/staff/login", data={"csrf": "\u0661", "email": "a@b.example",
                                              "password": "x"}).status_code == 400
    # The real token still works afterwards.
    form = client.get("/partner/login")
    assert client.post("/partner/login", data={"csrf": _csrf(form.data), "email": email,
                                               "password": "till password"}).status_code == 302


def test_codes_of_digits_take_ascii_digits_only(client: FlaskClient, app: Flask) -> None:
    token = bearer(staff_token(client, app, "analyst"))
    assert client.post("/v1/auth/totp", headers=token).status_code == 201
    for code in ("\u0660" * 6, "\uff11\uff12\uff13\uff14\uff15\uff16", "123456\n"):
        answer = client.post("/v1/auth/totp/confirm", headers=token, json={"code": code})
        assert answer.status_code == 422, (code, answer.json)
    me = resident(client, app)
    for link_code in ("\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",
                      "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667", "\u00b2" * 8):
        answer = client.post("/v1/me/identifiers", headers=me.headers, json={
            "kind": "travel_card", "number": "6335001234567890", "link_code": link_code})
        assert answer.status_code == 422, (link_code, answer.json)
    assert client.get("/v1/me/identifiers", headers=me.headers).json == []


def test_a_text_field_where_the_photo_belongs_is_refused(client: FlaskClient,
                                                         app: Flask) -> None:
    admin = admin_headers(client, app)
    add_type_and_rule(client, admin, "litter_pick", "climate", "15")
    me = resident(client, app)
    form = {"type": "litter_pick", "occurred_at": iso(daytime(1, 10)),
            "description": "Two bags of litter", "photo": "notafile"}
    answer = client.post("/v1/me/self-reports", data=form, content_type="multipart/form-data",
                         headers=me.headers)
    assert answer.status_code == 422, answer.json
    assert "photo" in json.dumps(answer.json["errors"])
    assert client.get("/v1/me/self-reports", headers=me.headers).json == []
    form["photo"] = (io.BytesIO(b"not an image"), "bag.jpg")
    assert client.post("/v1/me/self-reports", data=form, content_type="multipart/form-data",
                       headers=me.headers).status_code == 422  # a file, but not a photo


def test_a_redemption_key_reused_with_another_reference_is_refused(client: FlaskClient,
                                                                   app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Laynes Espresso")
    offer = make_offer(client, admin, partner["id"], title="Flat white", value_pence=250)
    me = resident(client, app, points=50)
    _, code = _voucher(client, me.headers, offer["id"])
    headers = {**till(partner), "Idempotency-Key": "rk1"}
    first = client.post("/v1/partner/redemptions", headers=headers,
                        json={"code": code, "reference": "till-1"})
    assert first.status_code == 201, first.json
    replay = client.post("/v1/partner/redemptions", headers=headers,
                         json={"code": code, "reference": "till-1"})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/partner/redemptions", headers=headers,
                        json={"code": code, "reference": "till-2"})
    assert other.status_code == 422 and other.json["reason"] == "idempotency_key_reused"
    none = client.post("/v1/partner/redemptions", headers=headers, json={"code": code})
    assert none.status_code == 422
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Redemption)) == 1


def test_nul_characters_are_refused_before_any_lookup(client: FlaskClient, app: Flask) -> None:
    """PostgreSQL cannot take NUL in text: on every database a path, query argument,
    form field or Idempotency-Key with one is refused before a view reads it."""
    admin = admin_headers(client, app)
    for method, path in (("PATCH", "/v1/admin/action-types/bus%00"),
                         ("PUT", "/v1/admin/dashboard/settings/wards/x%00"),
                         ("PUT", "/v1/admin/dashboard/settings/impact/bus%00")):
        answer = client.open(path, method=method, headers=admin, json={"name": "x"})
        assert answer.status_code == 404, (path, answer.json)
    me = resident(client, app, points=50)
    assert client.get("/v1/me/actions?cursor=%00", headers=me.headers).status_code == 422
    keyed = client.post("/v1/me/rewards", json={"offer_id": "x"},
                        headers={**me.headers, "Idempotency-Key": "a\x00b"})
    assert keyed.status_code == 422
    client.get("/staff/login")
    form = client.get("/staff/login")
    page = client.post("/staff/login", data={"csrf": staff_csrf(form.data),
                                             "email": "a\x00@b.example", "password": "x"})
    assert page.status_code == 400


def test_a_body_that_is_not_json_is_422_and_changes_nothing(client: FlaskClient,
                                                            app: Flask) -> None:
    """Read as no body, a change sent as text/plain answered 200 and changed nothing."""
    me = resident(client, app)
    answer = client.patch("/v1/me", data=json.dumps({"display_name": "Zed"}),
                          content_type="text/plain", headers=me.headers)
    assert answer.status_code == 422, answer.json
    assert list(answer.json["errors"]) == ["body"]
    assert client.get("/v1/me", headers=me.headers).json["display_name"] is None
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Laynes Espresso")
    keys = client.post(f"/v1/admin/partners/{partner['id']}/keys", headers=admin,
                       data="label=till-7", content_type="application/x-www-form-urlencoded")
    assert keys.status_code == 422
    # JSON without a body where every field is optional is still fine.
    assert client.post("/v1/auth/logout", headers=me.headers).status_code in (200, 204)
    with app.app_context():
        assert db.session.scalar(select(Member.display_name)) is None


def test_a_whole_number_given_with_a_fraction_is_refused_not_truncated(
    client: FlaskClient, app: Flask
) -> None:
    """overlap_days 1.9 was taken as 1, a cap of 3.5 as 3: silently smaller than asked."""
    scheme = build_scheme(client, app)
    admin = bearer(scheme.admin)
    keys = f"/v1/admin/sources/{scheme.source['id']}/keys"
    refused = client.post(keys, json={"overlap_days": 1.9}, headers=admin)
    assert refused.status_code == 422 and "overlap_days" in refused.json["errors"]
    assert client.post(keys, json={"overlap_days": 2.0}, headers=admin).status_code == 201
