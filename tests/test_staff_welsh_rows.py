"""The Welsh staff pages give the figures' row labels in Welsh ("All wards", "not set",
age bands, forecast windows, categories, campaign phases, "(no ward given)"), so no
English text is left unmarked on a page in Welsh (WCAG 3.1.2); a Welsh page's CSV has
the Welsh column labels; the JSON API and its CSV keep their English values."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import uuid
from datetime import timedelta
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards.dashboard.settings import put
from rewards.extensions import db
from rewards.ledger import ensure_member_accounts
from rewards.models import Action, Member, Rule, RuleVersion

from .dashboard.scheme import WARDS, make_world, now_utc, random_round
from .helpers import bearer, make_staff
from .test_staff_pages import log_in

PAGES = ("/staff/", "/staff/reach", "/staff/engagement", "/staff/behaviour", "/staff/impact",
         "/staff/money", "/staff/fairness")
# The English row labels the figures write, and the Welsh the Welsh pages show instead.
WELSH = {
    "All wards": "Pob ward",
    "(no ward given)": "(dim ward)",
    "not given": "heb ei roi",
    "under 18": "dan 18",
    "75 and over": "75 a throsodd",
    "not set": "heb ei osod",
    "next 30 days": "y 30 diwrnod nesaf",
    "next 60 days": "y 60 diwrnod nesaf",
    "next 90 days": "y 90 diwrnod nesaf",
    "before": "cyn",
    "during": "yn ystod",
    "after": "ar ôl",
    "travel": "teithio",
    "health": "iechyd",
    "volunteering": "gwirfoddoli",
}
CELL = re.compile(r"<(t[hd])([^>]*)>(.*?)</\1>", re.S)


@pytest.fixture
def world(app: Flask) -> None:
    with app.app_context():
        session = db.session
        world = make_world(session)
        for ward in WARDS[:3]:  # the fourth has no decile: "not set"
            put(session, f"ward:{ward}", {"adult_population": 1000, "imd_decile": 3}, None)
        now = now_utc()
        # A member who gave no ward, active yesterday.
        member = Member(id=uuid.uuid4(), email="noward@example.org", ward=None,
                        joined_at=now - timedelta(days=40))
        session.add(member)
        ensure_member_accounts(session, member.id)
        session.add(Action(id=uuid.uuid4(), source_id=world.source_id,
                           external_ref="no-ward-1", member_id=member.id,
                           action_type_id=world.types["bus_journey"], type_code="bus_journey",
                           occurred_at=now - timedelta(days=1), attributes={}, points=0,
                           status="accepted"))
        # A campaign: a rule with a window, so weeks before, during and after.
        rule = Rule(name="Bus weeks", current_version=1)
        session.add(rule)
        session.flush()
        session.add(RuleVersion(
            rule_id=rule.id, version=1, name="Bus weeks", action_types=["bus_journey"],
            condition="true", points="1", caps={}, points_caps={},
            starts_at=now - timedelta(days=60), ends_at=now - timedelta(days=25), priority=0,
            stackable=True, hold_days=0, status="active"))
        session.commit()
        random_round(session, world, random.Random(7), now, actions=300, members=30)


def _analyst(client: FlaskClient, app: Flask) -> dict[str, str]:
    make_staff(app, "analyst@council.example", "analyst")
    assert log_in(client, "analyst@council.example").status_code == 302
    token = client.post("/v1/auth/login", json={"email": "analyst@council.example",
                                                "password": "correct horse"}).json
    return bearer(token["access_token"])


def _cells(html: str) -> list[tuple[str, str]]:
    """(attributes, text) of every table cell of the page's figures."""
    found = []
    for table in re.findall(r"<table .*?</table>", html, re.S):
        for _tag, attrs, text in CELL.findall(table):
            found.append((attrs, unescape(re.sub(r"<[^>]+>", "", text)).strip()))
    return found


def _chart_labels(html: str) -> list[str]:
    return [label for chunk in re.findall(r'class="chart-data">(.*?)</script>', html, re.S)
            for label in json.loads(chunk)["labels"]]


