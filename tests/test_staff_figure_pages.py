"""The staff dashboard's figure pages through the Flask test client, on a small scheme
made by the dashboard tests' world: the page shows the API's numbers, filters work and
bad ones are refused, CSV links give the API's CSV, text is escaped, Welsh labels."""

from __future__ import annotations

import io
import random
import re
import zipfile
from html import unescape
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rewards.dashboard.settings import put
from rewards.extensions import db

from .dashboard.scheme import WARDS, make_world, now_utc, random_round
from .helpers import bearer, make_staff
from .test_staff_pages import log_in

CELL = re.compile(r'<t[hd][^>]*data-key="([^"]+)"([^>]*)>(.*?)</t[hd]>', re.S)


@pytest.fixture
def world(app: Flask) -> None:
    with app.app_context():
        world = make_world(db.session)
        for ward in WARDS:
            put(db.session, f"ward:{ward}", {"adult_population": 1000, "imd_decile": 3}, None)
        db.session.commit()
        random_round(db.session, world, random.Random(7), now_utc(), actions=300, members=30)


def _analyst(client: FlaskClient, app: Flask, role: str = "analyst") -> dict[str, str]:
    make_staff(app, f"{role}@council.example", role)
    assert log_in(client, f"{role}@council.example").status_code == 302
    token = client.post("/v1/auth/login", json={"email": f"{role}@council.example",
                                                "password": "correct horse"}).json
    return bearer(token["access_token"])


def page_table(html: str, name: str) -> list[dict[str, Any]]:
    """A figure's table rows as {key: raw value | "SUPPRESSED" | None}."""
    match = re.search(rf'<table id="{name}-table".*?<tbody>(.*?)</tbody>', html, re.S)
    assert match, f"no table {name}"
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S):
        shaped = {}
        for key, attrs, text in CELL.findall(row):
            if 'data-suppressed="true"' in attrs:
                said = unescape(re.sub(r"<[^>]+>", "", text)).strip()
                assert said == "suppressed (fewer than 10 members)", said
                shaped[key] = "SUPPRESSED"
            else:
                value = re.search(r'data-value="([^"]*)"', attrs)
                shaped[key] = unescape(value.group(1)) if value else None
        rows.append(shaped)
    return rows


def api_table(body: dict[str, Any]) -> list[dict[str, Any]]:
    keys = [c["key"] for c in body["columns"]]
    return [{key: "SUPPRESSED" if key in (row.get("_suppressed") or ()) else
             (None if row.get(key) is None else str(row[key])) for key in keys}
            for row in body["rows"]]


def test_engagement_page_shows_the_api_numbers_for_the_filters(client: FlaskClient,
                                                               app: Flask, world: None) -> None:
    token = _analyst(client, app)
    query = {"category": "travel", "ward": "Armley"}
    page = client.get("/staff/engagement", query_string=query)
    assert page.status_code == 200
    html = page.data.decode()
    assert '<option value="travel" selected>' in html
    suppressed = shown = 0
    for name in ("active", "actions", "actions_by_ward", "actions_by_hour", "rewards"):
        body = client.get(f"/v1/admin/dashboard/{name}", query_string=query,
                          headers=token).json
        assert body["filters"]["ward"] == "Armley"
        rows = page_table(html, name) if body["rows"] else []
        assert rows == api_table(body), name
        cells = [v for row in rows for v in row.values()]
        suppressed += cells.count("SUPPRESSED")
        shown += sum(1 for v in cells if v not in (None, "SUPPRESSED"))
    assert suppressed and shown  # the small scheme has cells on both sides of the threshold


def test_csv_links_give_the_api_csv(client: FlaskClient, app: Flask, world: None) -> None:
    token = _analyst(client, app)
    html = client.get("/staff/reach?from=2025-01-01&ward=Roundhay").data.decode()
    links = re.findall(r'href="(/staff/figures/[^"]+\.csv[^"]*)"', html)
    assert {re.search(r"figures/(\w+)\.csv", link).group(1) for link in links} == {
        "reach_wards", "reach_channel"}
    for link in links:
        link = unescape(link)
        assert "from=2025-01-01" in link and "ward=Roundhay" in link
        name = re.search(r"figures/(\w+)\.csv", link).group(1)
        ours = client.get(link)
        assert ours.status_code == 200 and ours.mimetype == "text/csv"
        assert "attachment" in ours.headers["Content-Disposition"]
        theirs = client.get(f"/v1/admin/dashboard/{name}.csv",
                            query_string={"from": "2025-01-01", "ward": "Roundhay"},
                            headers=token)
        assert ours.data == theirs.data
    assert client.get("/staff/figures/nonesuch.csv").status_code == 404


def test_every_role_with_the_dashboard_sees_every_page(client: FlaskClient, app: Flask,
                                                        world: None) -> None:
    for role in ("analyst", "scheme_manager", "admin"):
        tab = app.test_client()
        _analyst(tab, app, role)
        for path in ("/staff/", "/staff/reach", "/staff/engagement", "/staff/behaviour",
                     "/staff/impact", "/staff/money", "/staff/fairness",
                     "/staff/report?month=2026-10"):
            page = tab.get(path)
            assert page.status_code == 200, (role, path)
            assert b"<main" in page.data and b"Something went wrong" not in page.data
    assert tab.get("/staff/nonesuch").status_code == 404
    # Stray arguments do not reach the links the page builds (the language switch).
    assert tab.get("/staff/reach?group=money&_anchor=x").status_code == 200


