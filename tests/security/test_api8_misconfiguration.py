"""API8:2023 Security misconfiguration: headers on every answer, cookies, /docs without a
CDN, deeply nested JSON, no traceback from any route, mail that leaks no codes."""

from __future__ import annotations

import io
import logging
import smtplib
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards import create_app
from rewards.config import Config
from rewards.hardening import json_depth
from rewards.mail import InsecureRelay, deliver, send_mail

from ..helpers import bearer, staff_token
from ..test_errors import assert_json_error
from .smtp_fake import plain_relay


def _nested(depth: int) -> str:
    return '{"email": ' + "[" * depth + "]" * depth + "}"


def test_every_answer_carries_the_security_headers(client: FlaskClient, app: Flask) -> None:
    pages = ["/healthz", "/openapi.json", "/docs", "/", "/partner/login", "/v1/nothing",
             "/v1/me", "/docs/assets/swagger-ui.css"]
    for path in pages:
        answer = client.get(path)
        headers = answer.headers
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp, path
    page = client.get("/partner/login").headers["Content-Security-Policy"]
    assert "default-src 'self'" in page and "script-src 'self'" in page
    assert "default-src 'none'" in client.get("/healthz").headers["Content-Security-Policy"]


def test_answers_over_https_tell_browsers_to_keep_to_https(client: FlaskClient) -> None:
    # Every kind of answer, errors and pages too; over plain http (development, or a
    # proxy not trusted) there is nothing to pin, and browsers ignore it there anyway.
    for path in ("/healthz", "/v1/nothing", "/v1/me", "/partner/login", "/staff/login",
                 "/docs"):
        answer = client.get(path, base_url="https://rewards.example")
        assert answer.headers.get("Strict-Transport-Security") == "max-age=31536000", path
    assert "Strict-Transport-Security" not in client.get("/healthz").headers


def test_answers_to_a_caller_with_credentials_are_not_kept_by_caches(
    client: FlaskClient, app: Flask
) -> None:
    from ..reward_support import resident

    admin = bearer(staff_token(client, app, "analyst"))
    member = resident(client, app)
    for path, headers in (("/v1/admin/dashboard/actions", admin),
                          ("/v1/admin/dashboard/actions?format=csv", admin),
                          ("/v1/admin/dashboard/open-data.zip", admin),
                          ("/v1/me", member.headers), ("/v1/me/ledger", member.headers),
                          ("/v1/nothing", member.headers),
                          ("/v1/partner/vouchers/NOPE", {"X-Api-Key": "not-a-key"})):
        answer = client.get(path, headers=headers)
        assert answer.headers.get("Cache-Control") == "no-store", (path, answer.status_code)
    # A view that says how its answer may be kept keeps its own policy (an ETag'd read);
    # an anonymous public answer is not marked.
    charities = client.get("/v1/charities", headers=member.headers)
    assert charities.status_code == 200
    assert charities.headers["Cache-Control"] == "private, max-age=300"
    assert "Cache-Control" not in client.get("/healthz").headers


def test_answers_that_give_tokens_are_not_kept_by_caches(client: FlaskClient, app: Flask) -> None:
    # The request carries its secret in the body (a code, a password, a refresh token),
    # not a header, yet the answer is a token: never to be kept (RFC 6749, 5.1).
    from ..conftest import otp_from_mail
    from ..helpers import make_staff

    assert client.post("/v1/auth/otp", json={"email": "kept@example.org"}).status_code == 202
    tokens = client.post("/v1/auth/token", json={
        "email": "kept@example.org", "code": otp_from_mail(app, "kept@example.org")})
    refreshed = client.post("/v1/auth/refresh",
                            json={"refresh_token": tokens.json["refresh_token"]})
    make_staff(app, "kept@council.example", "analyst")
    staff = client.post("/v1/auth/login", json={"email": "kept@council.example",
                                               "password": "correct horse"})
    refused = client.post("/v1/auth/login", json={"email": "kept@council.example",
                                                 "password": "wrong horse"})
    for answer, status in ((tokens, 200), (refreshed, 200), (staff, 200), (refused, 401)):
        assert answer.status_code == status, answer.json
        assert answer.headers.get("Cache-Control") == "no-store", answer.request.path
        assert answer.headers.get("Pragma") == "no-cache"


def test_docs_work_offline_from_our_origin(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "cdn" not in html.lower() and "https://" not in html and "http://" not in html
    assert "<script>" not in html  # no inline script: the policy allows none
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
                  "/docs/start.js"):
        assert asset in html
        served = client.get(asset)
        assert served.status_code == 200 and len(served.data) > 100, asset
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").get_data(
        as_text=True)[:2_000_000]
    assert_json_error(client.get("/docs/assets/index.html"), 404)
    assert_json_error(client.get("/docs/assets/..%2Fpyproject.toml"), 404)


