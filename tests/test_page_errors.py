"""A person at a browser on the staff, partner or public pages never gets the API's
JSON error body: every refusal there is a short page in the page's language, with the
same status code, a plain message, a link back and the pages' security headers."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .test_partner_pages import _csrf
from .test_staff_pages import csrf as staff_csrf

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def _assert_page(answer: Any, status: int, *, lang: str = "en", back: str = "/staff/",
                 words: str = "") -> str:
    """A page with `status`, in `lang`, linking `back`, and none of the API's body."""
    assert answer.status_code == status, answer.get_data(as_text=True)[:300]
    assert answer.mimetype == "text/html", (status, answer.get_data(as_text=True)[:300])
    page = answer.get_data(as_text=True)
    assert f'<html lang="{lang}"' in page
    assert answer.headers["Content-Language"] == lang
    assert f'href="{back}' in page, page
    if words:
        assert words in page, page
    for internal in ('"code":', '"reason":', "Traceback", "werkzeug", "sqlalchemy", "/v1/"):
        assert internal not in page, internal
    headers = answer.headers
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp.partition("script-src")[2].partition(";")[0]
    return page


def test_an_unknown_page_is_a_page_in_the_pages_language(client: FlaskClient) -> None:
    _assert_page(client.get("/staff/no/such/page", headers=BROWSER), 404,
                 words="No such page.")
    welsh = client.get("/staff/no/such/page?lang=cy")
    _assert_page(welsh, 404, lang="cy", back="/staff/?lang=cy",
                 words="Nid oes tudalen o&#39;r fath.")
    assert "Gwall 404" in welsh.get_data(as_text=True)
    # The browser's language too, with no choice made before.
    fresh = client.application.test_client()
    _assert_page(fresh.get("/staff/a/b", headers={"Accept-Language": "cy-GB,cy;q=0.9"}),
                 404, lang="cy", back="/staff/?lang=cy")
    _assert_page(client.get("/partner/nothing-here"), 404, back="/partner/redeem",
                 words="No such page.")
    # A NUL in the path is refused before routing, the same way.
    _assert_page(client.get("/staff/a%00b"), 404)


def test_a_wrong_method_is_a_page_that_says_what_is_allowed(client: FlaskClient) -> None:
    answer = client.put("/staff/report")
    _assert_page(answer, 405, words="This page cannot be used that way.")
    assert "GET" in answer.headers["Allow"].split(", ")
    answer = client.delete("/partner/redeem")
    _assert_page(answer, 405, back="/partner/redeem")
    assert set(answer.headers["Allow"].split(", ")) >= {"GET", "POST"}
    _assert_page(client.post("/"), 405, back="/")


def test_a_nul_in_a_form_is_a_page(client: FlaskClient) -> None:
    token = staff_csrf(client.get("/staff/login?lang=cy").data)
    answer = client.post("/staff/login", data={"email": "a\x00@council.example",
                                               "password": "x", "csrf": token})
    _assert_page(answer, 400, lang="cy", back="/staff/?lang=cy",
                 words="Ni allai&#39;r dudalen ddefnyddio&#39;r hyn a anfonwyd.")
    token = _csrf(client.get("/partner/login").data)
    answer = client.post("/partner/login", data={"email": "till@cafe.example",
                                                 "password": "a\x00b", "csrf": token})
    _assert_page(answer, 400, back="/partner/redeem",
                 words="The page could not use what was sent.")


def test_a_body_or_an_address_too_large_is_a_page(client: FlaskClient, app: Flask,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1000)
    big = {"email": "a@council.example", "password": "x" * 2000, "csrf": "x"}
    _assert_page(client.post("/staff/login", data=big), 413,
                 words="What was sent is too large.")
    _assert_page(client.post("/partner/login", data=big), 413, back="/partner/redeem")
    monkeypatch.setitem(app.config, "MAX_URL_LENGTH", 100)
    _assert_page(client.get("/staff/report?month=" + "1" * 200), 414,
                 words="The address of this page is too long.")