def test_overview_headlines_equal_the_api(client: FlaskClient, app: Flask, world: None) -> None:
    token = _analyst(client, app)
    html = client.get("/staff/").data.decode()
    heads = dict(re.findall(r'data-headline="(\w+)">\s*<dt>[^<]*</dt>\s*<dd[^>]*?'
                            r'(?:data-value="([^"]*)")?>', html))
    active = client.get("/v1/admin/dashboard/active", headers=token).json
    money = client.get("/v1/admin/dashboard/money", headers=token).json
    everyone = active["rows"][0]
    assert everyone["ward"] == "All wards"
    assert heads["active_30d"] == str(everyone["active_30d"])
    measures = {row["measure"]: row for row in money["rows"]}
    assert heads["points_issued"] == str(measures["issued"]["points"])
    assert heads["liability"] == str(measures["outstanding"]["points"])
    assert "suppressed_cells" in heads
    assert 'href="/staff/open-data.zip"' in html


def test_bad_filters_are_refused_clearly(client: FlaskClient, app: Flask, world: None) -> None:
    _analyst(client, app)
    for query, words in (("from=2026-02-30", b"from must be a date"),
                         ("from=2026-03-01&amp;to=2026-02-01", b"from must not be after to"),
                         ("category=gardening", b"category must be one of")):
        page = client.get("/staff/money?" + query.replace("&amp;", "&"))
        assert page.status_code == 400, query
        assert words in page.data and b'role="alert"' in page.data
        assert b"<table" not in page.data
    assert client.get("/staff/figures/money.csv?to=nope").status_code == 400
    for month in ("2026-13", "26-01", "2026-1", "x"):
        assert client.get(f"/staff/report?month={month}").status_code == 400


def test_text_is_escaped(client: FlaskClient, app: Flask, world: None) -> None:
    _analyst(client, app)
    evil = "<script>alert(1)</script>"
    page = client.get("/staff/reach", query_string={"from": evil})
    assert page.status_code == 400
    assert evil.encode() not in page.data
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.data
    page = client.get("/staff/reach", query_string={"ward": evil})
    assert page.status_code == 200 and evil.encode() not in page.data
    # Chart data is JSON inside a script element: "</script>" cannot close it early.
    for chunk in re.findall(rb'class="chart-data">(.*?)</script>', page.data, re.S):
        assert b"<" not in chunk


def test_welsh_labels_on_figure_pages(client: FlaskClient, app: Flask, world: None) -> None:
    _analyst(client, app)
    html = client.get("/staff/reach?lang=cy").data.decode()
    assert '<html lang="cy">' in html
    assert "<h1>Cyrhaeddiad</h1>" in html
    assert "Aelodau a ymunodd fesul ward" in html  # the figure's Welsh title
    assert ">Poblogaeth oedolion</th>" in html  # a column's Welsh label
    assert "Lawrlwytho CSV" in html and "wedi&#39;i atal" in html
    # The figures' descriptions and notes are English only: marked as such on a Welsh page.
    assert '<p class="description" lang="en">Members who joined' in html
    assert re.search(r'<ul class="notes" aria-label="Nodiadau" lang="en">', html)
    money = client.get("/staff/money").data.decode()  # the choice is remembered
    assert ">Pwyntiau a roddwyd</th>" in money and ">Points issued<" not in money
    english = client.get("/staff/reach?lang=en").data.decode()
    assert '<p class="description">Members who joined' in english


def test_report_and_open_data(client: FlaskClient, app: Flask, world: None) -> None:
    _analyst(client, app)
    this_month = now_utc().strftime("%Y-%m")
    html = client.get(f"/staff/report?month={this_month}").data.decode()
    assert f"Monthly impact report: {this_month}" in html
    assert 'data-headline="active_30d"' in html and 'data-headline="liability"' in html
    for name in ("active", "actions", "impact", "money", "fairness_deprivation"):
        assert f'id="{name}-table"' in html or f'id="figure-{name}"' in html
    css = client.get("/staff/static/staff/staff.css").data
    assert b"@media print" in css
    bundle = client.get("/staff/open-data.zip")
    assert bundle.status_code == 200 and bundle.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(bundle.data)).namelist()
    assert "dictionary.csv" in names and "reach_wards.csv" in names
    assert client.get("/staff/open-data/dictionary.csv").data.startswith(b"file,column")


def test_every_word_the_templates_use_is_in_both_languages(app: Flask) -> None:
    from pathlib import Path

    from rewards.i18n import STAFF_TEXT
    from rewards.web.staff_figures import GROUPS

    folder = Path(app.root_path) / "web" / "templates" / "staff"
    used = set()
    for template in folder.glob("*.html"):
        used |= set(re.findall(r"\bt\('(\w+)'", template.read_text()))
    used |= set(GROUPS) | {"active_30d", "active_7d", "points_issued", "liability",
                           "liability_pounds", "actions"}
    assert used - set(STAFF_TEXT) == set()
    assert all(english and welsh and english != welsh or key in ("ward",)
               for key, (english, welsh) in STAFF_TEXT.items())