def test_deeply_nested_json_is_422_on_every_kind_of_route(client: FlaskClient,
                                                           app: Flask) -> None:
    admin = bearer(staff_token(client, app, "admin"))
    for depth in (33, 1_000, 100_000):
        for path, headers in (("/v1/auth/otp", {}), ("/v1/auth/login", {}),
                              ("/v1/admin/action-types", admin)):
            answer = client.post(path, data=_nested(depth), headers=headers,
                                 content_type="application/json")
            body = assert_json_error(answer, 422)
            assert "nests more than 32 levels" in body["message"]
    # Sent in chunks (no Content-Length): counted all the same, not a 500 from the parser.
    chunked = client.post("/v1/auth/otp", input_stream=io.BytesIO(_nested(100_000).encode()),
                          content_type="application/json",
                          headers={"Transfer-Encoding": "chunked"},
                          environ_overrides={"wsgi.input_terminated": True})
    assert "nests more than 32 levels" in assert_json_error(chunked, 422)["message"]
    # Never closed: not JSON, and still refused before the parser recurses.
    unclosed = client.post("/v1/auth/otp", data="[" * 50_000, content_type="application/json")
    assert "nests more than 32 levels" in assert_json_error(unclosed, 422)["message"]
    # Ordinary nesting, and brackets inside strings, are not counted against the limit.
    assert client.post("/v1/auth/otp", json={"email": "[[[[" * 40 + "@example.org"}
                       ).status_code in (202, 422)
    assert json_depth(b'{"a": [[1], {"b": "]]]]"}]}') == 3
    assert json_depth(b'"[[["') == 0
    assert json_depth(rb'{"a": "x\"[[[", "b": [1]}') == 2  # an escaped quote
    assert json_depth(rb'{"a": "x\\", "b": [[2]]}') == 3  # an escaped backslash


def test_no_route_answers_a_traceback(client: FlaskClient, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    import rewards.api.auth_views

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RecursionError("secret internals /etc/passwd")

    monkeypatch.setattr(rewards.api.auth_views, "request_otp", explode)
    with caplog.at_level(logging.ERROR):
        body = assert_json_error(client.post("/v1/auth/otp", json={"email": "a@b.test"}), 500)
    assert "secret internals" not in body["message"]
    assert any(record.exc_info for record in caplog.records)  # logged for us, not shown
    monkeypatch.undo()
    # A body that is not JSON at all, and one that is JSON of the wrong shape.
    assert_json_error(client.post("/v1/auth/otp", data="{not json",
                                  content_type="application/json"), 400)
    assert_json_error(client.post("/v1/auth/otp", json=[1, 2]), 422)


def test_session_cookie_is_secure_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    monkeypatch.setenv("REWARDS_ENV", "production")
    assert Config().SESSION_COOKIE_SECURE is True
    monkeypatch.setenv("REWARDS_ENV", "development")
    assert Config().SESSION_COOKIE_SECURE is False
    monkeypatch.setenv("REWARDS_ENV", "production")
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "0")  # an explicit choice is kept
    assert Config().SESSION_COOKIE_SECURE is False


def _production_app(database_url: str, **config: Any) -> Flask:
    return create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REWARDS_ENV": "production",
                       "SECRET_KEY": "x" * 40, "IDENTIFIER_KEY": "y" * 40,
                       "LOG_LEVEL": "WARNING", **config})


def test_codes_are_not_logged_without_smtp_outside_development(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    production = _production_app(database_url, SMTP_URL=None)
    with production.app_context(), caplog.at_level(logging.INFO, logger="rewards.mail"):
        send_mail("resident@leeds.gov.uk", "Your code: 482913", "Your login code is 482913.")
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "not sent" in text and "482913" not in text and "resident@" not in text
    assert "r***@leeds.gov.uk" in text


def test_reserved_domains_are_dropped_by_a_setting_and_said_so(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with plain_relay() as (port, lines):
        url = f"smtp://127.0.0.1:{port}"
        dropping = _production_app(database_url, SMTP_URL=url)
        with dropping.app_context(), caplog.at_level(logging.INFO, logger="rewards.mail"):
            send_mail("amira@example.org", "Your code: 111111", "code 111111")
        assert not any(line.upper().startswith("MAIL FROM") for line in lines)
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "dropped (MAIL_DROP_RESERVED=1)" in logged and "111111" not in logged
        catching = _production_app(database_url, SMTP_URL=url, MAIL_DROP_RESERVED=False)
        with catching.app_context():
            send_mail("amira@example.org", "Your code: 222222", "code 222222")
        assert any(line.upper().startswith("RCPT TO:<AMIRA@EXAMPLE.ORG>") for line in lines)


def test_smtp_never_sends_the_password_without_tls() -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@leeds.test", "b@leeds.test", "hi"
    message.set_content("hello")
    with plain_relay() as (port, lines):
        with pytest.raises(InsecureRelay):
            deliver(f"smtp://relay-user:s3cret@127.0.0.1:{port}", message)
        assert not any(line.upper().startswith("AUTH") for line in lines)
        assert not any("s3cret" in line for line in lines)
        # Without credentials a plain relay (a local mail catcher) still gets the mail.
        deliver(f"smtp://127.0.0.1:{port}", message)
        assert any(line.upper().startswith("MAIL FROM") for line in lines)


def test_smtp_upgrades_with_starttls_when_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Relay:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> Relay:
            return self

        def __exit__(self, *args: Any) -> None:
            pass

        def ehlo(self) -> None:
            calls.append("ehlo")

        def has_extn(self, name: str) -> bool:
            return name == "starttls"

        def starttls(self, context: Any) -> None:
            calls.append("starttls")

        def login(self, user: str, password: str) -> None:
            calls.append(f"login {user}")

        def send_message(self, message: Any) -> None:
            calls.append("send")

    monkeypatch.setattr(smtplib, "SMTP", Relay)
    deliver("smtp://user%40council:pw@relay.leeds.test:587", EmailMessage())
    assert calls == ["ehlo", "starttls", "ehlo", "login user@council", "send"]
