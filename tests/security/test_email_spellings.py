"""One mailbox, one account: an address is kept and looked up under one spelling, so
fullwidth letters, an internationalised domain in Unicode or in punycode, and capitals
all reach the same member (and share that address's code limits), and a spelling that
grows past the column when folded is a 422, not a database error."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ..helpers import bearer


def _log_in(client: FlaskClient, app: Flask, typed: str) -> tuple[str, str]:
    """The member id `typed` logs in to, and the address the code was mailed to."""
    assert client.post("/v1/auth/otp", json={"email": typed}).status_code == 202
    message = app.extensions["sent_mail"][-1]
    code = re.search(r"\b(\d{6})\b", message["Subject"]).group(1)
    answer = client.post("/v1/auth/token", json={"email": typed, "code": code})
    assert answer.status_code == 200, answer.json
    me = client.get("/v1/me", headers=bearer(answer.json["access_token"])).json
    return me["id"], message["To"]


@pytest.mark.parametrize("first, other", [
    ("alice@example.org", "ａlice@example.org"),           # fullwidth letter
    ("alice@example.org", "alice@ｅxample.org"),           # fullwidth in the domain
    ("alice@example.org", "ＡＬＩＣＥ@example.org"),        # fullwidth capitals
    ("alice@exämple.org", "alice@xn--exmple-cua.org"),     # IDN and its punycode
    ("alice@xn--exmple-cua.org", "ALICE@EXÄMPLE.ORG"),
])
def test_other_spellings_of_one_address_open_the_same_account(
        client: FlaskClient, app: Flask, first: str, other: str) -> None:
    member, mailed = _log_in(client, app, first)
    again, mailed_again = _log_in(client, app, other)
    assert again == member
    assert mailed_again == mailed and mailed.isascii(), (mailed, mailed_again)


def test_spellings_share_the_addresss_code_limit(client: FlaskClient, app: Flask) -> None:
    app.config["OTP_PER_HOUR"], before = 2, app.config["OTP_PER_HOUR"]
    try:
        for typed in ("bob@example.org", "ｂob@example.org"):
            assert client.post("/v1/auth/otp", json={"email": typed}).status_code == 202
        assert client.post("/v1/auth/otp", json={"email": "ｂｏｂ@example.org"}).status_code == 429
    finally:
        app.config["OTP_PER_HOUR"] = before


def test_an_address_longer_than_the_column_once_folded_is_422(
        client: FlaskClient, app: Flask) -> None:
    # 212 characters as sent; "İ" is two in lower case, so 412 as kept.
    typed = "\u0130" * 200 + "@example.org"
    for path, body in (("/v1/auth/otp", {"email": typed}),
                       ("/v1/auth/token", {"email": typed, "code": "123456"})):
        answer = client.post(path, json=body)
        assert answer.status_code == 422, (path, answer.status_code, answer.json)
        assert "email" in answer.json["errors"]
