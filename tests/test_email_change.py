"""A resident changes their email address: nothing changes until the new address is
confirmed with the code mailed to it; the old address is told."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

import rewards.models
from rewards.extensions import db
from rewards.members import otp_address
from rewards.models import OtpCode

from .reward_support import resident


def _mailed_token(app: Flask, to: str) -> str:
    message = [m for m in app.extensions["sent_mail"] if m["To"] == to][-1]
    return message.get_content().split("\n\n")[1].strip()


def test_the_new_address_is_confirmed_before_it_is_used(client: FlaskClient,
                                                        app: Flask) -> None:
    member = resident(client, app)
    other = resident(client, app)
    asked = client.post("/v1/me/email", json={"email": "New.Address@Example.org"},
                        headers=member.headers)
    assert asked.status_code == 202, asked.json
    assert client.get("/v1/me", headers=member.headers).json["email"] == member.email
    token = _mailed_token(app, "new.address@example.org")

    wrong_member = client.post("/v1/me/email/confirm", json={"token": token},
                               headers=other.headers)
    assert (wrong_member.status_code, wrong_member.json["reason"]) == (422, "invalid_token")
    forged = client.post("/v1/me/email/confirm", json={"token": token[:-3] + "abc"},
                         headers=member.headers)
    assert forged.status_code == 422

    confirmed = client.post("/v1/me/email/confirm", json={"token": token},
                            headers=member.headers)
    assert confirmed.status_code == 200, confirmed.json
    assert confirmed.json["email"] == "new.address@example.org"
    told = [m for m in app.extensions["sent_mail"] if m["To"] == member.email][-1]
    assert "new.address@example.org" in told.get_content()
    again = client.post("/v1/me/email/confirm", json={"token": token}, headers=member.headers)
    assert again.status_code == 422  # bound to the address the account had then

    # Another account's address: the same answer as any other (it does not tell who is a
    # member), and one message either way (so no difference in time): the holder is told
    # someone tried, with no code that could move their address.
    mailed = len(app.extensions["sent_mail"])
    taken = client.post("/v1/me/email", json={"email": "new.address@example.org"},
                        headers=other.headers)
    free = client.post("/v1/me/email", json={"email": "nobody.yet@example.org"},
                       headers=other.headers)
    assert taken.status_code == free.status_code == 202
    assert taken.json == free.json
    sent = app.extensions["sent_mail"][mailed:]
    assert [m["To"] for m in sent] == ["new.address@example.org", "nobody.yet@example.org"]
    told = sent[0].get_content()
    assert "nothing has changed" in told and "an account already uses it" in told
    assert sent[1].get_content() != told and "24 hours" in sent[1].get_content()


def test_an_address_takes_a_few_confirmations_an_hour_whoever_asks(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Accounts cost nothing: several of them must not fill one mailbox between them.
    limit = app.config["OTP_PER_HOUR"]
    senders = [resident(client, app) for _ in range(3)]
    answers = [client.post("/v1/me/email", json={"email": "Victim@Example.org"},
                           headers=sender.headers) for sender in senders for _ in range(3)]
    assert [a.status_code for a in answers] == [202] * limit + [429] * (9 - limit)
    refused = answers[-1]
    assert refused.json["reason"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert len([m for m in app.extensions["sent_mail"] if m["To"] == "victim@example.org"]
               ) == limit
    # Another address is not held up by it; after the hour the address may be asked again.
    assert client.post("/v1/me/email", json={"email": "other@example.org"},
                       headers=senders[0].headers).status_code == 202
    later = rewards.models.utcnow() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr("rewards.api.email_change.utcnow", lambda: later)
    assert client.post("/v1/me/email", json={"email": "victim@example.org"},
                       headers=senders[0].headers).status_code == 202


def test_codes_asked_for_the_old_address_go_with_it(client: FlaskClient, app: Flask) -> None:
    member = resident(client, app)
    assert client.post("/v1/auth/otp", json={"email": member.email}).status_code == 202
    assert client.post("/v1/me/email", json={"email": "moved@example.org"},
                       headers=member.headers).status_code == 202
    token = _mailed_token(app, "moved@example.org")
    assert client.post("/v1/me/email/confirm", json={"token": token},
                       headers=member.headers).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count(OtpCode.id)).where(
            OtpCode.email_hash == otp_address(member.email))) == 0
    # Erased, the account leaves no code behind for either address.
    assert client.delete("/v1/me", headers=member.headers).status_code == 204
    with app.app_context():
        assert db.session.scalar(select(func.count(OtpCode.id))) == 0


def test_a_changed_address_ends_every_other_login(client: FlaskClient, app: Flask) -> None:
    """Whoever changes the address keeps only their own login: with a stolen token, the
    owner's other devices are logged out and told at the old address, and can log in
    again; the thief cannot keep the account from every device at once."""
    from .helpers import bearer, member_token

    member = resident(client, app)
    other_device = bearer(member_token(client, app, member.email))
    assert client.get("/v1/me", headers=other_device).status_code == 200
    assert client.post("/v1/me/email", json={"email": "moved.again@example.org"},
                       headers=member.headers).status_code == 202
    token = _mailed_token(app, "moved.again@example.org")
    assert client.post("/v1/me/email/confirm", json={"token": token},
                       headers=member.headers).status_code == 200
    assert client.get("/v1/me", headers=member.headers).status_code == 200
    ended = client.get("/v1/me", headers=other_device)
    assert (ended.status_code, ended.json["reason"]) == (401, "session_ended")
