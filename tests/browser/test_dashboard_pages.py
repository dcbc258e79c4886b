"""The staff dashboard as an analyst uses it in a browser: the numbers on the page are
the API's and the CSV's, small cells are suppressed on all three, charts are drawn, the
pages work from the keyboard and in Welsh, and axe-core finds no serious or critical
accessibility violation."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import pytest
from flask import Flask

from .conftest import ANALYST_EMAIL, ANALYST_PASSWORD, log_in_form
from .helpers import SUPPRESSED, api_figure, api_rows, csv_rows, page_rows

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def axe_violations(tab: Any, axe_script: Any) -> list[dict[str, Any]]:
    tab.add_script_tag(path=str(axe_script))
    found = tab.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))", AXE_TAGS)
    return [v for v in found if v["impact"] in ("serious", "critical")]


def query_of(tab: Any) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlparse(tab.url).query).items()}


def test_filtered_figures_on_the_page_equal_the_api(page: Any, app: Flask) -> None:
    page.goto(f"{page.base_url}/staff/engagement")
    page.select_option("#f-category", "travel")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/staff/engagement?*category=travel*")
    query = query_of(page)
    assert query["category"] == "travel" and query["from"] and query["to"]
    assert page.input_value("#f-category") == "travel"
    compared = 0
    for name in ("active", "actions", "actions_by_ward", "actions_by_hour"):
        body = api_figure(app, name, query)
        assert body["filters"]["category"] == "travel"
        assert page_rows(page, name) == api_rows(body), name
        compared += len(body["rows"])
    assert compared > 0
    # The filter changed the numbers: travel is a part of all actions, not all of them.
    everything = api_rows(api_figure(app, "actions", {k: v for k, v in query.items()
                                                       if k != "category"}))
    assert everything != api_rows(api_figure(app, "actions", query))
    assert page.script_errors == []


def test_a_small_cell_is_suppressed_on_page_api_and_csv(page: Any, app: Flask) -> None:
    page.goto(f"{page.base_url}/staff/reach")
    query = query_of(page) or {}
    body = api_figure(app, "reach_wards", query)
    api = api_rows(body)
    hidden = [(i, key) for i, row in enumerate(api) for key, value in row.items()
              if value == SUPPRESSED]
    assert hidden, "the demo should have wards with fewer members than the threshold"
    shown = page_rows(page, "reach_wards")
    assert shown == api
    row, key = hidden[0]
    assert shown[row][key] == SUPPRESSED
    cell = page.locator(f'#reach_wards-table tbody tr >> nth={row}').locator(
        f'[data-key="{key}"]')
    # Read out in full; the words in brackets are for screen readers (visually hidden).
    assert " ".join(cell.text_content().split()) == "suppressed (fewer than 10 members)"
    assert cell.inner_text().startswith("suppressed")
    link = page.locator('#figure-reach_wards a[href*="/staff/figures/reach_wards.csv"]')
    with page.expect_download() as download:
        link.click()
    text = open(download.value.path(), encoding="utf-8").read()
    keys = [column["key"] for column in body["columns"]]
    assert csv_rows(text, keys) == api
    assert csv_rows(text, keys)[row][key] == SUPPRESSED


def test_overview_headlines_and_charts(page: Any, app: Flask) -> None:
    assert page.locator("h1").inner_text() == "Overview"
    headlines = page.locator("#headlines .headline")
    assert headlines.count() >= 2
    labels = page.locator("#headlines dt").all_inner_texts()
    assert "Suppressed cells" in labels
    page.goto(f"{page.base_url}/staff/engagement")
    # Each chart is drawn from the same numbers as its table.
    drawn = page.evaluate("""() => [...document.querySelectorAll('canvas[data-chart-for]')]
        .map(c => ({name: c.dataset.chartFor, chart: !!Chart.getChart(c), width: c.width,
                    points: Chart.getChart(c) ? Chart.getChart(c).data.datasets
                        .map(d => d.data.filter(v => v !== null).length) : []}))""")
    assert drawn and all(item["chart"] and item["width"] > 0 for item in drawn), drawn
    assert any(sum(item["points"]) > 0 for item in drawn)


def test_keyboard_skip_link_and_visible_focus(page: Any) -> None:
    page.goto(f"{page.base_url}/staff/money")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => [document.activeElement.className,"
                            " getComputedStyle(document.activeElement).outlineStyle]")
    assert focused == ["skip", "solid"]
    page.keyboard.press("Enter")
    assert page.evaluate("() => location.hash") == "#main"
    # The filter form works from the keyboard: choose a category, Tab to the button, Enter.
    page.focus("#f-category")
    page.keyboard.press("ArrowDown")  # the first category after "All"
    chosen = page.input_value("#f-category")
    assert chosen
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Show figures"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/staff/money?*category={chosen}*")


def test_welsh_pages(page: Any) -> None:
    page.goto(f"{page.base_url}/staff/fairness")
    page.click("#language-switch")
    page.wait_for_url("**/staff/fairness?lang=cy")
    assert page.get_attribute("html", "lang") == "cy"
    assert page.locator("h1").inner_text() == "Tegwch"
    assert page.locator("#filters-heading").inner_text() == "Hidlyddion"
    page.goto(f"{page.base_url}/staff/reach")  # remembered for the session
    assert page.get_attribute("html", "lang") == "cy"
    assert page.locator("text=wedi'i atal (llai na 10 aelod)").count() > 0


@pytest.mark.parametrize("path", [
    "/staff/", "/staff/reach", "/staff/engagement", "/staff/behaviour", "/staff/impact",
    "/staff/money", "/staff/fairness", "/staff/report", "/staff/reach?lang=cy",
    "/staff/money?from=2020-13-01",  # the page with a filter error
])
def test_no_serious_accessibility_violations(page: Any, axe_script: Any, path: str) -> None:
    response = page.goto(f"{page.base_url}{path}")
    assert response.status == (400 if "2020-13" in path else 200)
    assert page.locator("main h1").count() == 1
    assert axe_violations(page, axe_script) == []


def test_login_through_the_form_and_its_accessibility(browser: Any, live_server: str,
                                                     axe_script: Any) -> None:
    context = browser.new_context(bypass_csp=True)
    tab = context.new_page()
    try:
        tab.goto(f"{live_server}/staff/reach")
        assert "/staff/login?next=/staff/reach" in tab.url
        assert axe_violations(tab, axe_script) == []
        log_in_form(tab, live_server, password="wrong")
        assert tab.locator("#login-error").inner_text() == (
            "Email, password or authenticator code is not right.")
        assert axe_violations(tab, axe_script) == []
        tab.goto(f"{live_server}/staff/reach")
        log_in_form(tab, live_server)
        tab.wait_for_url(f"{live_server}/staff/")
        assert tab.locator("main h1").inner_text() == "Overview"
        tab.click(".account button[type=submit]")  # log out
        tab.wait_for_url(f"{live_server}/staff/login")
        tab.goto(f"{live_server}/staff/")
        assert "/staff/login" in tab.url
    finally:
        context.close()


@pytest.mark.parametrize("target", ["/staff/../docs", "/staff/%2e%2e/docs",
                                    "/staff/money/.%2E/%2E./docs"])
def test_logging_in_never_sends_the_browser_off_the_staff_pages(
        browser: Any, live_server: str, target: str) -> None:
    # A browser resolves the dot segments (%2e is a dot to it): the next= below starts
    # with /staff/ but names /docs. The login goes to the overview instead.
    context = browser.new_context()
    tab = context.new_page()
    try:
        tab.goto(f"{live_server}/staff/login?next={quote(target, safe='/')}")
        tab.fill("#email", ANALYST_EMAIL)
        tab.fill("#password", ANALYST_PASSWORD)
        tab.click("form.login button[type=submit]")
        tab.wait_for_load_state()
        assert urlparse(tab.url).path == "/staff/"
        assert tab.locator("main h1").inner_text() == "Overview"
    finally:
        context.close()


def test_printable_report(page: Any) -> None:
    page.goto(f"{page.base_url}/staff/report")
    month = page.input_value("#month")
    assert len(month) == 7
    page.emulate_media(media="print")
    hidden = page.evaluate("""() => ['nav.pages', 'form.month-form', '.csv']
        .map(s => document.querySelector(s)).filter(Boolean)
        .map(e => getComputedStyle(e).display)""")
    assert hidden and set(hidden) == {"none"}
    assert page.locator("table").count() >= 3
    pdf_bytes = page.pdf(format="A4")
    assert pdf_bytes[:4] == b"%PDF"


def test_charts_draw_under_the_pages_content_security_policy(
        browser: Any, live_server: str, analyst_session: dict[str, Any]) -> None:
    context = browser.new_context(storage_state=analyst_session)  # CSP enforced
    tab = context.new_page()
    console: list[str] = []
    tab.on("console", lambda message: console.append(message.text))
    try:
        response = tab.goto(f"{live_server}/staff/behaviour")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        drawn = tab.evaluate("() => [...document.querySelectorAll('canvas[data-chart-for]')]"
                             ".map(c => !!Chart.getChart(c))")
        assert drawn and all(drawn)
        assert [text for text in console if "Content Security Policy" in text] == []
    finally:
        context.close()
