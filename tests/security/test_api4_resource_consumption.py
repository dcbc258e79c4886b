"""OWASP API4:2023 Unrestricted Resource Consumption: per-client rate limits on every
way to guess or to spend (429 in the project's error shape, with Retry-After and
RateLimit-* headers), the client's address behind a trusted proxy, per-address and
per-member limits that stay exact under concurrent requests, and PIN guessing that
escalates to a block only a desk lifts."""

from __future__ import annotations

import io
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from rewards.extensions import db
from rewards.limits import LIMITS, client_key, storage_uri, trust_proxies
from rewards.members import PinRefused, check_card_pin, otp_address
from rewards.models import AuditEntry, Member, OtpCode, utcnow
from rewards.models.review import SelfReport

from ..helpers import at_once, bearer, build_scheme, iso, member_token, staff_token
from ..reward_support import card_member, resident
from ..test_partner_pages import _check, _csrf, _log_in, _partner_user
from ..ways_in import add_type_and_rule, daytime

CARD = "6335 0099 8877 6655"


def test_every_limited_endpoint_exists(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert set(LIMITS) <= endpoints
    for setting, _methods in LIMITS.values():
        assert app.config[setting]  # a default for each


@pytest.fixture
def lowered(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    def lower(setting: str, value: str = "2 per minute") -> None:
        monkeypatch.setitem(app.config, setting, value)

    return lower


def _assert_429(response: Any, limit: int) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)[:300]
    if response.is_json:
        body = response.json
        assert body["code"] == 429 and body["status"] == "Too Many Requests"
        assert "Retry-After" in body["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) > 0


def test_staff_login_is_limited_per_client_with_headers(
    client: FlaskClient, app: Flask, lowered: Callable[..., None]
) -> None:
    lowered("RATE_LIMIT_LOGIN", "3 per minute")
    answers = [client.post("/v1/auth/login", json={"email": f"x{n}@council.example",
                                                   "password": "guess"}) for n in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert answers[0].headers["RateLimit-Remaining"] == "2"
    _assert_429(answers[3], 3)
    # Another client is not held back by the first one's count.
    other = client.post("/v1/auth/login", json={"email": "y@council.example", "password": "g"},
                        environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert other.status_code == 401


def _requests(client: FlaskClient, app: Flask) -> dict[str, tuple[str, Callable[[], Any]]]:
    """For each limited way in: its setting and one request to it."""
    scheme = build_scheme(client, app)
    me = bearer(member_token(client, app, "amira@example.org"))
    till = {"X-Api-Key": scheme.partner["api_key"]}
    email = _partner_user(app, scheme.partner["id"])
    analyst = bearer(staff_token(client, app, "analyst"))
    form = client.get("/partner/login")
    csrf = _csrf(form.data)
    return {
        "otp": ("RATE_LIMIT_OTP", lambda: client.post(
            "/v1/auth/otp", json={"email": "someone@example.org"})),
        "code check": ("RATE_LIMIT_CODE_CHECK", lambda: client.post(
            "/v1/auth/token", json={"email": "someone@example.org", "code": "000000"})),
        "refresh": ("RATE_LIMIT_REFRESH", lambda: client.post(
            "/v1/auth/refresh", json={"refresh_token": "nope"})),
        "link card": ("RATE_LIMIT_LINK_CARD", lambda: client.post(
            "/v1/me/identifiers", json={"kind": "travel_card", "number": "12"}, headers=me)),
        "event claim": ("RATE_LIMIT_CLAIM", lambda: client.post(
            "/v1/me/claims", json={"code": "ABCD-EFGH-JKMN"}, headers=me)),
        "reward claim": ("RATE_LIMIT_CLAIM", lambda: client.post(
            "/v1/me/rewards", json={"offer_id": scheme.offer["id"]}, headers=me)),
        "self-report": ("RATE_LIMIT_SELF_REPORT", lambda: client.post(
            "/v1/me/self-reports", data={"type": "nope"}, content_type="multipart/form-data",
            headers=me)),
        "voucher check": ("RATE_LIMIT_REDEEM", lambda: client.get(
            "/v1/partner/vouchers/NOPE-NOPE", headers=till)),
        "redemption": ("RATE_LIMIT_REDEEM", lambda: client.post(
            "/v1/partner/redemptions", json={"code": "NOPE-NOPE"}, headers=till)),
        "card and PIN": ("RATE_LIMIT_PIN", lambda: client.post(
            "/v1/partner/card-redemptions", headers=till, json={
                "card": {"kind": "leisure_card", "number": CARD}, "pin": "1111",
                "offer_id": scheme.offer["id"]})),
        "partner page login": ("RATE_LIMIT_LOGIN", lambda: client.post(
            "/partner/login", data={"email": email, "password": "x", "csrf": csrf})),
        "email change": ("RATE_LIMIT_EMAIL_CHANGE", lambda: client.post(
            "/v1/me/email", json={"email": "someone.else@example.org"}, headers=me)),
        "password change": ("RATE_LIMIT_LOGIN", lambda: client.post(
            "/v1/auth/password", headers=analyst,
            json={"current_password": "a guess", "new_password": "a new long passphrase"})),
    }


WAYS = ["otp", "code check", "refresh", "link card", "event claim", "reward claim",
        "self-report", "voucher check", "redemption", "card and PIN", "partner page login",
        "email change", "password change"]


@pytest.mark.parametrize("way", WAYS)
def test_each_way_to_guess_or_spend_is_rate_limited(
    client: FlaskClient, app: Flask, lowered: Callable[..., None], way: str
) -> None:
    setting, send = _requests(client, app)[way]
    lowered(setting, "2 per minute")
    from rewards.limits import limiter

    with app.app_context():
        limiter.reset()  # the set-up's own requests do not count
    first, second, third = send(), send(), send()
    assert first.status_code != 429 and second.status_code != 429
    _assert_429(third, 2)


def test_the_partner_pages_check_form_is_limited_like_redeeming(
    client: FlaskClient, app: Flask, lowered: Callable[..., None]
) -> None:
    scheme = build_scheme(client, app)
    assert _log_in(client, _partner_user(app, scheme.partner["id"])).status_code == 302
    lowered("RATE_LIMIT_REDEEM", "2 per minute")
    from rewards.limits import limiter

    with app.app_context():
        limiter.reset()
    answers = [_check(client, "NOPE-NOPE") for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert answers[2].status_code == 429


def test_a_till_key_is_counted_as_the_key_whatever_token_comes_with_it(
    client: FlaskClient, app: Flask, lowered: Callable[..., None]
) -> None:
    """partner_required reads the key before a bearer token, and so does the limiter:
    residents' tokens (free to make) sent beside the key do not give it fresh counts."""
    scheme = build_scheme(client, app)
    till = {"X-Api-Key": scheme.partner["api_key"]}
    residents = [member_token(client, app, f"r{n}@example.org") for n in range(3)]
    lowered("RATE_LIMIT_REDEEM", "2 per minute")
    from rewards.limits import limiter

    with app.app_context():
        limiter.reset()
    answers = [client.get("/v1/partner/vouchers/NOPE-NOPE", headers={**till, **bearer(token)})
               for token in residents]
    assert [a.status_code for a in answers] == [404, 404, 429]
    with app.test_request_context("/v1/partner/redemptions", method="POST",
                                  headers={**till, **bearer(residents[0])}):
        with_token = client_key()
    with app.test_request_context("/v1/partner/redemptions", method="POST", headers=till):
        alone = client_key()
    assert with_token == alone and alone.startswith("key:")


def test_a_password_change_is_refused_while_the_account_is_locked(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stolen token is not a way around the login lockout: wrong current passwords
    lock the account as wrong logins do, and a locked account cannot change its
    password even with the right one."""
    from werkzeug.security import check_password_hash

    from rewards.models import StaffUser

    monkeypatch.setitem(app.config, "LOGIN_LOCK_AFTER", 3)
    token = bearer(staff_token(client, app, "analyst"))
    wrong = [client.post("/v1/auth/password", headers=token, json={
        "current_password": f"guess {n}", "new_password": "a new long passphrase"})
        for n in range(3)]
    assert [a.status_code for a in wrong] == [401, 401, 401]
    right = client.post("/v1/auth/password", headers=token, json={
        "current_password": "correct horse", "new_password": "a new long passphrase"})
    assert right.status_code == 429, right.json
    assert right.json["reason"] == "account_locked"
    assert int(right.headers["Retry-After"]) >= 1
    with app.app_context():
        user = db.session.scalar(select(StaffUser).where(
            StaffUser.email == "analyst@council.example"))
        assert check_password_hash(user.password_hash, "correct horse")
    login = client.post("/v1/auth/login", json={"email": "analyst@council.example",
                                                "password": "correct horse"})
    assert login.status_code == 429


def test_counters_are_shared_in_redis_when_there_is_one(app: Flask) -> None:
    assert storage_uri({"REDIS_URL": "redis://cache:6379/0"}) == "redis://cache:6379/0"
    assert storage_uri({"REDIS_URL": None}) == "memory://"
    assert app.config["RATELIMIT_STORAGE_URI"] == "memory://"  # the suite runs without


def test_behind_a_trusted_proxy_the_client_is_the_forwarded_address() -> None:
    def served(proxies: int) -> str:
        tiny = Flask("tiny")
        tiny.config["TRUSTED_PROXIES"] = proxies
        trust_proxies(tiny)
        tiny.add_url_rule("/", "who", lambda: client_key())
        return tiny.test_client().get(
            "/", headers={"X-Forwarded-For": "203.0.113.9"},
            environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_data(as_text=True)

    assert served(0) == "addr:10.0.0.2"  # with no proxy trusted the header is ignored
    assert served(1) == "addr:203.0.113.9"


def test_bearer_callers_are_counted_per_account(client: FlaskClient, app: Flask) -> None:
    one = member_token(client, app, "one@example.org")
    with app.test_request_context("/v1/me/claims", method="POST", headers=bearer(one)):
        first = client_key()
    with app.test_request_context("/v1/me/claims", method="POST",
                                  headers={"Authorization": "Bearer forged.token.here"}):
        forged = client_key()
    member_id = client.get("/v1/me", headers=bearer(one)).json["id"]
    assert first == f"member:{member_id}"
    assert forged.startswith("addr:")  # a token that does not verify names nobody


# -- limits exact under concurrency -------------------------------------------------------

def test_one_time_codes_for_one_address_stop_at_the_limit_under_concurrency(
    client: FlaskClient, app: Flask, lowered: Callable[..., None]
) -> None:
    lowered("RATE_LIMIT_OTP", "1000 per minute")  # the per-address limit is under test
    email = "busy@example.org"
    answers = at_once(app, 30, lambda own, i: own.post("/v1/auth/otp", json={"email": email})
                      .status_code)
    limit = app.config["OTP_PER_HOUR"]
    assert Counter(answers) == {202: limit, 429: 30 - limit}
    mails = [m for m in app.extensions.get("sent_mail", []) if m["To"] == email]
    assert len(mails) == limit
    with app.app_context():
        assert db.session.scalar(select(func.count(OtpCode.id))
                                 .where(OtpCode.email_hash == otp_address(email))) == limit


def test_self_reports_stop_at_the_daily_limit_under_concurrency(
    client: FlaskClient, app: Flask, lowered: Callable[..., None]
) -> None:
    lowered("RATE_LIMIT_SELF_REPORT", "1000 per minute")
    admin = bearer(staff_token(client, app, "admin"))
    add_type_and_rule(client, admin, "litter_pick", "climate", "15", caps={"per_day": 1})
    person = resident(client, app)

    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(picture, "JPEG")

    def report(own: FlaskClient, index: int) -> int:
        data = {"type": "litter_pick", "occurred_at": iso(daytime(1, 10)),
                "description": f"Litter pick number {index}",
                "photo": (io.BytesIO(picture.getvalue()), "bag.jpg")}
        return own.post("/v1/me/self-reports", data=data, content_type="multipart/form-data",
                        headers=person.headers).status_code

    answers = at_once(app, 30, report)
    limit = app.config["SELF_REPORTS_PER_DAY"]
    assert Counter(answers) == {202: limit, 429: 30 - limit}
    with app.app_context():
        assert db.session.scalar(select(func.count(SelfReport.id))) == limit


# -- PIN guessing ---------------------------------------------------------------------------

def _guess(app: Flask, pin: str) -> str:
    with app.app_context():
        try:
            check_card_pin(db.session, "leisure_card", CARD, pin)
            outcome = "ok"
        except PinRefused as refused:
            outcome = refused.message
        db.session.commit()
        return outcome


def _lock_ends(app: Flask, member_id: str) -> Member:
    with app.app_context():
        member = db.session.get(Member, uuid.UUID(member_id))
        before = member.pin_locked_until
        db.session.execute(update(Member).values(pin_locked_until=utcnow()
                                                 - timedelta(seconds=1)))
        db.session.commit()
        member.pin_locked_until = before
        return member


def test_pin_lockouts_double_then_block_until_a_desk_unlocks(
    client: FlaskClient, app: Flask
) -> None:
    member_id = card_member(app, CARD, pin="4729")
    wrong = "Card or PIN not recognised."
    lengths = []
    for _run in range(2):
        began = utcnow()
        assert [_guess(app, "1111") for _ in range(5)] == [wrong] * 5
        assert _guess(app, "4729").startswith("Too many wrong PINs")  # locked: even the PIN
        lengths.append(_lock_ends(app, member_id).pin_locked_until - began)
    # 15 minutes, then 30: each lock doubles.
    assert timedelta(minutes=14) < lengths[0] < timedelta(minutes=16)
    assert timedelta(minutes=29) < lengths[1] < timedelta(minutes=31)
    assert [_guess(app, "1111") for _ in range(5)] == [wrong] * 5
    # The third run blocks the card: time does not lift it, the right PIN is refused.
    _lock_ends(app, member_id)
    blocked = _guess(app, "4729")
    assert "blocked" in blocked and "council desk" in blocked
    with app.app_context():
        row = db.session.get(Member, uuid.UUID(member_id))
        assert (row.pin_locks, row.pin_blocked_at is not None) == (3, True)

    # A desk unlocks it (audited) and the member's own PIN works again.
    desk = bearer(staff_token(client, app, "desk"))
    unlocked = client.post(f"/v1/admin/members/{member_id}/pin-unlock", headers=desk)
    assert unlocked.status_code == 200, unlocked.json
    assert (unlocked.json["pin_locks"], unlocked.json["pin_blocked_at"]) == (0, None)
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry)
                                   .where(AuditEntry.action == "unlock_pin")).one()
        assert entry.target_id == member_id and entry.details["pin_locks"] == 3
        assert entry.actor_role == "desk"
    assert _guess(app, "4729") == "ok"
    # Residents and partners cannot unlock.
    till = bearer(member_token(client, app, "someone@example.org"))
    assert client.post(f"/v1/admin/members/{member_id}/pin-unlock",
                       headers=till).status_code == 403