def test_too_many_tries_is_a_page_that_says_when_to_come_back(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "RATE_LIMIT_LOGIN", "1 per minute")
    for path, lang, back in (("/staff/login?lang=cy", "cy", "/staff/?lang=cy"),
                             ("/partner/login", "en", "/partner/redeem")):
        from rewards.limits import limiter

        with app.app_context():
            limiter.reset()
        token = _csrf(client.get(path).data)
        form = {"email": "a@council.example", "password": "wrong", "csrf": token}
        assert client.post(path, data=form).status_code == 401
        answer = client.post(path, data=form)
        _assert_page(answer, 429, lang=lang, back=back)
        assert 1 <= int(answer.headers["Retry-After"]) <= 60
        assert answer.headers["RateLimit-Remaining"] == "0"


def test_an_unexpected_failure_is_a_page_without_its_details(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail of the failure")

    for endpoint in ("staff_pages.login", "partner_pages.login", "web.index"):
        monkeypatch.setitem(app.view_functions, endpoint, broken)
    for path, back in (("/staff/login", "/staff/"), ("/partner/login", "/partner/redeem"),
                       ("/", "/")):
        answer = client.get(path)
        page = _assert_page(answer, 500, back=back, words="Something went wrong on our side")
        assert "secret detail" not in page
    welsh = client.get("/staff/login?lang=cy")
    _assert_page(welsh, 500, lang="cy", back="/staff/?lang=cy",
                 words="Aeth rhywbeth o&#39;i le ar ein hochr ni")


def test_a_service_that_is_away_is_a_page_with_retry_after(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rewards.mail import MailUnavailable

    from .test_outage import _down

    def no_mail(*args: Any, **kwargs: Any) -> Any:
        raise MailUnavailable("smtp.internal.example:25 refused")

    monkeypatch.setitem(app.view_functions, "staff_pages.login", no_mail)
    answer = client.get("/staff/login?lang=cy")
    page = _assert_page(answer, 503, lang="cy", back="/staff/?lang=cy",
                        words="Nid yw&#39;r gwasanaeth ar gael am ennyd.")
    assert answer.headers["Retry-After"] == "60" and "smtp" not in page
    # The database away, on the public home page (the staff and partner pages:
    # tests/test_outage.py).
    with _down(app):
        answer = client.get("/", headers=BROWSER)
    assert answer.status_code == 503 and answer.mimetype == "text/html"
    assert answer.headers["Retry-After"] == "5"
    assert b"try again" in answer.data and b"Traceback" not in answer.data


def test_a_client_asking_for_json_still_gets_the_apis_error(client: FlaskClient) -> None:
    # A script (the event sheet takes a scheme manager's token) asking for JSON.
    answer = client.get("/staff/no/such/page", headers={"Accept": "application/json"})
    assert answer.status_code == 404 and answer.is_json
    assert answer.json["code"] == 404 and answer.json["reason"]
    answer = client.put("/staff/report", headers={"Accept": "application/json"})
    assert answer.status_code == 405 and answer.json["code"] == 405
    # The API answers JSON whatever the caller accepts.
    for accept in (BROWSER, {}):
        answer = client.get("/v1/no/such/thing", headers=accept)
        assert answer.status_code == 404 and answer.is_json, accept
        answer = client.post("/v1/auth/login", data={"email": "a\x00b"}, headers=accept)
        assert answer.is_json, accept


def test_the_event_sheet_without_its_link_is_a_page(client: FlaskClient) -> None:
    answer = client.get("/staff/events/6a8e1b3c-1d2e-4f50-9a6b-7c8d9e0f1a2b/sheet?lang=cy")
    page = _assert_page(answer, 401, lang="cy", back="/staff/?lang=cy",
                        words="Mae angen i chi fewngofnodi i weld y dudalen hon.")
    assert "WWW-Authenticate" not in answer.headers and "Bearer" not in page
