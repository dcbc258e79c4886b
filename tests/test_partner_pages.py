"""The partner's redemption page, used as a person at a till would use it."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from rewards.extensions import db
from rewards.models import Redemption, Reward, StaffUser, utcnow

from .helpers import bearer, build_scheme, link, member_token, signed_post, tap
from .test_flow import _daytime


def _csrf(page: bytes) -> str:
    match = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1).decode()


def _partner_user(app: Flask, partner_id: str, email: str = "till@laynes.example") -> str:
    import uuid

    with app.app_context():
        db.session.add(StaffUser(email=email, role="partner", partner_id=uuid.UUID(partner_id),
                                 password_hash=generate_password_hash("till password")))
        db.session.commit()
    return email


def _log_in(client: FlaskClient, email: str, password: str = "till password"):
    form = client.get("/partner/login")
    assert form.status_code == 200
    return client.post("/partner/login", data={"email": email, "password": password,
                                               "csrf": _csrf(form.data)})


def _check(client: FlaskClient, code: str):
    """What a till sees after typing `code` into the check form (a POST: no code in URLs)."""
    form = client.get("/partner/redeem")
    return client.post("/partner/check", data={"code": code, "csrf": _csrf(form.data)})


def _voucher(client: FlaskClient, app: Flask) -> tuple[object, str]:
    scheme = build_scheme(client, app, cost_points=10)
    me = bearer(member_token(client, app, "nia@example.org"))
    link(client, app, me, "5555666677778888")
    signed_post(client, scheme.source, {"items": [tap("p1", "5555666677778888", _daytime(1))]})
    reward = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]}, headers=me)
    code = client.get(f"/v1/me/rewards/{reward.json['id']}", headers=me).json["code"]
    assert code
    return scheme, code


def test_pages_need_a_partner_login(client: FlaskClient, app: Flask) -> None:
    page = client.get("/partner/redeem")
    assert page.status_code == 302
    assert page.headers["Location"].endswith("/partner/login")


def test_wrong_password_and_staff_accounts_are_refused(client: FlaskClient, app: Flask) -> None:
    scheme, _ = _voucher(client, app)
    email = _partner_user(app, scheme.partner["id"])
    assert _log_in(client, email, "wrong").status_code == 401
    # The council's admin (a staff user, not a partner's) cannot use the till page.
    assert _log_in(client, "admin@council.example", "correct horse").status_code == 401
    assert client.get("/partner/redeem").status_code == 302


def test_check_then_redeem_then_already_used(client: FlaskClient, app: Flask) -> None:
    scheme, code = _voucher(client, app)
    email = _partner_user(app, scheme.partner["id"])
    assert _log_in(client, email).status_code == 302

    check = _check(client, code.lower())
    assert check.status_code == 200
    assert b'id="verdict"' in check.data and b"VALID" in check.data
    assert b"Flat white" in check.data
    with app.app_context():
        # Checking redeems nothing.
        assert db.session.scalars(select(Reward)).one().status == "issued"

    done = client.post("/partner/redeem", data={"code": code, "csrf": _csrf(check.data)})
    assert done.status_code == 201
    assert b"REDEEMED" in done.data
    with app.app_context():
        assert db.session.scalars(select(Reward)).one().status == "redeemed"
        assert len(db.session.scalars(select(Redemption)).all()) == 1

    again = client.post("/partner/redeem", data={"code": code, "csrf": _csrf(check.data)})
    assert again.status_code == 409
    assert b"ALREADY USED" in again.data
    with app.app_context():
        assert len(db.session.scalars(select(Redemption)).all()) == 1


def test_expired_unknown_and_other_partners_codes(client: FlaskClient, app: Flask) -> None:
    scheme, code = _voucher(client, app)
    other = client.post("/v1/admin/partners", json={"name": "Elsewhere", "kind": "business"},
                        headers=bearer(scheme.admin)).json
    other_email = _partner_user(app, other["id"], "till@elsewhere.example")
    assert _log_in(client, other_email).status_code == 302
    page = _check(client, code)
    assert b"NOT FOUND" in page.data and b"Flat white" not in page.data
    refused = client.post("/partner/redeem", data={"code": code, "csrf": _csrf(page.data)})
    assert refused.status_code == 404
    assert _check(client, "NOSUCHCODE").data.count(b"NOT FOUND") == 1

    assert client.post("/partner/logout", data={"csrf": _csrf(page.data)}).status_code == 302
    assert client.get("/partner/redeem").status_code == 302
    owner_email = _partner_user(app, scheme.partner["id"])
    assert _log_in(client, owner_email).status_code == 302
    with app.app_context():
        reward = db.session.scalars(select(Reward)).one()
        reward.expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    page = _check(client, code)
    assert b"EXPIRED" in page.data
    gone = client.post("/partner/redeem", data={"code": code, "csrf": _csrf(page.data)})
    assert gone.status_code == 410
    with app.app_context():
        assert db.session.scalars(select(Reward)).one().status == "issued"


def test_a_post_without_the_form_token_changes_nothing(client: FlaskClient, app: Flask) -> None:
    scheme, code = _voucher(client, app)
    assert _log_in(client, _partner_user(app, scheme.partner["id"])).status_code == 302
    forged = client.post("/partner/redeem", data={"code": code, "csrf": "forged"})
    assert forged.status_code == 400
    with app.app_context():
        assert db.session.scalars(select(Reward)).one().status == "issued"


def test_no_page_a_till_sees_is_kept_by_a_cache(client: FlaskClient, app: Flask) -> None:
    # A shared till's browser: after logging out, Back must not bring up the vouchers
    # checked or redeemed (the pages answer by cookie, which the API's rule for
    # credentialed answers does not see).
    scheme, code = _voucher(client, app)
    login = client.get("/partner/login")
    assert login.headers.get("Cache-Control") == "no-store"
    assert _log_in(client, _partner_user(app, scheme.partner["id"])).status_code == 302
    checked = _check(client, code)
    assert checked.status_code == 200 and code.encode() in checked.data
    for answer in (checked, client.get("/partner/redeem"), client.get("/partner/card")):
        assert answer.headers.get("Cache-Control") == "no-store", answer.request.path
        assert "Cookie" in answer.headers.get("Vary", "")
