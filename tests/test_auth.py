"""Logging in, through HTTP: one-time codes, refresh tokens, staff passwords and roles,
the create-staff command, and linking cards."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import jwt
import pyotp
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from sqlalchemy import select, update

import rewards.members
from rewards.extensions import db
from rewards.members import otp_address
from rewards.models import Identifier, Member, OtpCode, StaffUser
from rewards.security import issue_token

from .conftest import otp_from_mail
from .helpers import bearer, link, make_staff, member_token, staff_token

OTP_SENT = {"message": "If the address can receive mail, a code is on its way."}
ACTION_TYPE = {"code": "bus_journey", "name": "Bus journey", "category": "travel"}


def assert_error(response: Any, code: int) -> dict[str, Any]:
    assert response.status_code == code, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.json
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    return body


def ask_code(client: FlaskClient, app: Flask, email: str) -> str:
    response = client.post("/v1/auth/otp", json={"email": email})
    assert response.status_code == 202, response.json
    return otp_from_mail(app, email)


def exchange(client: FlaskClient, email: str, code: str) -> Any:
    return client.post("/v1/auth/token", json={"email": email, "code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def claims(app: Flask, token: str) -> dict[str, Any]:
    return jwt.decode(token, app.config["SECRET_KEY"], algorithms=["HS256"])


@contextmanager
def clock_moved(monkeypatch: pytest.MonkeyPatch, delta: timedelta) -> Iterator[None]:
    """The login code's idea of now, moved by `delta` (no sleeping)."""
    real = rewards.members.utcnow
    with monkeypatch.context() as patch:
        patch.setattr(rewards.members, "utcnow", lambda: real() + delta)
        yield


# -- one-time codes -----------------------------------------------------------------


