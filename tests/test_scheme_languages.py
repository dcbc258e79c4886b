"""A scheme in languages the code has no texts for (it,en; en,he; en,zh,ms,ta) answers in
English and says so; a language is added as one module, rewards/languages/<code>.py,
found by its code. "xx" below is a tiny language that exists only in these tests."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards import languages
from rewards.config import Config, ConfigurationError
from rewards.i18n import staff_languages, staff_text
from rewards.notice_text import long_date, mail_language, text
from rewards.statement_text import say

from .reward_support import admin_headers, make_offer, make_partner, resident


@pytest.fixture
def xx(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """rewards/languages/xx.py, as a module made here: right-to-left, a few texts each."""
    module = types.ModuleType("rewards.languages.xx")
    module.NAME = "Ixx"
    module.DIRECTION = "rtl"
    module.REASONS = {"insufficient_points": "XX: not enough points"}
    module.NOTICES = {"login_code": ("XX code {code}", "XX body {code} {minutes}")}
    module.MONTHS = tuple(f"M{number}" for number in range(1, 13))
    module.STATEMENT = {r"Claimed: (?P<x>.+)": "XX claimed {x}"}
    module.NOW_SPENDABLE = "XX now: "
    module.STAFF = {"staff_login": "XX staff login"}
    monkeypatch.setitem(sys.modules, "rewards.languages.xx", module)
    languages.pack.cache_clear()
    yield module
    languages.pack.cache_clear()


@pytest.fixture
def speaking(app: Flask) -> Iterator[callable]:
    """Set SCHEME_LANGUAGES for one test."""
    before = app.config["SCHEME_LANGUAGES"]

    def set_languages(*codes: str) -> None:
        app.config["SCHEME_LANGUAGES"] = codes

    yield set_languages
    app.config["SCHEME_LANGUAGES"] = before


def test_a_language_is_found_by_its_code() -> None:
    assert languages.pack("cy").NAME == "Cymraeg"
    assert languages.reason_text("insufficient_points", "cy") == \
        "Does dim digon o bwyntiau gennych."
    for missing in ("it", "he", "zh", "ms", "ta", "en", "", None, "../x", "EN"):
        assert languages.pack(missing) is None, missing
        assert languages.direction(missing) == "ltr"
    assert languages.has("en", "REASONS") and not languages.has("it", "REASONS")


def test_the_test_language_is_used_where_it_has_texts_and_english_elsewhere(
        xx: types.ModuleType) -> None:
    assert languages.direction("xx") == "rtl" and languages.own_name("xx") == "Ixx"
    # Notices: its own where it has one, English where not; dates in its months.
    assert mail_language("xx") == "xx"
    assert text("login_code", "xx", code="123456", minutes=10) == \
        ("XX code 123456", "XX body 123456 10")
    assert text("pin_set", "xx", scheme="Bologna Premia")[0] == \
        "Your Bologna Premia card PIN was set"
    assert long_date(datetime(2026, 3, 5), "xx") == "05 M3 2026"
    assert long_date(datetime(2026, 3, 5), "it") == "05 March 2026"
    # Statement lines: its template, else as stored, English.
    assert say("Claimed: Coffee", "xx", offer_titles={"Coffee": "XX coffee"}) == \
        "XX claimed XX coffee"
    assert say("Now spendable: Claimed: Coffee", "xx") == "XX now: XX claimed Coffee"
    assert say("Voucher issued: Coffee", "xx") == "Voucher issued: Coffee"
    assert say("Claimed: Coffee", "it") == "Claimed: Coffee"
    assert say("Now spendable: Claimed: Coffee", "it") == "Now spendable: Claimed: Coffee"
    # Staff words: its own, else English; offered only where the scheme speaks it.
    assert staff_text("staff_login", "xx") == "XX staff login"
    assert staff_text("log_out", "xx") == "Log out"
    assert staff_languages(("en", "xx")) == ("en", "xx")
    assert staff_languages(("it", "en")) == ("en",)
    assert staff_languages(("en", "cy")) == ("en", "cy")


def test_welsh_is_said_as_before_through_its_module() -> None:
    assert say("Claimed: Coffee", "cy") == "Hawliwyd: Coffee"
    assert say("Now spendable: Donated to Leeds Food Aid", "cy") == \
        "Ar gael i'w gwario nawr: Rhoddwyd i Leeds Food Aid"
    assert long_date(datetime(2026, 3, 5), "cy") == "05 Mawrth 2026"
    assert text("pin_set", "cy", scheme="Gwobrau")[0] == "Gosodwyd PIN cerdyn Gwobrau"
    assert staff_text("log_out", "cy") == "Allgofnodi"


@pytest.mark.parametrize("codes", [("it", "en"), ("en", "he"), ("en", "zh", "ms", "ta")])
def test_errors_in_a_language_without_texts_are_english_and_say_so(
        client: FlaskClient, app: Flask, speaking, codes: tuple[str, ...]) -> None:
    speaking(*codes)
    admin = admin_headers(client, app)
    offer = make_offer(client, admin, make_partner(client, admin)["id"], cost_points=500)
    member = resident(client, app, points=10)
    other = codes[0] if codes[0] != "en" else codes[-1]
    assert client.patch("/v1/me", json={"locale": other},
                        headers=member.headers).status_code == 200
    refused = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                          headers=member.headers)
    assert refused.status_code == 409
    assert refused.json["message"].startswith("Not enough")
    assert refused.headers["Content-Language"] == "en"
    # An answer that is not an error keeps the member's language: what the scheme's
    # staff wrote (offer titles, rule names) comes in it where they translated it.
    assert client.get("/v1/me", headers=member.headers).headers["Content-Language"] == other
    # Welsh is not one of this scheme's languages: asking for it gets English.
    welsh = client.get("/v1/me", headers={"Accept-Language": "cy"})
    assert welsh.status_code == 401 and welsh.headers["Content-Language"] == "en"
    assert "Mae angen" not in welsh.json["message"]


def test_errors_in_a_language_with_a_module_use_it_where_it_has_the_reason(
        client: FlaskClient, app: Flask, speaking, xx: types.ModuleType) -> None:
    speaking("en", "xx")
    admin = admin_headers(client, app)
    offer = make_offer(client, admin, make_partner(client, admin)["id"], cost_points=500)
    member = resident(client, app, points=10)
    asked = {**member.headers, "Accept-Language": "xx"}
    refused = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=asked)
    assert refused.json["message"] == "XX: not enough points"
    assert refused.headers["Content-Language"] == "xx"
    untranslated = client.get("/v1/me/rewards/00000000-0000-0000-0000-000000000000",
                              headers=asked)
    assert untranslated.status_code == 404
    assert untranslated.headers["Content-Language"] == "en"


def test_staff_pages_in_a_right_to_left_language(client: FlaskClient, speaking,
                                                  xx: types.ModuleType) -> None:
    speaking("en", "xx")
    page = client.get("/staff/login?lang=xx").data.decode()
    assert '<html lang="xx" dir="rtl">' in page
    assert "XX staff login" in page
    assert 'href="/staff/login?lang=en" lang="en" hreflang="en" dir="ltr"' in page
    assert "Cymraeg" not in page  # Welsh is not this scheme's
    english = client.get("/staff/login?lang=en").data.decode()
    assert '<html lang="en">' in english
    assert 'lang="xx" hreflang="xx" dir="rtl"' in english and ">Ixx</a>" in english


def test_a_right_to_left_page_marks_the_figures_english(client: FlaskClient, app: Flask,
                                                        speaking, xx: types.ModuleType) -> None:
    """The figures' titles and descriptions are English or Welsh: on a page in another
    language they say lang="en" and run left to right."""
    from .helpers import make_staff
    from .test_staff_pages import log_in

    speaking("en", "xx")
    make_staff(app, "ana.xx@council.example", "analyst", "correct horse battery")
    assert log_in(client, "ana.xx@council.example", "correct horse battery").status_code == 302
    page = client.get("/staff/money?lang=xx").data.decode()
    assert '<html lang="xx" dir="rtl">' in page
    assert re.search(r'<h2 id="money-heading" lang="en" dir="ltr">Points and money</h2>', page)
    assert re.search(r'<p class="description" lang="en" dir="ltr">Points issued', page)
    english = client.get("/staff/money?lang=en").data.decode()
    assert '<h2 id="money-heading">Points and money</h2>' in english


@pytest.mark.parametrize("codes", [("it", "en"), ("en", "he"), ("en", "zh", "ms", "ta")])
def test_staff_pages_without_a_module_are_english_with_no_switch(
        client: FlaskClient, speaking, codes: tuple[str, ...]) -> None:
    speaking(*codes)
    for code in codes:
        answer = client.get(f"/staff/login?lang={code}",
                            headers={"Accept-Language": code})
        assert answer.status_code == 200
        page = answer.data.decode()
        assert '<html lang="en">' in page and "<h1>Staff login</h1>" in page
        assert answer.headers["Content-Language"] == "en"
        assert 'id="language-switch"' not in page


def test_settings_a_council_gets_wrong_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEME_LANGUAGES", " IT , en ")
    monkeypatch.setenv("SCHEME_TIMEZONE", "Europe/Rome")
    monkeypatch.setenv("SCHEME_CURRENCY", "eur")
    config = Config()
    assert config.SCHEME_LANGUAGES == ("it", "en")
    assert config.SCHEME_CURRENCY == "EUR"
    for name, value in (("SCHEME_LANGUAGES", "it-IT,en"), ("SCHEME_TIMEZONE", "Rome"),
                        ("SCHEME_CURRENCY", "euro"), ("POSTCODE_DISTRICT_PATTERN", "[0-9")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError, match=name):
            Config()
        monkeypatch.delenv(name)


def test_the_language_module_in_the_guide_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/new-scheme.md's example module, as a council would save it."""
    guide = (Path(__file__).parent.parent / "docs" / "new-scheme.md").read_text()
    source = re.search(r'```python\n("""Italian\.""".*?)```', guide, re.S).group(1)
    module = types.ModuleType("rewards.languages.it")
    exec(compile(source, "rewards/languages/it.py", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "rewards.languages.it", module)
    languages.pack.cache_clear()
    try:
        assert languages.reason_text("insufficient_points", "it") == "Non hai abbastanza punti."
        assert mail_language("it") == "it"
        assert text("login_code", "it", scheme="Bologna Premia", code="123456",
                    minutes=10)[0] == "Il tuo codice Bologna Premia: 123456"
        assert long_date(datetime(2026, 3, 5), "it") == "05 marzo 2026"
        assert say("Now spendable: Claimed: Espresso", "it") == \
            "Ora spendibile: Riscattato: Espresso"
        assert staff_text("log_in", "it") == "Accedi" and staff_text("log_out", "it") == \
            "Log out"
        assert staff_languages(("it", "en")) == ("en", "it")
    finally:
        languages.pack.cache_clear()
