"""OWASP API4:2023, tried from outside: a per-client limit cannot be escaped by
sending a header that names a different client. Only a credential the endpoint itself
checks names the client; anywhere else it is the network address."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards.limits import client_key

from ..helpers import bearer, build_scheme, member_token
from ..test_partner_pages import _csrf, _log_in, _partner_user

CARD = "6335 0099 8877 6655"


@pytest.fixture
def lowered(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    def lower(setting: str, value: str = "3 per minute") -> None:
        monkeypatch.setitem(app.config, setting, value)
        from rewards.limits import limiter

        with app.app_context():
            limiter.reset()

    return lower


def _random_key() -> dict[str, str]:
    return {"X-Api-Key": secrets.token_hex(16)}


def test_a_made_up_api_key_does_not_reset_the_login_limit(
    client: FlaskClient, lowered: Callable[..., None]
) -> None:
    lowered("RATE_LIMIT_LOGIN")
    answers = [client.post("/v1/auth/login", headers=_random_key(),
                           json={"email": f"x{n}@council.example", "password": "guess"})
               for n in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]


def test_a_made_up_api_key_does_not_reset_the_code_limits(
    client: FlaskClient, lowered: Callable[..., None]
) -> None:
    lowered("RATE_LIMIT_CODE_CHECK")
    answers = [client.post("/v1/auth/token", headers=_random_key(),
                           json={"email": "someone@example.org", "code": "000000"})
               for _ in range(4)]
    assert answers[-1].status_code == 429


def test_tokens_of_other_accounts_do_not_reset_the_address_limit(
    client: FlaskClient, app: Flask, lowered: Callable[..., None]
) -> None:
    # Residents' accounts are free to make: each one's token must not buy more guesses
    # at an unauthenticated endpoint.
    tokens = [member_token(client, app, f"sock{n}@example.org") for n in range(4)]
    lowered("RATE_LIMIT_OTP")
    answers = [client.post("/v1/auth/otp", headers=bearer(t),
                           json={"email": "victim@example.org"}) for t in tokens]
    assert [a.status_code for a in answers][-1] == 429


def test_a_made_up_api_key_does_not_reset_the_partner_page_pin_limit(
    client: FlaskClient, app: Flask, lowered: Callable[..., None]
) -> None:
    scheme = build_scheme(client, app)
    email = _partner_user(app, scheme.partner["id"])
    assert _log_in(client, email).status_code == 302
    csrf = _csrf(client.get("/partner/card").data)
    lowered("RATE_LIMIT_PIN")
    answers = [client.post("/partner/card", headers=_random_key(), data={
        "csrf": csrf, "kind": "leisure_card", "number": CARD, "pin": f"{n:04d}",
        "offer_id": scheme.offer["id"]}) for n in range(4)]
    assert answers[-1].status_code == 429


def test_where_a_credential_is_checked_it_names_the_client(
    client: FlaskClient, app: Flask
) -> None:
    token = member_token(client, app, "one@example.org")
    member_id = client.get("/v1/me", headers=bearer(token)).json["id"]
    with app.test_request_context("/v1/me/claims", method="POST", headers=bearer(token)):
        assert client_key() == f"member:{member_id}"
    with app.test_request_context("/v1/partner/redemptions", method="POST",
                                  headers={"X-Api-Key": "till-key"}):
        assert client_key().startswith("key:")
    with app.test_request_context("/v1/auth/login", method="POST",
                                  headers={"X-Api-Key": "till-key", **bearer(token)},
                                  environ_base={"REMOTE_ADDR": "192.0.2.4"}):
        assert client_key() == "addr:192.0.2.4"


LISTS = ["/v1/admin/audit-log", "/v1/admin/action-types", "/v1/admin/partners",
         "/v1/admin/events", "/v1/admin/staff", "/v1/me/actions", "/v1/me/ledger",
         "/v1/me/rewards", "/v1/partner/redemptions"]


@pytest.mark.parametrize("page", ["100000000000000000000", "9223372036854775807", "100001"])
def test_a_page_number_past_any_list_is_refused_not_a_crash(
    client: FlaskClient, app: Flask, page: str
) -> None:
    scheme = build_scheme(client, app)
    me = bearer(member_token(client, app, "pages@example.org"))
    till = {"X-Api-Key": scheme.partner["api_key"]}
    for path in LISTS:
        headers = me if path.startswith("/v1/me") else (
            till if path.startswith("/v1/partner") else bearer(scheme.admin))
        answer = client.get(f"{path}?page={page}", headers=headers)
        assert answer.status_code == 422, (path, answer.status_code)
        assert answer.json["code"] == 422 and "page" in answer.json["errors"], path
    # The last page allowed still answers (an empty page).
    last = client.get("/v1/admin/audit-log?page=100000&page_size=100",
                      headers=bearer(scheme.admin))
    assert last.status_code == 200 and last.json == []
