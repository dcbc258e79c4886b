"""A resident changes their email address: nothing changes until the new address is
confirmed with the code mailed to it; the old address is told."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

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
    # member), and nothing mailed to it.
    mailed = len(app.extensions["sent_mail"])
    taken = client.post("/v1/me/email", json={"email": "new.address@example.org"},
                        headers=other.headers)
    free = client.post("/v1/me/email", json={"email": "nobody.yet@example.org"},
                       headers=other.headers)
    assert taken.status_code == free.status_code == 202
    assert taken.json == free.json
    assert [m["To"] for m in app.extensions["sent_mail"][mailed:]] == ["nobody.yet@example.org"]
