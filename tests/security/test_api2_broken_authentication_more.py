"""OWASP API2:2023 Broken Authentication, tried from outside: every credential a staff
login hands out ends with that login (an event's signed sheet link included), and
forged or borrowed tokens open nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from ..helpers import bearer, iso, staff_token
from ..ways_in import add_type_and_rule

PASSWORD = "correct horse"


def _sheet_url(client: FlaskClient, app: Flask) -> tuple[str, dict[str, str]]:
    manager = bearer(staff_token(client, app, "scheme_manager"))
    admin = bearer(staff_token(client, app, "admin"))
    add_type_and_rule(client, admin, "volunteer_session", "volunteering",
                      "action.attributes.hours * 10")
    now = datetime.now(UTC)
    made = client.post("/v1/admin/events", headers=manager, json={
        "name": "Beach clean", "action_type": "volunteer_session",
        "starts_at": iso(now - timedelta(hours=1)), "ends_at": iso(now + timedelta(hours=2)),
        "attributes": {"hours": 2}})
    assert made.status_code == 201, made.json
    url = made.json["sheet_url"]
    assert client.get(url).status_code == 200
    return url, manager


@pytest.mark.parametrize("ending", ["logout", "logout-everywhere", "password", "deactivate"])
def test_an_event_sheet_link_ends_with_the_login_that_made_it(
    client: FlaskClient, app: Flask, ending: str
) -> None:
    url, manager = _sheet_url(client, app)
    if ending == "password":
        changed = client.post("/v1/auth/password", headers=manager, json={
            "current_password": PASSWORD, "new_password": "a much longer passphrase 77"})
        assert changed.status_code == 204, changed.json
    elif ending == "deactivate":
        admin = bearer(client.post("/v1/auth/login", json={
            "email": "admin@council.example", "password": PASSWORD}).json["access_token"])
        staff = client.get("/v1/admin/staff", headers=admin).json
        manager_id = next(s["id"] for s in staff if s["role"] == "scheme_manager")
        done = client.post(f"/v1/admin/staff/{manager_id}/deactivate", headers=admin)
        assert done.status_code == 200, done.json
    else:
        assert client.post(f"/v1/auth/{ending}", headers=manager).status_code in (200, 204)
    page = client.get(url)
    assert page.status_code == 401
    assert "<svg" not in page.get_data(as_text=True)


def _forge(app: Flask, payload: dict[str, Any], key: str | None = None,
           algorithm: str = "HS256", headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(payload, key or app.config["SECRET_KEY"], algorithm=algorithm,
                      headers=headers)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_forged_and_confused_tokens_are_refused(client: FlaskClient, app: Flask) -> None:
    token = staff_token(client, app, "admin")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert client.get("/v1/admin/staff", headers=bearer(token)).status_code == 200
    header, body, _sig = token.split(".")
    unsigned = jwt.encode(claims, None, algorithm="none")
    attempts = {
        "alg none": unsigned,
        "alg none, signature kept": unsigned.rstrip(".") + "." + _sig,
        "HS512 with the key": _forge(app, claims, algorithm="HS512"),
        "kid pointing elsewhere": _forge(app, claims, key="x" * 40,
                                         headers={"kid": "../../dev/null"}),
        "another key": _forge(app, claims, key="y" * 40),
        "a refresh-type token": _forge(app, {**claims, "typ": "refresh"}),
        "no session": _forge(app, {k: v for k, v in claims.items() if k != "sid"}),
        "role raised": _forge(app, {**claims, "role": "admin", "sub": claims["sub"]}),
    }
    for name, forged in attempts.items():
        answer = client.get("/v1/admin/staff", headers=bearer(forged))
        if name == "role raised":  # the same claims, re-signed: still the real admin
            assert answer.status_code == 200, name
        else:
            assert answer.status_code == 401, (name, answer.json)


def test_wrong_pins_answer_alike_for_a_registered_card_and_an_unknown_one(
    client: FlaskClient, app: Flask
) -> None:
    """Five wrong PINs lock a real card; if an unknown number never locked, the lock
    would tell a till-holder which card numbers belong to members."""
    from rewards.limits import limiter

    from ..helpers import build_scheme
    from ..reward_support import card_member

    scheme = build_scheme(client, app)
    till = {"X-Api-Key": scheme.partner["api_key"]}
    card_member(app, "6335 0099 8877 6655", pin="4729", points=100)

    def tries(number: str) -> list[tuple[int, str]]:
        with app.app_context():
            limiter.reset()  # the per-till limit is not what is tried here
        answers = []
        for _ in range(16):
            answer = client.post("/v1/partner/card-redemptions", headers=till, json={
                "card": {"kind": "leisure_card", "number": number}, "pin": "1111",
                "offer_id": scheme.offer["id"]})
            answers.append((answer.status_code, answer.json["message"]))
        return answers

    registered, unknown = tries("6335 0099 8877 6655"), tries("6335 0099 0000 1111")
    assert registered == unknown
    assert registered[0] == (401, "Card or PIN not recognised.")
    assert registered[5][0] == 403  # locked after five


def test_a_lock_on_an_unknown_card_ends_and_blocks_like_a_real_one(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import update

    from rewards.extensions import db
    from rewards.members import PinRefused, check_card_pin
    from rewards.models.login import LoginThrottle
    from workers.logins import purge_login_records

    with app.app_context():
        for _ in range(5):
            with pytest.raises(PinRefused):
                check_card_pin(db.session, "leisure_card", "6335 0099 0000 2222", "1111")
            db.session.commit()
        with pytest.raises(PinRefused, match="Too many"):
            check_card_pin(db.session, "leisure_card", "6335-0099-0000-2222", "1111")
        db.session.rollback()
        # Fifteen minutes later the next run of five is allowed again.
        db.session.execute(update(LoginThrottle).where(LoginThrottle.key.like("pin:%"))
                           .values(locked_until=None))
        db.session.commit()
        with pytest.raises(PinRefused, match="not recognised"):
            check_card_pin(db.session, "leisure_card", "6335 0099 0000 2222", "1111")
        db.session.commit()
        # Ten wrong PINs more (the locks lifted as time would) and the card is blocked,
        # for good, as a member's is: the nightly clearing keeps it.
        for _ in range(9):
            db.session.execute(update(LoginThrottle).where(LoginThrottle.key.like("pin:%"))
                               .values(locked_until=None))
            with pytest.raises(PinRefused):
                check_card_pin(db.session, "leisure_card", "6335 0099 0000 2222", "1111")
            db.session.commit()
        assert purge_login_records(days=0)["throttles"] == 0
        with pytest.raises(PinRefused, match="blocked"):
            check_card_pin(db.session, "leisure_card", "6335 0099 0000 2222", "1111")
        db.session.rollback()


@pytest.mark.parametrize("variant", [str.upper, str.title, str.swapcase])
def test_guesses_at_once_and_in_other_spellings_share_one_lock(
    client: FlaskClient, app: Flask, variant: Any
) -> None:
    """Twenty wrong passwords sent at the same moment, in spellings of the address that
    mean the same account, are counted on one lock: at most LOGIN_LOCK_AFTER of them are
    checked, and then even the right password is refused."""
    from ..helpers import at_once, make_staff

    make_staff(app, "target@council.example", "analyst")
    from rewards.limits import limiter

    with app.app_context():
        limiter.reset()
    spellings = ["target@council.example", variant("target@council.example")]
    answers = at_once(app, 20, lambda c, i: c.post("/v1/auth/login", json={
        "email": spellings[i % 2], "password": f"guess {i}"},
        environ_base={"REMOTE_ADDR": f"198.51.100.{i}"}).status_code)
    assert answers.count(401) == app.config["LOGIN_LOCK_AFTER"]
    assert answers.count(429) == 20 - app.config["LOGIN_LOCK_AFTER"]
    right = client.post("/v1/auth/login", json={"email": variant("target@council.example"),
                                                "password": PASSWORD})
    assert right.status_code == 429


def test_a_credential_of_one_audience_opens_nothing_of_another(
    client: FlaskClient, app: Flask
) -> None:
    from ..helpers import build_scheme, member_token
    from ..reward_support import partner_user

    scheme = build_scheme(client, app)
    member = bearer(member_token(client, app, "aud@example.org"))
    partner = partner_user(client, app, scheme.partner["id"])
    staff = bearer(staff_token(client, app, "reviewer"))
    till = {"X-Api-Key": scheme.partner["api_key"]}
    source = {"X-Api-Key": scheme.source["api_key"]}
    tries = [
        ("get", "/v1/admin/action-types", member, 403),
        ("get", "/v1/admin/action-types", partner, 403),
        ("post", "/v1/admin/partners", partner, 403),
        ("get", "/v1/admin/staff", staff, 403),
        ("get", "/v1/me", staff, 403),
        ("get", "/v1/me", partner, 403),
        ("get", "/v1/partner/redemptions", member, 403),
        ("get", "/v1/partner/redemptions", staff, 403),
        ("get", "/v1/partner/redemptions", source, 401),
        ("post", "/v1/source/actions", till, 401),
        ("get", "/v1/me", till, 401),
        ("get", "/v1/admin/action-types", till, 401),
    ]
    for method, path, headers, status in tries:
        kwargs = {"json": {}} if method == "post" else {}
        answer = getattr(client, method)(path, headers=headers, **kwargs)
        assert answer.status_code == status, (path, headers, answer.status_code)
