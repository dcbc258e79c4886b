"""Every error is the same JSON shape: {code, status, message} (+ errors for 422),
never an HTML page or a stack trace."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import rewards.api.me
from rewards.reasons import Reason

from .helpers import bearer, link, member_token, signed_post, staff_token

ACTION_TYPE = {"code": "bus_journey", "name": "Bus journey", "category": "travel"}


def assert_json_error(response: Any, code: int) -> dict[str, Any]:
    text = response.get_data(as_text=True)
    assert response.status_code == code, (response.status_code, text)
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    assert isinstance(body, dict), text
    expected_keys = {"code", "status", "reason", "message"} | ({"errors"} if code == 422 else set())
    assert set(body) <= expected_keys | {"errors"}
    assert expected_keys <= set(body)
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    assert body["reason"] in {reason.value for reason in Reason}
    if code == 422:
        assert isinstance(body["errors"], dict)
    for leak in ("Traceback", "<html", "<!doctype", "File \"/", "werkzeug", "sqlalchemy"):
        assert leak.lower() not in text.lower(), text
    return body


def test_unknown_route_is_404_json(client: FlaskClient) -> None:
    for path in ("/v1/nothing-here", "/nothing", "/v1/me/rewards/not-a-uuid"):
        body = assert_json_error(client.get(path), 404)
        assert body["status"] == "Not Found"
    assert_json_error(client.post("/v1/nothing-here", json={}), 404)


def test_wrong_method_is_405_json_and_says_what_is_allowed(client: FlaskClient) -> None:
    response = client.get("/v1/auth/otp")
    body = assert_json_error(response, 405)
    assert body["status"] == "Method Not Allowed"
    assert "POST" in response.headers["Allow"]
    assert_json_error(client.put("/v1/auth/token", json={}), 405)


def test_no_token_is_401_json(client: FlaskClient) -> None:
    for path in ("/v1/me", "/v1/me/balance", "/v1/admin/action-types"):
        body = assert_json_error(client.get(path), 401)
        assert "Bearer" in body["message"]
    assert_json_error(client.get("/v1/me", headers=bearer("nonsense")), 401)
    assert_json_error(client.get("/v1/partner/vouchers/ABCDEFGHJK"), 401)


def test_invalid_body_is_422_with_errors_field_by_field(client: FlaskClient, app: Flask) -> None:
    body = assert_json_error(client.post("/v1/auth/otp", json={"email": "nope"}), 422)
    assert set(body["errors"]) == {"email"}
    assert isinstance(body["errors"]["email"], list) and body["errors"]["email"]

    body = assert_json_error(client.post("/v1/auth/token", json={"code": "12ab"}), 422)
    assert set(body["errors"]) == {"email", "code"}
    assert body["errors"]["code"] == ["The code is 6 digits."]
    assert body["errors"]["email"] == ["Missing data for required field."]

    body = assert_json_error(client.post("/v1/auth/otp", json={"email": "a@example.org",
                                                               "admin": True}), 422)
    assert set(body["errors"]) == {"admin"}

    body = assert_json_error(client.post("/v1/auth/otp", json=["a@example.org"]), 422)
    assert body["errors"]

    # Query strings too: field-by-field, not nested under the location.
    me = bearer(member_token(client, app, "pages@example.org"))
    body = assert_json_error(client.get("/v1/me/ledger?page=0&page_size=1000", headers=me), 422)
    assert set(body["errors"]) == {"page", "page_size"}


def test_body_over_max_content_length_is_413_json(client: FlaskClient, app: Flask) -> None:
    admin = bearer(staff_token(client, app, "admin"))
    assert client.post("/v1/admin/action-types", json=ACTION_TYPE, headers=admin).status_code == 201
    source = client.post("/v1/admin/sources", json={"name": "First Bus",
                                                   "action_types": ["bus_journey"]}, headers=admin)
    assert source.status_code == 201, source.json
    saved = app.config["MAX_CONTENT_LENGTH"]
    app.config["MAX_CONTENT_LENGTH"] = 1024
    try:
        big = {"email": "a@example.org", "padding": "x" * 4096}
        for path in ("/v1/auth/otp", "/v1/auth/login"):
            body = assert_json_error(client.post(path, json=big), 413)
            assert "Large" in body["status"]
        batch = {"items": [{"external_ref": f"trip-{n}", "type": "bus_journey"}
                           for n in range(100)]}
        assert_json_error(signed_post(client, source.json, batch), 413)
        # Just under the limit is read (and judged on its content).
        small = client.post("/v1/auth/otp", json={"email": "a@example.org"})
        assert small.status_code == 202
    finally:
        app.config["MAX_CONTENT_LENGTH"] = saved
    assert app.config["MAX_CONTENT_LENGTH"] == saved


class _Answer:
    def __init__(self, status: str, headers: Any, body: bytes) -> None:
        self.status_code = int(status.split()[0])
        self.headers = headers
        self.data = body
        self.json = json.loads(body)

    def get_data(self, as_text: bool = False) -> Any:
        return self.data.decode() if as_text else self.data


def _streamed(app: Flask, path: str, raw: bytes, **headers: str) -> _Answer:
    """A POST whose body comes without Content-Length (chunked), as gunicorn hands it on:
    no CONTENT_LENGTH, and wsgi.input_terminated set."""
    import io

    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(path=path, method="POST", input_stream=io.BytesIO(raw),
                             headers={"Content-Type": "application/json", **headers}
                             ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    answer, status, sent = run_wsgi_app(app, environ, buffered=True)
    return _Answer(status, sent, b"".join(answer))


def test_a_streamed_body_over_max_content_length_is_413_not_cut_short(
        client: FlaskClient, app: Flask) -> None:
    """A body sent without Content-Length and larger than MAX_CONTENT_LENGTH is a 413,
    as with a length: never its first MAX_CONTENT_LENGTH bytes read as the whole body
    (a 400 "Invalid JSON body." that tells the client nothing about the size)."""
    admin = bearer(staff_token(client, app, "admin"))
    assert client.post("/v1/admin/action-types", json=ACTION_TYPE, headers=admin).status_code == 201
    source = client.post("/v1/admin/sources", json={"name": "First Bus",
                                                   "action_types": ["bus_journey"]}, headers=admin)
    saved = app.config["MAX_CONTENT_LENGTH"]
    app.config["MAX_CONTENT_LENGTH"] = 1024
    try:
        big = json.dumps({"email": "a@example.org", "padding": "x" * 4096}).encode()
        assert_json_error(_streamed(app, "/v1/auth/otp", big), 413)
        from rewards.security import signature_header

        batch = json.dumps({"items": [{"external_ref": f"trip-{n}", "type": "bus_journey"}
                                      for n in range(100)]}).encode()
        assert_json_error(_streamed(app, "/v1/source/actions", batch, **{
            "X-Api-Key": source.json["api_key"],
            "X-Signature": signature_header(source.json["signing_secret"], batch)}), 413)
        # Up to the limit a streamed body is read whole, exactly at it too.
        small = json.dumps({"email": "a@example.org"}).encode()
        assert _streamed(app, "/v1/auth/otp", small).status_code == 202
        exact = small[:-1] + b" " * (1024 - len(small)) + b"}"
        assert len(exact) == 1024
        assert _streamed(app, "/v1/auth/otp", exact).status_code == 202
    finally:
        app.config["MAX_CONTENT_LENGTH"] = saved


@pytest.mark.parametrize("raw", [b"{not json", b'{"email": ', b"\xff\xfe\x00"])
def test_malformed_json_is_a_400_json_error(client: FlaskClient, raw: bytes) -> None:
    response = client.post("/v1/auth/otp", data=raw, content_type="application/json")
    body = assert_json_error(response, 400)
    assert body["message"] == "Invalid JSON body."
    assert "errors" not in body


def test_a_422_without_field_errors_still_has_the_errors_object(
    client: FlaskClient, app: Flask
) -> None:
    from .reward_support import admin_headers, make_offer, make_partner, resident

    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offers = [make_offer(client, admin, partner["id"], cost_points=5, title=title)
              for title in ("Tea", "Cake")]
    me = resident(client, app, points=50).headers
    first = client.post("/v1/me/rewards", json={"offer_id": offers[0]["id"]},
                        headers={**me, "Idempotency-Key": "key-1"})
    assert first.status_code == 202, first.json
    # The same key with another body: refused as a whole, no field to name.
    body = assert_json_error(client.post("/v1/me/rewards",
                                         json={"offer_id": offers[1]["id"]},
                                         headers={**me, "Idempotency-Key": "key-1"}), 422)
    assert "Idempotency-Key" in body["message"]
    assert body["errors"] == {}


def test_body_that_is_not_json_is_a_422(client: FlaskClient) -> None:
    response = client.post("/v1/auth/otp", data="email=a@example.org",
                           content_type="application/x-www-form-urlencoded")
    body = assert_json_error(response, 422)
    assert body["errors"] == {"body": [
        "The body must be JSON, sent with Content-Type: application/json."]}


def test_unexpected_exception_is_500_json_without_internals(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    me = bearer(member_token(client, app, "boom@example.org"))

    def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rewards.api.me, "balance_expiring", explode)
    with caplog.at_level(logging.ERROR):
        response = client.get("/v1/me/balance", headers=me)
    body = assert_json_error(response, 500)
    text = response.get_data(as_text=True)
    assert "secret internals" not in text and "Traceback" not in text
    assert "RuntimeError" not in text
    assert body["status"] == "Internal Server Error"
    # The operator still gets the whole story in the log.
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)

    # The next request is served normally.
    monkeypatch.undo()
    assert client.get("/v1/me/balance", headers=me).status_code == 200


def test_errors_from_views_keep_their_message(client: FlaskClient, app: Flask) -> None:
    me = bearer(member_token(client, app, "lost@example.org"))
    body = assert_json_error(
        client.get("/v1/me/rewards/00000000-0000-0000-0000-000000000000", headers=me), 404)
    assert body["message"] != "Not Found"


def test_options_says_what_is_allowed_with_no_page(client) -> None:
    """OPTIONS is answered for every route: 204 with `Allow`, never an empty HTML page."""
    for path in ("/v1/offers", "/v1/me", "/healthz"):
        answer = client.options(path)
        assert answer.status_code == 204, path
        assert "GET" in answer.headers["Allow"]
        assert "Content-Type" not in answer.headers and answer.data == b""


def test_no_content_answers_carry_no_content_type(client, app: Flask) -> None:
    """A 204 has no body, so no content type either: deleting a card, then the account."""
    headers = bearer(member_token(client, app, "empty@example.org"))
    card = link(client, app, headers, "CARD20450001").get_json()["id"]
    answer = client.delete(f"/v1/me/identifiers/{card}", headers=headers)
    assert answer.status_code == 204
    assert "Content-Type" not in answer.headers and answer.data == b""
    assert client.get("/v1/me/identifiers", headers=headers).get_json() == []
    answer = client.delete("/v1/me", headers=headers)
    assert answer.status_code == 204
    assert "Content-Type" not in answer.headers and answer.data == b""
    assert client.get("/v1/me", headers=headers).status_code == 401
