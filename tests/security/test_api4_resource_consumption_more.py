"""OWASP API4:2023, tried from outside: a per-client limit cannot be escaped by
sending a header that names a different client. Only a credential the endpoint itself
checks names the client; anywhere else it is the network address."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

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


# -- numbers the database cannot hold ---------------------------------------------------

INT_MAX = 2**31 - 1  # PostgreSQL's INTEGER, which the columns behind these fields are


def _integers_without_bounds(spec: dict[str, Any]) -> list[str]:
    schemas = spec["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        return schemas[ref.rsplit("/", 1)[1]] if ref else schema

    found: list[str] = []

    def walk(schema: dict[str, Any], where: str) -> None:
        schema = resolve(schema)
        if schema.get("readOnly"):
            return
        kinds = schema.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "integer" in kinds and not (
                -INT_MAX - 1 <= schema.get("minimum", -INT_MAX - 2)
                and schema.get("maximum", INT_MAX + 1) <= INT_MAX):
            found.append(where)
        for name, prop in (schema.get("properties") or {}).items():
            walk(prop, f"{where}.{name}")
        if "items" in schema:
            walk(schema["items"], f"{where}[]")
        for combined in ("allOf", "anyOf", "oneOf"):
            for part in schema.get(combined, []):
                walk(part, where)

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "page":
                    continue  # bounded by the project's Blueprint.paginate (test above)
                walk(parameter.get("schema", {}), f"{method} {path} ?{parameter.get('name')}")
            for content in (operation.get("requestBody") or {}).get("content", {}).values():
                walk(content.get("schema", {}), f"{method} {path} body")
    return found


def test_every_integer_a_client_sends_has_bounds_the_database_can_hold(app: Flask) -> None:
    from rewards.extensions import api

    with app.app_context():
        assert _integers_without_bounds(api.spec.to_dict()) == []


def test_an_out_of_range_number_is_a_422_not_a_crash(client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app)
    admin = bearer(scheme.admin)
    rule = {"name": "p", "action_types": ["bus_journey"], "points": "1"}
    for body in ({**rule, "priority": 10**20}, {**rule, "budget_points": 2**31},
                 {**rule, "caps": {"per_day": 10**30}}):
        answer = client.post("/v1/admin/rules", json=body, headers=admin)
        assert answer.status_code == 422, (body, answer.status_code)
    offer = client.get(f"/v1/admin/offers/{scheme.offer['id']}", headers=admin).json
    assert offer["stock"] == 100
    answer = client.post("/v1/admin/offers", headers=admin, json={
        "partner_id": scheme.partner["id"], "title": "Big", "cost_points": 5,
        "stock": 3_000_000_000})
    assert answer.status_code == 422 and "stock" in answer.json["errors"]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+01:00",
                                    "9999-12-31T23:59:59-12:00", "1066-10-14T09:00:00Z"])
def test_a_moment_out_of_range_is_a_422_not_a_crash(
    client: FlaskClient, app: Flask, moment: str
) -> None:
    scheme = build_scheme(client, app)
    admin = bearer(scheme.admin)
    later = "2990-01-01T00:00:00Z"
    bodies = {
        "/v1/admin/rules": {"name": "w", "action_types": ["bus_journey"], "points": "1",
                            "starts_at": moment},
        "/v1/admin/events": {"name": "e", "action_type": "bus_journey", "starts_at": moment,
                             "ends_at": later},
        "/v1/admin/offers": {"partner_id": scheme.partner["id"], "title": "T",
                             "cost_points": 5, "starts_at": moment},
    }
    for path, body in bodies.items():
        answer = client.post(path, json=body, headers=admin)
        assert answer.status_code == 422, (path, answer.status_code)
        assert "starts_at" in answer.json["errors"], path


@pytest.mark.parametrize("month", ["9999-12", "0000-01", "1066-10"])
def test_a_month_out_of_range_is_a_422_not_a_crash(
    client: FlaskClient, app: Flask, month: str
) -> None:
    scheme = build_scheme(client, app)
    till = {"X-Api-Key": scheme.partner["api_key"]}
    for path, headers in ((f"/v1/partner/redemptions?month={month}", till),
                          (f"/v1/admin/settlements?month={month}", bearer(scheme.admin))):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 422, (path, answer.status_code)


def test_every_moment_a_client_sends_is_bounded() -> None:
    """Request schemas take moments through one bounded field (rewards/api/common.py)."""
    from pathlib import Path

    import rewards.api

    offenders = [str(path) for path in Path(rewards.api.__file__).parent.glob("*.py")
                 if path.name not in ("common.py", "me_actions.py")
                 and "fields.AwareDateTime(" in path.read_text()]
    assert offenders == []


def test_a_default_limit_if_ever_configured_is_still_checked_on_every_route(
        database_url: str) -> None:
    # The scheme has no default limit, so only the routes in rewards/limits.py's table
    # count; configured, it counts on every other route too.
    from rewards import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": None,
                      "SMTP_URL": None, "TESTING": True,
                      "SECRET_KEY": "test-secret-key-at-least-32-bytes-long",
                      "IDENTIFIER_KEY": "test-identifier-key", "LOG_LEVEL": "WARNING",
                      "RATELIMIT_DEFAULT": "2 per minute"})
    client = app.test_client()
    answers = [client.get("/v1/action-types").status_code for _ in range(3)]
    assert answers == [200, 200, 429], answers
