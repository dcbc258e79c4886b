"""OWASP API2:2023 Broken Authentication: server keys nobody else knows, forged tokens,
password guessing (lockout with back-off), the TOTP second factor, the staff password
rule, and sessions that really end (logout, sign out everywhere, refresh-token reuse,
password change, deactivation, the partner page cookie)."""

from __future__ import annotations

import os
import stat
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pyotp
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from sqlalchemy import select, update

from rewards import create_app
from rewards.config import Config
from rewards.extensions import db
from rewards.keys import UnsafeConfiguration, settle_keys
from rewards.members import card_hash
from rewards.models import Identifier, StaffUser, utcnow
from rewards.models.login import LoginSession, LoginThrottle
from rewards.staff import password_problem
from rewards.throttle import lock_seconds

from ..conftest import otp_from_mail
from ..helpers import bearer, build_scheme, link, make_staff, signed_post, staff_token, tap
from ..reward_support import resident
from ..test_flow import _daytime
from ..test_partner_pages import _csrf, _log_in, _partner_user

PUBLISHED = "dev-only-secret-change-me-before-going-live"


def _cli(app: Flask, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from rewards.cli import main

    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    return CliRunner().invoke(main, list(args), obj=ScriptInfo(create_app=lambda: app))


# -- keys ------------------------------------------------------------------------------

def test_development_generates_each_key_once_and_keeps_it_private(tmp_path: Path) -> None:
    config = vars(Config(REWARDS_ENV="development", INSTANCE_DIR=str(tmp_path),
                         SECRET_KEY=None, IDENTIFIER_KEY=None))
    settle_keys(config)
    secret, identifier = config["SECRET_KEY"], config["IDENTIFIER_KEY"]
    assert len(secret) >= 64 and len(identifier) >= 64 and secret != identifier
    assert secret != PUBLISHED
    for name, value in (("secret_key", secret), ("identifier_key", identifier)):
        path = tmp_path / name
        assert path.read_text().strip() == value
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The next start reuses them: tokens and card hashes survive a restart.
    again = vars(Config(REWARDS_ENV="development", INSTANCE_DIR=str(tmp_path),
                        SECRET_KEY=None, IDENTIFIER_KEY=None))
    settle_keys(again)
    assert (again["SECRET_KEY"], again["IDENTIFIER_KEY"]) == (secret, identifier)
    # Another instance folder, other keys.
    other = vars(Config(REWARDS_ENV="development", INSTANCE_DIR=str(tmp_path / "b"),
                        SECRET_KEY=None, IDENTIFIER_KEY=None))
    settle_keys(other)
    assert other["SECRET_KEY"] != secret


GOOD = "x" * 40


@pytest.mark.parametrize(("settings", "named", "why"), [
    ({"SECRET_KEY": None}, "SECRET_KEY", "not set"),
    ({"SECRET_KEY": "too-short-for-hs256"}, "SECRET_KEY", "shorter than 32 bytes"),
    ({"SECRET_KEY": PUBLISHED}, "SECRET_KEY", "published"),
    ({"IDENTIFIER_KEY": None}, "IDENTIFIER_KEY", "not set"),
    ({"IDENTIFIER_KEY": "short"}, "IDENTIFIER_KEY", "shorter than 16 bytes"),
    ({"IDENTIFIER_KEY_PREVIOUS": GOOD + "i"}, "IDENTIFIER_KEY_PREVIOUS", "equals"),
    ({"STAFF_TOTP_REQUIRED": False}, "STAFF_TOTP_REQUIRED", "development only"),
])
def test_outside_development_the_app_refuses_to_start_with_an_unsafe_key(
    tmp_path: Path, settings: dict[str, Any], named: str, why: str
) -> None:
    config = {"REWARDS_ENV": "production", "INSTANCE_DIR": str(tmp_path),
              "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
              "SECRET_KEY": GOOD, "IDENTIFIER_KEY": GOOD + "i", **settings}
    with pytest.raises(UnsafeConfiguration) as refused:
        create_app(config)
    assert named in str(refused.value) and why in str(refused.value)
    assert not (tmp_path / "secret_key").exists()  # nothing generated outside development


def test_identifier_key_never_falls_back_to_the_secret_key(tmp_path: Path) -> None:
    config = vars(Config(REWARDS_ENV="production", SECRET_KEY=GOOD, IDENTIFIER_KEY=None))
    with pytest.raises(UnsafeConfiguration, match="IDENTIFIER_KEY is not set"):
        settle_keys(config)


def test_a_token_signed_with_the_once_published_key_is_refused(
    client: FlaskClient, app: Flask
) -> None:
    """The attack: read an admin's id, sign an admin token with the value from the source."""
    scheme = build_scheme(client, app)
    real = jwt.decode(scheme.admin, options={"verify_signature": False})
    now = int(time.time())
    forged = jwt.encode({**real, "iat": now, "exp": now + 600}, PUBLISHED, algorithm="HS256")
    assert app.config["SECRET_KEY"] != PUBLISHED
    made = client.post("/v1/admin/partners", json={"name": "Forged", "kind": "business"},
                       headers=bearer(forged))
    assert made.status_code == 401 and made.json["code"] == 401


def test_partners_read_no_staff_ids(client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app)
    admin_id = jwt.decode(scheme.admin, options={"verify_signature": False})["sub"]
    till = {"X-Api-Key": scheme.partner["api_key"]}
    proposer = _partner_user(app, scheme.partner["id"], "owner@laynes.example")
    login = client.post("/v1/auth/login", json={"email": proposer, "password": "till password"})
    partner_user = bearer(login.json["access_token"])
    proposed = client.post("/v1/partner/offers", headers=partner_user, json={
        "title": "Cake", "cost_points": 30})
    assert proposed.status_code == 201, proposed.json
    approved = client.post(f"/v1/admin/offers/{proposed.json['id']}/approve", json={},
                           headers=bearer(scheme.admin))
    assert approved.status_code == 200 and approved.json["reviewed_by"] == admin_id
    for headers in (till, partner_user):
        listed = client.get("/v1/partner/offers", headers=headers)
        assert listed.status_code == 200 and len(listed.json) == 2
        assert all("reviewed_by" not in offer for offer in listed.json)
        assert admin_id not in listed.get_data(as_text=True)
    assert "reviewed_by" not in proposed.json


def test_identifier_key_rotation_keeps_cards_and_moves_them_to_the_new_key(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheme = build_scheme(client, app)
    person = resident(client, app)
    cards = ["6335001111222233", "6335004444555566"]
    for number in cards:
        linked = link(client, app, person.headers, number)
        assert linked.status_code == 201, linked.json
    old, new = app.config["IDENTIFIER_KEY"], "rotated-identifier-key-0123456789"
    report = _cli(app, monkeypatch, "identifier-keys")
    assert "2 card(s); not yet on it: 0" in report.output
    monkeypatch.setitem(app.config, "IDENTIFIER_KEY", new)
    monkeypatch.setitem(app.config, "IDENTIFIER_KEY_PREVIOUS", old)
    report = _cli(app, monkeypatch, "identifier-keys")
    assert "0 card(s); not yet on it: 2" in report.output

    # A tap on the first card is still the member's, and moves the card to the new key.
    sent = signed_post(client, scheme.source, {"items": [tap("r1", cards[0], _daytime(1))]})
    assert sent.status_code == 200 and sent.json["results"][0]["status"] == "accepted", sent.json
    with app.app_context():
        hashes = set(db.session.scalars(select(Identifier.number_hash)))
        assert card_hash("travel_card", cards[0], new) in hashes
        assert card_hash("travel_card", cards[0], old) not in hashes
        assert card_hash("travel_card", cards[1], old) in hashes
    report = _cli(app, monkeypatch, "identifier-keys")
    assert "1 card(s); not yet on it: 1" in report.output
    # Someone else linking the second card is refused as before (found under the old key).
    other = resident(client, app)
    clash = link(client, app, other.headers, cards[1])
    assert clash.status_code == 409
    sent = signed_post(client, scheme.source, {"items": [tap("r2", cards[1], _daytime(2))]})
    assert sent.json["results"][0]["status"] == "accepted", sent.json
    report = _cli(app, monkeypatch, "identifier-keys")
    assert "2 card(s); not yet on it: 0" in report.output
    # Once every card is across, the previous key can go; cards still work.
    monkeypatch.setitem(app.config, "IDENTIFIER_KEY_PREVIOUS", None)
    sent = signed_post(client, scheme.source, {"items": [tap("r3", cards[1], _daytime(3))]})
    assert sent.json["results"][0]["status"] == "accepted", sent.json


# -- password guessing -------------------------------------------------------------------

def test_lock_back_off_doubles_up_to_a_ceiling() -> None:
    assert [lock_seconds(n, 5, 60, 3600) for n in (1, 4, 5, 6, 7, 8, 11, 12, 40)] == [
        0, 0, 60, 120, 240, 480, 3600, 3600, 3600]


def _login(client: FlaskClient, email: str, password: str, **extra: Any) -> Any:
    return client.post("/v1/auth/login", json={"email": email, "password": password, **extra})


def _unlock_now(app: Flask) -> None:
    with app.app_context():
        db.session.execute(update(LoginThrottle).values(locked_until=utcnow()
                                                        - timedelta(seconds=1)))
        db.session.commit()


def test_wrong_passwords_lock_the_account_with_back_off_known_or_not(
    client: FlaskClient, app: Flask
) -> None:
    make_staff(app, "ops@council.example", "analyst", "the right password")
    answers = {}
    for email in ("ops@council.example", "nobody@council.example"):
        tries = [_login(client, email, f"guess {n}") for n in range(5)]
        assert [t.status_code for t in tries] == [401] * 5
        assert len({t.json["message"] for t in tries}) == 1
        locked = _login(client, email, "the right password")
        assert locked.status_code == 429, locked.json
        assert 55 <= int(locked.headers["Retry-After"]) <= 60
        answers[email] = (tries[0].json["message"], locked.json["message"])
    # The same words for an account that exists and one that does not.
    assert answers["ops@council.example"] == answers["nobody@council.example"]

    # When the lock ends one more wrong try locks again, for twice as long.
    _unlock_now(app)
    assert _login(client, "ops@council.example", "guess 6").status_code == 401
    again = _login(client, "ops@council.example", "the right password")
    assert again.status_code == 429 and 115 <= int(again.headers["Retry-After"]) <= 120
    # Then the right password works and the count starts again.
    _unlock_now(app)
    assert _login(client, "ops@council.example", "the right password").status_code == 200
    with app.app_context():
        rows = db.session.scalars(select(LoginThrottle)).all()
        assert all("council.example" not in row.key for row in rows)  # digests only
        assert {row.failures for row in rows} == {0, 5}


def test_the_partner_page_login_locks_the_same_way(client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app)
    email = _partner_user(app, scheme.partner["id"])
    for n in range(5):
        assert _log_in(client, email, f"guess {n}").status_code == 401
    refused = _log_in(client, email)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert b"Too many failed logins" in refused.data
    # The API login shares the account's count.
    assert _login(client, email, "till password").status_code == 429
    _unlock_now(app)
    assert _log_in(client, email).status_code == 302


# -- TOTP second factor -----------------------------------------------------------------

@pytest.fixture
def totp_required(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "STAFF_TOTP_REQUIRED", True)


def test_an_admin_must_enrol_totp_and_then_log_in_with_it(
    client: FlaskClient, app: Flask, totp_required: None
) -> None:
    token = staff_token(client, app, "admin")
    # Until enrolled the token can do nothing but enrol.
    blocked = client.get("/v1/admin/action-types", headers=bearer(token))
    assert blocked.status_code == 403 and "/v1/auth/totp" in blocked.json["message"]
    setup = client.post("/v1/auth/totp", headers=bearer(token))
    assert setup.status_code == 201, setup.json
    secret = setup.json["secret"]
    assert setup.json["provisioning_uri"].startswith("otpauth://totp/")
    assert f"secret={secret}" in setup.json["provisioning_uri"]
    totp = pyotp.TOTP(secret)
    wrong = client.post("/v1/auth/totp/confirm", json={"code": "000000"}, headers=bearer(token))
    assert wrong.status_code == 422
    assert client.get("/v1/admin/action-types", headers=bearer(token)).status_code == 403
    now = time.time()
    confirmed = client.post("/v1/auth/totp/confirm", json={"code": totp.at(now)},
                            headers=bearer(token))
    assert confirmed.status_code == 200 and confirmed.json["enabled_at"]
    assert client.get("/v1/admin/action-types", headers=bearer(token)).status_code == 200
    assert client.post("/v1/auth/totp", headers=bearer(token)).status_code == 409

    email, password = "admin@council.example", "correct horse"
    no_code = _login(client, email, password)
    assert no_code.status_code == 401 and "totp_code" in no_code.json["message"]
    assert _login(client, email, password, totp_code="123456").status_code in (401,)
    # The code already used to confirm cannot be used again; the next one can, once.
    assert _login(client, email, password, totp_code=totp.at(now)).status_code == 401
    following = totp.at(now + 30)
    assert _login(client, email, password, totp_code=following).status_code == 200
    assert _login(client, email, password, totp_code=following).status_code == 401


def test_an_unenrolled_managers_token_opens_no_page_either(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ..ways_in import add_type_and_rule

    admin = bearer(staff_token(client, app, "admin"))
    manager = bearer(staff_token(client, app, "scheme_manager"))
    add_type_and_rule(client, admin, "volunteer_session", "volunteering", "10")
    now = time.time()
    event = client.post("/v1/admin/events", headers=manager, json={
        "name": "Beach clean", "action_type": "volunteer_session",
        "starts_at": _iso(now - 3600), "ends_at": _iso(now + 3600)})
    assert event.status_code == 201, event.json
    sheet = f"/staff/events/{event.json['id']}/sheet"
    assert client.get(sheet, headers=manager).status_code == 200
    monkeypatch.setitem(app.config, "STAFF_TOTP_REQUIRED", True)
    assert client.get(sheet, headers=manager).status_code == 401


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _page_login(client: FlaskClient, email: str, password: str, code: str = "") -> Any:
    form = client.get("/staff/login")
    return client.post("/staff/login", data={"email": email, "password": password,
                                             "code": code, "csrf": _csrf(form.data)})


@pytest.mark.parametrize("role", ["admin", "scheme_manager"])
def test_the_staff_pages_open_on_no_password_alone_where_a_second_factor_is_required(
    client: FlaskClient, app: Flask, totp_required: None, role: str
) -> None:
    email, password = f"{role}@council.example", "correct horse battery"
    make_staff(app, email, role, password)
    refused = _page_login(client, email, password)
    assert refused.status_code == 403
    assert b"POST /v1/auth/totp" in refused.data
    for page in ("/staff/", "/staff/open-data.zip"):
        assert client.get(page).status_code == 302  # to the login page, no figures
    # Enrolled through the API, the account logs in to the pages with its code.
    token = client.post("/v1/auth/login", json={"email": email, "password": password}).json[
        "access_token"]
    secret = client.post("/v1/auth/totp", headers=bearer(token)).json["secret"]
    now = time.time()
    assert client.post("/v1/auth/totp/confirm", json={"code": pyotp.TOTP(secret).at(now)},
                       headers=bearer(token)).status_code == 200
    assert _page_login(client, email, password).status_code == 401
    opened = _page_login(client, email, password, pyotp.TOTP(secret).at(now + 30))
    assert opened.status_code == 302
    assert client.get("/staff/").status_code == 200


def test_a_page_session_ends_when_a_second_factor_becomes_required(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_staff(app, "boss@council.example", "admin", "correct horse battery")
    assert _page_login(client, "boss@council.example", "correct horse battery"
                       ).status_code == 302
    assert client.get("/staff/").status_code == 200
    monkeypatch.setitem(app.config, "STAFF_TOTP_REQUIRED", True)
    assert client.get("/staff/").status_code == 302


def test_roles_without_totp_need_no_enrolment(
    client: FlaskClient, app: Flask, totp_required: None
) -> None:
    token = staff_token(client, app, "analyst")
    assert client.get("/v1/admin/action-types", headers=bearer(token)).status_code == 200


# -- the password rule ------------------------------------------------------------------

@pytest.mark.parametrize(("password", "ok"), [
    ("short one", False),
    ("password1234", False),
    ("Password123456!", False),
    ("qwertyuiop123", False),
    ("aaaaaaaaaaaaaaaa", False),
    ("abababababababab", False),
    ("change me please", True),
    ("correct horse battery", True),
])
def test_the_staff_password_rule(password: str, ok: bool) -> None:
    assert (password_problem(password) is None) is ok


def test_changing_a_password_checks_the_rule_and_ends_every_session(
    client: FlaskClient, app: Flask
) -> None:
    make_staff(app, "desk@council.example", "analyst", "old password here")
    first = _login(client, "desk@council.example", "old password here").json["access_token"]
    second = _login(client, "desk@council.example", "old password here").json["access_token"]
    for bad, status in (({"current_password": "nope", "new_password": "a new long one x"}, 401),
                        ({"current_password": "old password here", "new_password": "short"},
                         422),
                        ({"current_password": "old password here",
                          "new_password": "password12345"}, 422)):
        refused = client.post("/v1/auth/password", json=bad, headers=bearer(first))
        assert refused.status_code == status, refused.json
    assert client.get("/v1/admin/action-types", headers=bearer(second)).status_code == 200
    changed = client.post("/v1/auth/password", headers=bearer(first), json={
        "current_password": "old password here", "new_password": "a new long one x"})
    assert changed.status_code == 204
    for token in (first, second):
        assert client.get("/v1/admin/action-types", headers=bearer(token)).status_code == 401
    assert _login(client, "desk@council.example", "old password here").status_code == 401
    assert _login(client, "desk@council.example", "a new long one x").status_code == 200


# -- sessions ---------------------------------------------------------------------------

def _member_login(client: FlaskClient, app: Flask, email: str) -> dict[str, Any]:
    assert client.post("/v1/auth/otp", json={"email": email}).status_code == 202
    tokens = client.post("/v1/auth/token", json={"email": email,
                                                 "code": otp_from_mail(app, email)})
    assert tokens.status_code == 200, tokens.json
    return tokens.json


def _me(client: FlaskClient, access: str) -> int:
    return client.get("/v1/me", headers=bearer(access)).status_code


def _refresh(client: FlaskClient, token: str) -> Any:
    return client.post("/v1/auth/refresh", json={"refresh_token": token})


def test_refresh_tokens_rotate_and_a_reused_one_ends_the_whole_login(
    client: FlaskClient, app: Flask
) -> None:
    first = _member_login(client, app, "amira@example.org")
    second = _refresh(client, first["refresh_token"])
    assert second.status_code == 200
    assert second.json["refresh_token"] != first["refresh_token"]
    third = _refresh(client, second.json["refresh_token"])
    assert third.status_code == 200 and _me(client, third.json["access_token"]) == 200
    # The first refresh token comes back (a thief's copy): the login ends for everyone.
    reused = _refresh(client, first["refresh_token"])
    assert reused.status_code == 401 and reused.json["code"] == 401
    assert _refresh(client, third.json["refresh_token"]).status_code == 401
    for tokens in (first, second.json, third.json):
        assert _me(client, tokens["access_token"]) == 401
    with app.app_context():
        row = db.session.scalars(select(LoginSession)).one()
        assert row.revoked_reason == "refresh_reuse"


def test_logout_ends_this_login_and_sign_out_everywhere_ends_them_all(
    client: FlaskClient, app: Flask
) -> None:
    phone = _member_login(client, app, "amira@example.org")
    laptop = _member_login(client, app, "amira@example.org")
    tablet = _member_login(client, app, "amira@example.org")
    assert client.post("/v1/auth/logout", headers=bearer(phone["access_token"])).status_code == 204
    assert _me(client, phone["access_token"]) == 401
    assert _refresh(client, phone["refresh_token"]).status_code == 401
    assert _me(client, laptop["access_token"]) == 200
    everywhere = client.post("/v1/auth/logout-everywhere",
                             headers=bearer(laptop["access_token"]))
    assert everywhere.status_code == 200 and everywhere.json == {"sessions_ended": 2}
    for tokens in (laptop, tablet):
        assert _me(client, tokens["access_token"]) == 401
        assert _refresh(client, tokens["refresh_token"]).status_code == 401
    # Staff too.
    token = staff_token(client, app, "reviewer")
    assert client.get("/v1/admin/reviews", headers=bearer(token)).status_code == 200
    assert client.post("/v1/auth/logout", headers=bearer(token)).status_code == 204
    assert client.get("/v1/admin/reviews", headers=bearer(token)).status_code == 401


def test_deactivating_or_resetting_a_staff_user_ends_their_tokens(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = staff_token(client, app, "analyst")
    assert client.get("/v1/admin/action-types", headers=bearer(token)).status_code == 200
    done = _cli(app, monkeypatch, "staff", "deactivate", "analyst@council.example")
    assert done.exit_code == 0, done.output
    assert client.get("/v1/admin/action-types", headers=bearer(token)).status_code == 401
    assert _login(client, "analyst@council.example", "correct horse").status_code == 401
    with app.app_context():
        user = db.session.scalars(select(StaffUser)).one()
        row = db.session.scalars(select(LoginSession)).one()
        assert (user.active, row.revoked_reason) == (False, "deactivated")


def test_the_partner_page_cookie_is_worthless_after_logout(
    client: FlaskClient, app: Flask
) -> None:
    scheme = build_scheme(client, app)
    email = _partner_user(app, scheme.partner["id"])
    assert _log_in(client, email).status_code == 302
    page = client.get("/partner/redeem")
    assert page.status_code == 200
    cookie = client.get_cookie("session")
    assert cookie is not None and email not in cookie.value
    out = client.post("/partner/logout", data={"csrf": _csrf(page.data)})
    assert out.status_code == 302
    # Someone who copied the cookie before the logout gets nothing with it.
    client.set_cookie("session", cookie.value)
    assert client.get("/partner/redeem").status_code == 302
    with app.app_context():
        row = db.session.scalars(select(LoginSession)
                                 .where(LoginSession.kind == "partner_page")).one()
        assert row.revoked_reason == "logout"


def test_sign_out_everywhere_ends_a_partner_users_page_sessions(
    client: FlaskClient, app: Flask
) -> None:
    scheme = build_scheme(client, app)
    email = _partner_user(app, scheme.partner["id"])
    page_client = app.test_client()
    assert _log_in(page_client, email).status_code == 302
    assert page_client.get("/partner/redeem").status_code == 200
    token = _login(client, email, "till password").json["access_token"]
    ended = client.post("/v1/auth/logout-everywhere", headers=bearer(token))
    assert ended.json == {"sessions_ended": 2}
    assert page_client.get("/partner/redeem").status_code == 302


def test_tokens_without_a_session_are_refused(client: FlaskClient, app: Flask) -> None:
    """A token that names no login row (or another account's) is not one we issued."""
    from rewards.security import issue_token

    person = resident(client, app)
    with app.app_context():
        bare = issue_token(person.id, "member", 600)
        stranger = issue_token(person.id, "member", 600, sid=str(uuid.uuid4()))
    for token in (bare, stranger):
        assert _me(client, token) == 401
    assert os.environ.get("SECRET_KEY") != PUBLISHED


def test_a_missing_or_wrong_code_answers_like_a_wrong_password(
    client: FlaskClient, app: Flask
) -> None:
    """The answer must not tell a guesser that the password was right."""
    from rewards.staff import enrol_now

    make_staff(app, "boss@council.example", "admin")
    with app.app_context():
        user = db.session.scalars(select(StaffUser)).one()
        secret, _uri = enrol_now(user)
        db.session.commit()
    wrong_password = client.post("/v1/auth/login", json={
        "email": "boss@council.example", "password": "not the password"})
    no_code = client.post("/v1/auth/login", json={
        "email": "boss@council.example", "password": "correct horse"})
    wrong_code = client.post("/v1/auth/login", json={
        "email": "boss@council.example", "password": "correct horse", "totp_code": "000000"})
    answers = [(r.status_code, r.json["message"], r.json["reason"])
               for r in (wrong_password, no_code, wrong_code)]
    assert len(set(answers)) == 1 and answers[0][0] == 401, answers
    with app.app_context():  # each counted towards the lock
        assert db.session.scalars(select(LoginThrottle)).one().failures == 3
    right = client.post("/v1/auth/login", json={
        "email": "boss@council.example", "password": "correct horse",
        "totp_code": pyotp.TOTP(secret).now()})
    assert right.status_code == 200, right.json