def test_welsh_pages_give_row_labels_in_welsh(client: FlaskClient, app: Flask,
                                              world: None) -> None:
    _analyst(client, app)
    shown: set[str] = set()
    for page in PAGES:
        html = client.get(page, query_string={"lang": "cy"}).data.decode()
        assert '<html lang="cy">' in html, page
        for attrs, text in _cells(html):
            # No English row label is left on a Welsh page, marked or not.
            assert text not in WELSH, (page, text, attrs)
            shown.add(text)
        labels = _chart_labels(html)
        assert not set(labels) & set(WELSH), (page, labels)
        shown.update(labels)
    assert set(WELSH.values()) <= shown, set(WELSH.values()) - shown
    # The same pages in English keep the English labels.
    english = {text for page in PAGES for _attrs, text in
               _cells(client.get(page, query_string={"lang": "en"}).data.decode())}
    assert set(WELSH) <= english, set(WELSH) - english
    assert not english & set(WELSH.values())


def test_a_welsh_pages_csv_has_welsh_headers_and_labels(client: FlaskClient, app: Flask,
                                                        world: None) -> None:
    token = _analyst(client, app)
    html = client.get("/staff/engagement?lang=cy&from=2020-01-01").data.decode()
    link = unescape(re.search(r'href="(/staff/figures/actions\.csv[^"]*)"', html).group(1))
    client.get("/staff/?lang=en")  # the link says its language, whatever the session says
    welsh = list(csv.reader(io.StringIO(client.get(link).get_data(as_text=True))))
    assert welsh[0] == ["Math o weithred", "Categori", "Aelodau", "Gweithredoedd", "Pwyntiau",
                        "Gweithredoedd fesul aelod"]
    assert {row[1] for row in welsh[1:]} == {"teithio", "iechyd", "gwirfoddoli"}
    active = list(csv.reader(io.StringIO(client.get(
        "/staff/figures/active.csv?lang=cy").get_data(as_text=True))))
    assert active[0][0] == "Ward" and active[0][1] == "Yn weithgar yn y 7 diwrnod olaf"
    assert active[1][0] == "Pob ward"
    # In English the page's CSV is the API's CSV, as before.
    english = client.get("/staff/figures/actions.csv?lang=en&from=2020-01-01")
    api = client.get("/v1/admin/dashboard/actions.csv?from=2020-01-01", headers=token)
    assert english.data == api.data
    assert english.get_data(as_text=True).startswith("Action type,Category,Members,")


def test_the_api_keeps_its_english_values(client: FlaskClient, app: Flask,
                                          world: None) -> None:
    token = _analyst(client, app)
    welsh_browser = {**token, "Accept-Language": "cy"}

    def rows(name: str, query: str = "") -> list[dict]:
        body = client.get(f"/v1/admin/dashboard/{name}?{query}", headers=welsh_browser).json
        assert body == client.get(f"/v1/admin/dashboard/{name}?{query}", headers=token).json
        return body["rows"]

    def english_keys(row: dict) -> set[str]:
        return {key for key in row if not key.endswith("_cy") and key != "_suppressed"}

    active = rows("active")
    assert active[0]["ward"] == "All wards"
    assert "(no ward given)" in {row["ward"] for row in active}
    assert all(english_keys(row) == {"ward", "active_7d", "active_30d"} for row in active)
    assert {row["window"] for row in rows("forecast")} == {
        "next 30 days", "next 60 days", "next 90 days"}
    assert {"not given", "under 18", "75 and over"} <= {
        row["age_band"] for row in rows("fairness_age")}
    assert rows("fairness_deprivation")[-1]["imd_decile"] == "not set"
    assert {row["phase"] for row in rows("campaign", "from=2020-01-01")} == {
        "before", "during", "after"}
    actions = rows("actions", "from=2020-01-01")
    assert {row["category"] for row in actions} == {"travel", "health", "volunteering"}
    assert all(english_keys(row) == {"type_code", "category", "members", "actions", "points",
                                     "actions_per_member"} for row in actions)
    by_ward = rows("actions_by_ward", "from=2020-01-01")
    assert {row["ward"] for row in by_ward} == {*WARDS, "(no ward given)"}
    # The API's CSV stays English, whatever the browser's language.
    body = client.get("/v1/admin/dashboard/active.csv", headers=welsh_browser)
    lines = body.get_data(as_text=True).splitlines()
    assert lines[0] == "Ward,Active in the last 7 days,Active in the last 30 days"
    assert lines[1].startswith("All wards,")