def test_otp_answers_the_same_for_known_and_unknown_addresses(
    client: FlaskClient, app: Flask
) -> None:
    member_token(client, app, "known@example.org")
    known = client.post("/v1/auth/otp", json={"email": "known@example.org"})
    unknown = client.post("/v1/auth/otp", json={"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 202
    assert known.get_data() == unknown.get_data()
    assert known.json == OTP_SENT
    # Both get a code; only the known one has an account so far.
    assert otp_from_mail(app, "nobody@example.org")
    with app.app_context():
        assert db.session.scalars(select(Member.email)).all() == ["known@example.org"]


@pytest.mark.parametrize("email", ["not-an-email", "a@", "", "x" * 250 + "@example.org"])
def test_otp_refuses_a_malformed_address(client: FlaskClient, app: Flask, email: str) -> None:
    body = assert_error(client.post("/v1/auth/otp", json={"email": email}), 422)
    assert list(body["errors"]) == ["email"]
    assert body["errors"]["email"]
    assert app.extensions.get("sent_mail", []) == []


def test_the_stored_code_is_a_keyed_hash(client: FlaskClient, app: Flask) -> None:
    email = "hash@example.org"
    code = ask_code(client, app, email)
    with app.app_context():
        row = db.session.scalars(select(OtpCode)).one()
        stored = row.code_hash
        assert row.email_hash == otp_address(email)  # the address is not kept in clear
        assert email not in row.email_hash
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert code not in stored
    # Not a plain digest someone with the table could brute-force offline ...
    for plain in (code, f"{email}:{code}", f"otp:{email}:{code}"):
        assert stored != hashlib.sha256(plain.encode()).hexdigest()
    # ... but an HMAC under the server's key.
    key = app.config["IDENTIFIER_KEY"].encode()
    assert stored == hmac.new(key, f"otp:{email}:{code}".encode(), hashlib.sha256).hexdigest()


def test_first_login_creates_the_member_and_the_second_finds_it(
    client: FlaskClient, app: Flask
) -> None:
    email = "amira@example.org"
    response = exchange(client, email, ask_code(client, app, email))
    assert response.status_code == 200, response.json
    tokens = response.json
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == app.config["ACCESS_TOKEN_TTL"] == 900
    assert tokens["access_token"] != tokens["refresh_token"]
    access = claims(app, tokens["access_token"])
    assert access["role"] == "member" and access["typ"] == "access"
    assert access["exp"] - access["iat"] == 900
    assert claims(app, tokens["refresh_token"])["typ"] == "refresh"

    me = client.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json["email"] == email
    assert access["sub"] == me.json["id"]

    # Second login, new code, same member (the address is matched whatever its case).
    response = client.post("/v1/auth/otp", json={"email": "Amira@Example.ORG"})
    assert response.status_code == 202
    again = exchange(client, "AMIRA@example.org", otp_from_mail(app, email))
    assert again.status_code == 200, again.json
    me_again = client.get("/v1/me", headers=bearer(again.json["access_token"])).json
    assert me_again["id"] == me.json["id"]
    with app.app_context():
        assert db.session.scalars(select(Member.id)).all() == [uuid.UUID(me.json["id"])]


def test_a_code_works_once(client: FlaskClient, app: Flask) -> None:
    email = "once@example.org"
    code = ask_code(client, app, email)
    assert exchange(client, email, code).status_code == 200
    assert_error(exchange(client, email, code), 401)


def test_a_code_belongs_to_its_address(client: FlaskClient, app: Flask) -> None:
    code = ask_code(client, app, "owner@example.org")
    ask_code(client, app, "thief@example.org")
    assert_error(exchange(client, "thief@example.org", code), 401)


def test_a_code_expires_after_ten_minutes(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = ask_code(client, app, "early@example.org")
    late = ask_code(client, app, "late@example.org")
    with clock_moved(monkeypatch, timedelta(minutes=9, seconds=50)):
        assert exchange(client, "early@example.org", early).status_code == 200
    with clock_moved(monkeypatch, timedelta(minutes=10, seconds=1)):
        body = assert_error(exchange(client, "late@example.org", late), 401)
    assert "expired" in body["message"]
    # Back in the present the code is still dead: it is gone from the row, not the clock.
    with app.app_context():
        db.session.execute(
            update(OtpCode)
            .where(OtpCode.email_hash == otp_address("late@example.org"))
            .values(expires_at=rewards.members.utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert_error(exchange(client, "late@example.org", late), 401)


def test_five_wrong_tries_kill_the_code(client: FlaskClient, app: Flask) -> None:
    email = "guess@example.org"
    code = ask_code(client, app, email)
    for _ in range(app.config["OTP_MAX_ATTEMPTS"]):
        body = assert_error(exchange(client, email, wrong(code)), 401)
        assert body["message"] == "The code is not right."
    assert_error(exchange(client, email, code), 401)
    with app.app_context():
        assert db.session.scalars(select(Member)).all() == []


def test_four_wrong_tries_still_leave_the_right_code_working(
    client: FlaskClient, app: Flask
) -> None:
    email = "clumsy@example.org"
    code = ask_code(client, app, email)
    for _ in range(app.config["OTP_MAX_ATTEMPTS"] - 1):
        assert_error(exchange(client, email, wrong(code)), 401)
    assert exchange(client, email, code).status_code == 200


def test_a_new_code_kills_the_older_one(client: FlaskClient, app: Flask) -> None:
    email = "twice@example.org"
    old = ask_code(client, app, email)
    new = ask_code(client, app, email)
    if old == new:  # one chance in a million: ask again so the codes differ
        new = ask_code(client, app, email)
    assert old != new
    assert_error(exchange(client, email, old), 401)
    assert exchange(client, email, new).status_code == 200


def test_too_many_codes_for_one_address_is_429(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = "spam@example.org"
    limit = app.config["OTP_PER_HOUR"]
    assert limit == 5
    for _ in range(limit):
        assert client.post("/v1/auth/otp", json={"email": email}).status_code == 202
    mailed = len(app.extensions["sent_mail"])
    limited = client.post("/v1/auth/otp", json={"email": email})
    assert_error(limited, 429)
    assert 3500 < int(limited.headers["Retry-After"]) <= 3600
    assert_error(client.post("/v1/auth/otp", json={"email": email.upper()}), 429)
    assert len(app.extensions["sent_mail"]) == mailed
    # Other addresses are not held up, and the limit lifts after an hour.
    assert client.post("/v1/auth/otp", json={"email": "other@example.org"}).status_code == 202
    with clock_moved(monkeypatch, timedelta(hours=1, minutes=1)):
        assert client.post("/v1/auth/otp", json={"email": email}).status_code == 202


# -- refresh ------------------------------------------------------------------------


def test_refresh_gives_a_new_access_token(client: FlaskClient, app: Flask) -> None:
    email = "fresh@example.org"
    tokens = exchange(client, email, ask_code(client, app, email)).json
    response = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200, response.json
    assert response.json["token_type"] == "Bearer"
    assert response.json["access_token"] != tokens["access_token"]
    me = client.get("/v1/me", headers=bearer(response.json["access_token"]))
    assert me.status_code == 200 and me.json["email"] == email


def test_refresh_refuses_access_tokens_and_garbage(client: FlaskClient, app: Flask) -> None:
    email = "sly@example.org"
    tokens = exchange(client, email, ask_code(client, app, email)).json
    for bad in (tokens["access_token"], "garbage", tokens["refresh_token"][:-4] + "AAAA"):
        assert_error(client.post("/v1/auth/refresh", json={"refresh_token": bad}), 401)
    # A staff token is no refresh token either, and a refresh token opens no door.
    assert_error(client.post("/v1/auth/refresh",
                             json={"refresh_token": staff_token(client, app, "admin")}), 401)
    assert_error(client.get("/v1/me", headers=bearer(tokens["refresh_token"])), 401)


def test_refresh_for_an_erased_account_is_401(client: FlaskClient, app: Flask) -> None:
    email = "gone@example.org"
    tokens = exchange(client, email, ask_code(client, app, email)).json
    assert client.delete("/v1/me", headers=bearer(tokens["access_token"])).status_code == 204
    assert_error(client.post("/v1/auth/refresh",
                             json={"refresh_token": tokens["refresh_token"]}), 401)


# -- staff --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "scheme_manager", "reviewer", "analyst"])
def test_staff_login_gives_a_token_with_the_role(
    client: FlaskClient, app: Flask, role: str
) -> None:
    make_staff(app, f"{role}@council.example", role, password="s3cret pass")
    response = client.post("/v1/auth/login",
                           json={"email": f"{role.upper()}@Council.example",
                                 "password": "s3cret pass"})
    assert response.status_code == 200, response.json
    assert response.json["role"] == role
    assert response.json["token_type"] == "Bearer"
    assert response.json["expires_in"] == app.config["STAFF_TOKEN_TTL"]
    token = claims(app, response.json["access_token"])
    assert token["role"] == role
    with app.app_context():
        user = db.session.scalars(select(StaffUser)).one()
        assert token["sub"] == str(user.id)


def test_staff_login_wrong_password_and_unknown_email_look_the_same(
    client: FlaskClient, app: Flask
) -> None:
    make_staff(app, "ops@council.example", "admin", password="right password")
    wrong_password = client.post("/v1/auth/login",
                                 json={"email": "ops@council.example", "password": "wrong"})
    unknown = client.post("/v1/auth/login",
                          json={"email": "who@council.example", "password": "right password"})
    assert assert_error(wrong_password, 401) == assert_error(unknown, 401)
    assert "access_token" not in wrong_password.json


def test_staff_login_checks_a_password_hash_even_for_an_unknown_email(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise the quick answer for an unknown address tells which addresses exist."""
    import rewards.staff as views

    checked: list[str] = []
    real = views.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        checked.append(password)
        return real(pwhash, password)

    monkeypatch.setattr(views, "check_password_hash", counting)
    assert_error(client.post("/v1/auth/login",
                             json={"email": "who@council.example", "password": "guess"}), 401)
    assert checked == ["guess"]


def test_a_disabled_staff_account_cannot_log_in_or_use_its_token(
    client: FlaskClient, app: Flask
) -> None:
    token = staff_token(client, app, "admin")
    with app.app_context():
        db.session.execute(update(StaffUser).values(active=False))
        db.session.commit()
    assert_error(client.get("/v1/admin/action-types", headers=bearer(token)), 401)
    assert_error(client.post("/v1/auth/login", json={"email": "admin@council.example",
                                                     "password": "correct horse"}), 401)


def test_roles_decide_who_may_do_what(client: FlaskClient, app: Flask) -> None:
    analyst = bearer(staff_token(client, app, "analyst"))
    body = assert_error(client.post("/v1/admin/action-types", json=ACTION_TYPE,
                                    headers=analyst), 403)
    assert "scheme_manager" in body["message"]
    # The analyst may read, and the refused write changed nothing.
    listed = client.get("/v1/admin/action-types", headers=analyst)
    assert listed.status_code == 200 and listed.json == []

    resident = bearer(member_token(client, app, "resident@example.org"))
    assert_error(client.post("/v1/admin/action-types", json=ACTION_TYPE, headers=resident), 403)
    assert_error(client.get("/v1/admin/audit-log", headers=resident), 403)
    # ... and staff are not residents.
    assert_error(client.get("/v1/me", headers=analyst), 403)

    assert_error(client.post("/v1/admin/action-types", json=ACTION_TYPE), 401)
    assert_error(client.get("/v1/admin/action-types"), 401)

    manager = bearer(staff_token(client, app, "scheme_manager"))
    made = client.post("/v1/admin/action-types", json=ACTION_TYPE, headers=manager)
    assert made.status_code == 201, made.json
    assert_error(client.get("/v1/admin/audit-log", headers=manager), 403)


def test_tampered_expired_and_odd_tokens_are_401(client: FlaskClient, app: Flask) -> None:
    token = staff_token(client, app, "admin")
    assert client.get("/v1/admin/action-types", headers=bearer(token)).status_code == 200
    with app.app_context():
        user_id = str(db.session.scalars(select(StaffUser.id)).one())
        expired = issue_token(user_id, "admin", ttl=-10)
    header, payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"admin"', b'"admin" ')).decode()
    unsigned = jwt.encode(claims(app, token), key=None, algorithm="none")
    other_key = jwt.encode(claims(app, token), "another-secret-key-that-is-32-bytes-long",
                           algorithm="HS256")
    # Signed with the right key but never expiring: not a token the app issues.
    no_expiry = {k: v for k, v in claims(app, token).items() if k != "exp"}
    forever = jwt.encode(no_expiry, app.config["SECRET_KEY"], algorithm="HS256")
    for bad in (
        expired,
        f"{header}.{forged_payload}.{signature}",
        f"{header}.{payload}.{signature[:-2]}xx",
        unsigned,
        other_key,
        forever,
        "not.a.token",
    ):
        body = assert_error(client.get("/v1/admin/action-types", headers=bearer(bad)), 401)
        assert "invalid or has expired" in body["message"]
    for header_value in (token, f"Basic {token}", "Bearer", "Bearer "):
        assert_error(client.get("/v1/admin/action-types",
                                headers={"Authorization": header_value}), 401)


def _cli(app: Flask, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from rewards.cli import main

    # FlaskGroup marks the process as run from the command line; keep that to this test.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    return CliRunner().invoke(main, list(args), obj=ScriptInfo(create_app=lambda: app))


def test_create_staff_command_makes_a_user_who_can_log_in(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `flask --app rewards` has the same commands as `rewards`.
    assert "create-staff" in app.cli.list_commands(None)  # type: ignore[arg-type]
    result = _cli(app, monkeypatch, "create-staff", "--email", "Chief@Council.example",
                  "--role", "admin", "--password", "a long password")
    assert result.exit_code == 0, result.output
    assert "admin chief@council.example ready" in result.output
    with app.app_context():
        user = db.session.scalars(select(StaffUser)).one()
        assert user.email == "chief@council.example" and user.role == "admin"
        assert "a long password" not in user.password_hash

    # An admin gets a second factor at once: its secret is printed, and login needs a code.
    secret = re.search(r"TOTP secret: ([A-Z2-7]+)", result.output).group(1)
    assert f"secret={secret}" in result.output  # the otpauth:// URI for an app
    no_code = client.post("/v1/auth/login",
                          json={"email": "chief@council.example", "password": "a long password"})
    assert no_code.status_code == 401 and "totp_code" in no_code.json["message"]
    login = client.post("/v1/auth/login",
                        json={"email": "chief@council.example", "password": "a long password",
                              "totp_code": pyotp.TOTP(secret).now()})
    assert login.status_code == 200, login.json
    assert login.json["role"] == "admin"
    made = client.post("/v1/admin/action-types", json=ACTION_TYPE,
                       headers=bearer(login.json["access_token"]))
    assert made.status_code == 201, made.json

    # Running it again resets the password and role; the old token stops working.
    again = _cli(app, monkeypatch, "create-staff", "--email", "chief@council.example",
                 "--role", "analyst", "--password", "another password")
    assert again.exit_code == 0, again.output
    assert_error(client.post("/v1/auth/login", json={"email": "chief@council.example",
                                                     "password": "a long password"}), 401)
    assert_error(client.get("/v1/admin/action-types",
                            headers=bearer(login.json["access_token"])), 401)
    relogin = client.post("/v1/auth/login", json={"email": "chief@council.example",
                                                  "password": "another password"})
    assert relogin.status_code == 200 and relogin.json["role"] == "analyst"


def test_create_staff_command_refuses_bad_input(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = _cli(app, monkeypatch, "create-staff", "--email", "a@council.example",
                 "--role", "admin", "--password", "short")
    assert short.exit_code == 2 and "at least 12" in short.output
    common = _cli(app, monkeypatch, "create-staff", "--email", "a@council.example",
                  "--role", "admin", "--password", "Password123456")
    assert common.exit_code == 2 and "common passwords" in common.output
    bad_role = _cli(app, monkeypatch, "create-staff", "--email", "a@council.example",
                    "--role", "emperor", "--password", "long enough")
    assert bad_role.exit_code == 2
    partner = _cli(app, monkeypatch, "create-staff", "--email", "a@council.example",
                   "--role", "partner", "--password", "long enough")
    assert partner.exit_code == 2 and "--partner-id" in partner.output
    with app.app_context():
        assert db.session.scalars(select(StaffUser)).all() == []


# -- cards --------------------------------------------------------------------------

CARD = {"kind": "travel_card", "number": "6335 0012 3456 7890"}


def test_a_card_is_stored_as_a_keyed_hash_and_last_four(client: FlaskClient, app: Flask) -> None:
    me = bearer(member_token(client, app, "card@example.org"))
    linked = link(client, app, me, CARD["number"])
    assert linked.status_code == 201, linked.json
    assert set(linked.json) == {"id", "kind", "last4", "created_at"}
    assert linked.json["kind"] == "travel_card" and linked.json["last4"] == "7890"

    with app.app_context():
        row = db.session.scalars(select(Identifier)).one()
        values = " ".join(str(getattr(row, c.key)) for c in Identifier.__table__.columns)
    assert "6335001234567890" not in values and "0012 3456" not in values
    assert row.last4 == "7890"
    assert row.number_hash != hashlib.sha256(b"6335001234567890").hexdigest()
    key = app.config["IDENTIFIER_KEY"].encode()
    assert row.number_hash == hmac.new(key, b"card:travel_card:6335001234567890",
                                       hashlib.sha256).hexdigest()

    listed = client.get("/v1/me/identifiers", headers=me)
    assert listed.status_code == 200
    assert listed.json == [linked.json]
    assert "6335" not in listed.get_data(as_text=True)


def test_a_card_linked_by_someone_else_is_409_and_changes_nothing(
    client: FlaskClient, app: Flask
) -> None:
    first = bearer(member_token(client, app, "first@example.org"))
    second = bearer(member_token(client, app, "second@example.org"))
    linked = link(client, app, first, CARD["number"])
    assert linked.status_code == 201
    # The same card written another way is still the same card.
    for number in (CARD["number"], "6335-0012-3456-7890", "6335001234567890"):
        refused = assert_error(link(client, app, second, number), 409)
        assert "registered" not in refused["message"] and "already" not in refused["message"]
    assert_error(link(client, app, first, CARD["number"]), 409)
    assert client.get("/v1/me/identifiers", headers=second).json == []
    assert client.get("/v1/me/identifiers", headers=first).json == [linked.json]
    with app.app_context():
        owner = db.session.scalars(select(Identifier.member_id)).one()
        assert db.session.get(Member, owner).email == "first@example.org"


def test_another_members_card_cannot_be_unlinked(client: FlaskClient, app: Flask) -> None:
    owner = bearer(member_token(client, app, "owner@example.org"))
    other = bearer(member_token(client, app, "other@example.org"))
    card_id = link(client, app, owner, CARD["number"]).json["id"]

    assert_error(client.delete(f"/v1/me/identifiers/{card_id}", headers=other), 404)
    assert_error(client.delete(f"/v1/me/identifiers/{uuid.uuid4()}", headers=owner), 404)
    assert len(client.get("/v1/me/identifiers", headers=owner).json) == 1

    assert client.delete(f"/v1/me/identifiers/{card_id}", headers=owner).status_code == 204
    assert client.get("/v1/me/identifiers", headers=owner).json == []
    assert_error(client.delete(f"/v1/me/identifiers/{card_id}", headers=owner), 404)
    # Once unlinked, the card is free for someone else.
    assert link(client, app, other, CARD["number"]).status_code == 201


def test_card_numbers_are_validated(client: FlaskClient, app: Flask) -> None:
    me = bearer(member_token(client, app, "typo@example.org"))
    body = assert_error(client.post("/v1/me/identifiers",
                                    json={"kind": "travel_card", "number": "12",
                                          "link_code": "12345678"}, headers=me), 422)
    assert list(body["errors"]) == ["number"]
    body = assert_error(client.post("/v1/me/identifiers",
                                    json={"kind": "credit_card", "number": "6335001234567890",
                                          "link_code": "12345678"}, headers=me), 422)
    assert list(body["errors"]) == ["kind"]
    assert client.get("/v1/me/identifiers", headers=me).json == []
