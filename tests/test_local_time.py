"""Pages show times in the scheme's zone (SCHEME_TIMEZONE), never bare UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import Flask, render_template_string
from flask.testing import FlaskClient
from sqlalchemy import select, update

from rewards.extensions import db
from rewards.models import Redemption, Reward

from .test_partner_pages import _csrf, _log_in, _partner_user, _voucher


def test_the_filter_turns_utc_into_the_schemes_zone(app: Flask) -> None:
    summer = datetime(2026, 7, 1, 13, 5, tzinfo=UTC)
    winter = datetime(2026, 12, 1, 13, 5, tzinfo=UTC)
    with app.test_request_context():
        assert render_template_string("{{ t | local_time }}", t=summer) == "01 July 2026 14:05 BST"
        assert render_template_string("{{ t | local_time }}", t=winter) == \
            "01 December 2026 13:05 GMT"
        assert render_template_string("{{ t | local_time('%H:%M') }}", t=summer) == "14:05"
        assert render_template_string("{{ t | local_time }}", t=None) == ""
        app.config["SCHEME_TIMEZONE"] = "America/New_York"
        try:
            assert render_template_string("{{ t | local_time }}", t=summer) == \
                "01 July 2026 09:05 EDT"
        finally:
            app.config["SCHEME_TIMEZONE"] = "Europe/London"


def test_the_partner_page_shows_valid_until_and_redeemed_in_london_time(
    client: FlaskClient, app: Flask
) -> None:
    scheme, code = _voucher(client, app)
    email = _partner_user(app, scheme.partner["id"])
    assert _log_in(client, email).status_code == 302
    expires = datetime(2099, 7, 1, 23, 30, tzinfo=UTC)  # 00:30 the next day in London
    with app.app_context():
        db.session.execute(update(Reward).values(expires_at=expires))
        db.session.commit()

    page = client.get("/partner/redeem")
    check = client.post("/partner/check", data={"code": code, "csrf": _csrf(page.data)})
    assert b"02 July 2099 00:30 BST" in check.data
    assert b"UTC" not in check.data

    page = client.get("/partner/redeem")
    done = client.post("/partner/redeem", data={"code": code, "csrf": _csrf(page.data)})
    assert done.status_code == 201
    with app.app_context():
        redeemed_at = db.session.scalars(select(Reward.redeemed_at)).one()
        made_at = db.session.scalars(select(Redemption.created_at)).one()
    london = ZoneInfo("Europe/London")
    zone_name = "BST" if redeemed_at.astimezone(london).dst() else "GMT"
    page = client.get("/partner/redeem")
    used = client.post("/partner/check", data={"code": code, "csrf": _csrf(page.data)})
    expected_used = redeemed_at.astimezone(london).strftime("%d %B %Y %H:%M ") + zone_name
    assert expected_used.encode() in used.data
    recent = re.search(rb'<section id="recent">.*?</section>', used.data, re.S)
    assert recent is not None
    expected_row = made_at.astimezone(london).strftime("%H:%M ") + zone_name
    assert expected_row.encode() in recent.group(0)
    assert b"Time (UTC)" not in used.data
